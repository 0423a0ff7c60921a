// Package pullsecret is everything about the kubernetes.io/dockerconfigjson Secrets that pullpass
// keeps in namespaces, one per (registry, namespace): their names and labels (which tell them from
// a tenant's Secrets), their content (Build), how the caches hold them (Slim), and making sure one
// is in a namespace at admission (Ensurer). The controller's keeper keeps them fresh with these.
package pullsecret

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/secrets"
)

// Prefix starts the name of every pull secret pullpass makes: a name no credential source may
// have (secrets.Reserved).
const Prefix = secrets.ReservedPrefix

// Name is the pull secret's name for a registry: "pullpass-<registry>".
func Name(registry string) string {
	n := Prefix + registry
	if len(n) > 253 {
		n = n[:253]
	}
	return n
}

// Labels are the labels of registry's pull secret: owned by pullpass, its role and registry. Only
// a Secret with all three is ever updated or deleted as a pull secret (Is).
func Labels(registry string) map[string]string {
	return map[string]string{
		secrets.LabelManagedBy: secrets.ManagedByValue,
		secrets.LabelRegistry:  registry,
		secrets.LabelRole:      secrets.RolePullSecret,
	}
}

// Selector selects the pull secrets of registry, or of every registry when registry is "". The
// managed-by label is left out: Is checks it on what the selector returns.
func Selector(registry string) labels.Selector {
	set := labels.Set{secrets.LabelRole: secrets.RolePullSecret}
	if registry != "" {
		set[secrets.LabelRegistry] = registry
	}
	return labels.SelectorFromSet(set)
}

// Is reports whether s is the pull secret pullpass keeps for registry in a namespace: only such
// a Secret is ever updated by the webhook or the keeper, whatever its name (a Registry named
// "webhook-tls" has the name of the webhook's TLS Secret, which carries managed-by too).
func Is(s *corev1.Secret, registry string) bool {
	return secrets.Owned(s) && HasRole(s) && s.Labels[secrets.LabelRegistry] == registry
}

// HasRole reports whether s is labelled a pull secret, of whichever registry: the watches' filter.
// A tenant can label a Secret so; Is tells whether it is pullpass's.
func HasRole(s *corev1.Secret) bool { return s.Labels[secrets.LabelRole] == secrets.RolePullSecret }

// Data is the .dockerconfigjson for a registry: the keys of each host pattern, each with the same
// credentials.
func Data(reg *v1alpha1.Registry, c userpass.Credentials) ([]byte, error) {
	cfg := &dockerconfig.Config{Auths: map[string]dockerconfig.AuthEntry{}}
	for _, h := range reg.Spec.Hosts {
		for _, k := range Keys(h) {
			cfg.Auths[k] = dockerconfig.AuthEntry{Username: c.Username, Password: c.Password}
		}
	}
	return cfg.Marshal()
}

// Keys are the docker config keys a pull secret holds for a host pattern: its canonical form
// ("https://index.docker.io/v1/" and "registry-1.docker.io" are docker.io), which the kubelet
// matches against the repository it pulls with the matchImages rules, globs included ("nginx"
// is looked up as docker.io/library/nginx, so the key docker.io serves every Docker Hub image).
// The kubelet passes the credentials to the runtime with no server address, so containerd sends
// them to whichever host it pulls from (registry-1.docker.io for docker.io).
//
// Docker's legacy key, "https://index.docker.io/v1/", is not written: the kubelet does not need
// it, and it serves an index.docker.io key, as its "default registry", to every image no other
// key matched whose host has no '.' or ':' ("localhost/app", "Registry/app"), which would send
// Docker Hub credentials to those hosts.
func Keys(host string) []string {
	c, err := match.Canonical(host)
	if err != nil {
		return []string{host} // registries are validated before they get here
	}
	return []string{c}
}

// Build returns the pull secret for a registry in a namespace.
func Build(namespace string, reg *v1alpha1.Registry, c userpass.Credentials) (*corev1.Secret, error) {
	data, err := Data(reg, c)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", reg.Name, err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      Name(reg.Name),
			Namespace: namespace,
			Labels:    Labels(reg.Name),
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data},
	}, nil
}

// Withdrawn returns the pull secret of a registry whose credentials were withdrawn (its source
// says something else now): no credentials at all, so pods pull as if it had none, and the
// references pods hold stay valid for when the source gives credentials again.
func Withdrawn(namespace string, reg *v1alpha1.Registry) *corev1.Secret {
	s, err := Build(namespace, reg, userpass.Credentials{})
	if err != nil {
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: Name(reg.Name), Namespace: namespace}, Type: corev1.SecretTypeDockerConfigJson}
	}
	s.Data = map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}
	s.Labels = Labels(reg.Name)
	return s
}

// AnnotationExpiresAt holds, on a pull secret of expiring credentials (ECR tokens), when they
// stop working (RFC 3339). Admission leaves an existing pull secret to the keeper unless it says
// it has expired.
const AnnotationExpiresAt = "pullpass.io/expires-at"

// SetExpiresAt records when the secret's credentials expire (zero: they do not).
func SetExpiresAt(s *corev1.Secret, t time.Time) {
	if t.IsZero() {
		delete(s.Annotations, AnnotationExpiresAt)
		return
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[AnnotationExpiresAt] = t.UTC().Format(time.RFC3339)
}

// Usable reports whether an existing pull secret still holds credentials that work at now, as
// far as it says: one without an expiry, or with an expiry still ahead. An expiry that does not
// parse counts as expired.
func Usable(s *corev1.Secret, now time.Time) bool {
	v, ok := s.Annotations[AnnotationExpiresAt]
	if !ok {
		return true
	}
	t, err := time.Parse(time.RFC3339, v)
	return err == nil && now.Before(t)
}

// CopyInto makes have hold what want holds: type, data, pullpass's labels and expiry. Other
// labels and annotations on have are kept.
func CopyInto(have, want *corev1.Secret) {
	have.Type, have.Data = want.Type, want.Data
	delete(have.Labels, digestKey) // the cache's, never written
	if have.Labels == nil {
		have.Labels = map[string]string{}
	}
	for k, v := range want.Labels {
		have.Labels[k] = v
	}
	if t, ok := want.Annotations[AnnotationExpiresAt]; ok {
		if have.Annotations == nil {
			have.Annotations = map[string]string{}
		}
		have.Annotations[AnnotationExpiresAt] = t
	} else {
		delete(have.Annotations, AnnotationExpiresAt)
	}
}

// UpToDate reports whether an existing pull secret already holds what want holds.
func UpToDate(have, want *corev1.Secret) bool {
	return have.Type == want.Type &&
		dataEqual(have, want) &&
		have.Annotations[AnnotationExpiresAt] == want.Annotations[AnnotationExpiresAt] &&
		have.Labels[secrets.LabelManagedBy] == secrets.ManagedByValue &&
		have.Labels[secrets.LabelRegistry] == want.Labels[secrets.LabelRegistry] &&
		have.Labels[secrets.LabelRole] == secrets.RolePullSecret
}
