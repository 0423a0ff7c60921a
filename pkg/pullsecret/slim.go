package pullsecret

import (
	"bytes"
	"crypto/sha256"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/pullpass/pullpass/pkg/secrets"
	"github.com/pullpass/pullpass/pkg/slim"
)

// The cache of Secrets labelled managed-by pullpass holds, in every namespace, whatever anyone
// labels so: any tenant can create such Secrets, of up to 1 MiB each. Slim keeps of each only
// what pullpass reads from that cache, so a tenant's Secrets cost a replica a few hundred bytes
// each, and pullpass's own pull secrets not much more.
const (
	// digestKey holds, in the cache, a pull secret's .dockerconfigjson as its SHA-256 (the 32
	// bytes as a string), in the labels map every pull secret has already: a map of its own
	// for it cost ~400 bytes a secret. UpToDate compares it; CopyInto removes it, so no write
	// sends it, and every write sends want's data, never the cached one.
	digestKey = "pullpass.io/cached-sha256"
	// annotationTrimmed marks a cached Secret whose labels and annotations were cut to
	// pullpass's own (they were larger than pullpass ever writes): a write reads it afresh so
	// as not to drop the others.
	annotationTrimmed = "pullpass.io/cache-trimmed"
	// metaBudget is the most labels and annotations a cached Secret keeps as they are.
	metaBudget = 4 << 10
)

// names holds one copy of each registry's name and pull secret's name across the cache: each is
// in every namespace the registry serves.
var names = slim.NewStrings(4096)

// shared holds one copy of each set of labels (and of annotations) that pullpass's pull secrets
// hold alike: a registry's are the same in every namespace, its data's digest included, as the
// data is. Only maps of pullpass's own keys; a few per registry (two while one rotates).
var shared = slim.NewMaps(4096)

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
	// A digest is the cache's alone: one that came from the API server is someone's label.
	delete(s.Labels, digestKey)
	var sum []byte
	if HasRole(s) {
		if d, ok := s.Data[corev1.DockerConfigJsonKey]; ok {
			h := sha256.Sum256(d)
			sum = h[:]
		}
	}
	s.Data, s.StringData = nil, nil
	if size(s.Labels)+size(s.Annotations) > metaBudget {
		s.Labels, s.Annotations = own(s.Labels), own(s.Annotations)
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[annotationTrimmed] = "true"
	}
	share(s)
	if sum != nil {
		s.Labels[digestKey] = string(sum)
	}
	if ownKeys(s.Labels) {
		s.Labels = shared.Intern(s.Labels)
	}
	if ownKeys(s.Annotations) {
		s.Annotations = shared.Intern(s.Annotations)
	}
	return s, nil
}

// share replaces the strings every pull secret repeats with one copy: pullpass's label keys and
// values, its type, the registry's name and the secret's. The decoder made a copy of each in
// every secret, about a tenth of the cache at 50,000 pull secrets. Assigning to a key a map holds
// already stores the key given, so the constants replace the decoded keys too.
func share(s *corev1.Secret) {
	if s.Type == corev1.SecretTypeDockerConfigJson {
		s.Type = corev1.SecretTypeDockerConfigJson
	}
	if !secrets.Owned(s) {
		return
	}
	s.Labels[secrets.LabelManagedBy] = secrets.ManagedByValue
	switch s.Labels[secrets.LabelRole] {
	case secrets.RolePullSecret:
		s.Labels[secrets.LabelRole] = secrets.RolePullSecret
	case secrets.RoleSource:
		s.Labels[secrets.LabelRole] = secrets.RoleSource
	}
	if r, ok := s.Labels[secrets.LabelRegistry]; ok {
		s.Labels[secrets.LabelRegistry] = names.Intern(r)
		if strings.HasPrefix(s.Name, Prefix) && s.Name[len(Prefix):] == r {
			s.Name = names.Intern(s.Name)
		}
	}
	if v, ok := s.Annotations[AnnotationExpiresAt]; ok {
		s.Annotations[AnnotationExpiresAt] = v
	}
}

// Trimmed reports whether a cached Secret lost labels or annotations to Slim: write a fresh
// read of it, not it.
func Trimmed(s *corev1.Secret) bool { return s.Annotations[annotationTrimmed] == "true" }

// dataEqual compares a Secret's .dockerconfigjson (or, cached, its digest) with want's.
func dataEqual(have, want *corev1.Secret) bool {
	if d, ok := have.Labels[digestKey]; ok && have.Data == nil {
		sum := sha256.Sum256(want.Data[corev1.DockerConfigJsonKey])
		return d == string(sum[:])
	}
	return bytes.Equal(have.Data[corev1.DockerConfigJsonKey], want.Data[corev1.DockerConfigJsonKey])
}

func size(m map[string]string) (n int) {
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

// isOwn reports whether a label or annotation key is pullpass's: its own prefix, or managed-by.
func isOwn(key string) bool {
	return strings.HasPrefix(key, "pullpass.io/") || key == secrets.LabelManagedBy
}

// ownKeys reports whether every key of m is pullpass's.
func ownKeys(m map[string]string) bool {
	for k := range m {
		if !isOwn(k) {
			return false
		}
	}
	return len(m) > 0
}

// own keeps pullpass's keys of m: its own prefix and the managed-by label.
func own(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if isOwn(k) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
