package pullsecret

import (
	"bytes"
	"crypto/sha256"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/pullpass/pullpass/pkg/secrets"
)

// The cache of Secrets labelled managed-by pullpass holds, in every namespace, whatever anyone
// labels so: any tenant can create such Secrets, of up to 1 MiB each. Slim keeps of each only
// what pullpass reads from that cache, so a tenant's Secrets cost a replica a few hundred bytes
// each, and pullpass's own pull secrets not much more.
const (
	// digestKey replaces, in the cache, a pull secret's .dockerconfigjson with its SHA-256:
	// UpToDate compares it, and every write sends want's data, never the cached one.
	digestKey = "pullpass.io/sha256"
	// annotationTrimmed marks a cached Secret whose labels and annotations were cut to
	// pullpass's own (they were larger than pullpass ever writes): a write reads it afresh so
	// as not to drop the others.
	annotationTrimmed = "pullpass.io/cache-trimmed"
	// metaBudget is the most labels and annotations a cached Secret keeps as they are.
	metaBudget = 4 << 10
)

// Slim is the cache.TransformFunc of that cache. It drops managedFields too, and leaves
// anything that is not a Secret (a tombstone) as it is.
func Slim(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		if m, err := meta.Accessor(obj); err == nil {
			m.SetManagedFields(nil)
		}
		return obj, nil
	}
	s.ManagedFields = nil
	var data map[string][]byte
	if s.Labels[secrets.LabelRole] == secrets.RolePullSecret {
		if d, ok := s.Data[corev1.DockerConfigJsonKey]; ok {
			sum := sha256.Sum256(d)
			data = map[string][]byte{digestKey: sum[:]}
		}
	}
	s.Data, s.StringData = data, nil
	if size(s.Labels)+size(s.Annotations) > metaBudget {
		s.Labels, s.Annotations = own(s.Labels), own(s.Annotations)
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[annotationTrimmed] = "true"
	}
	return s, nil
}

// Trimmed reports whether a cached Secret lost labels or annotations to Slim: write a fresh
// read of it, not it.
func Trimmed(s *corev1.Secret) bool { return s.Annotations[annotationTrimmed] == "true" }

// dataEqual compares a Secret's .dockerconfigjson (or, cached, its digest) with want's.
func dataEqual(have, want *corev1.Secret) bool {
	if d, ok := have.Data[digestKey]; ok {
		sum := sha256.Sum256(want.Data[corev1.DockerConfigJsonKey])
		return bytes.Equal(d, sum[:])
	}
	return bytes.Equal(have.Data[corev1.DockerConfigJsonKey], want.Data[corev1.DockerConfigJsonKey])
}

func size(m map[string]string) (n int) {
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

// own keeps pullpass's keys of m: its own prefix and the managed-by label.
func own(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if strings.HasPrefix(k, "pullpass.io/") || k == secrets.LabelManagedBy {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
