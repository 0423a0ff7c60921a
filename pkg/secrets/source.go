// Package secrets reads credentials out of the Secrets users point registries at, and names the
// labels pullpass puts on the Secrets it owns.
package secrets

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/match"
)

// Labels on Secrets that pullpass owns. A Secret without them is never changed or deleted.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "pullpass"
	LabelRegistry  = "pullpass.io/registry"
	// LabelRole tells a registry's source secret (made by the CLI) from the pull secrets
	// pullpass keeps in namespaces, so a clean-up of one never takes the other.
	LabelRole      = "pullpass.io/role"
	RoleSource     = "source"
	RolePullSecret = "pull-secret"
	RoleWebhookTLS = "webhook-tls"
)

// ReservedPrefix starts the names of pullpass's own Secrets: its pull secrets
// ("pullpass-REGISTRY") and the webhook's TLS Secret ("pullpass-webhook-tls" unless configured
// otherwise). No credential source may have such a name: reading one would copy pullpass's
// secrets (the webhook's CA key) to wherever the registry is served.
const ReservedPrefix = "pullpass-"

// Reserved reports whether a Secret name is one of pullpass's own.
func Reserved(name string) bool { return strings.HasPrefix(name, ReservedPrefix) }

// ErrNotASource is returned for a Registry whose source names one of pullpass's own Secrets.
var ErrNotASource = errors.New("is one of pullpass's own Secrets (its pull secrets, the webhook's TLS Secret), not a credential source: name a Secret of your own")

// CheckSource refuses a Secret that is pullpass's own rather than a credential source: by name
// (ReservedPrefix), or by labels (managed by pullpass with any role but source, which is how the
// webhook's TLS Secret is told whatever it is named).
func CheckSource(s *corev1.Secret) error {
	if Reserved(s.Name) || (Owned(s) && s.Labels[LabelRole] != RoleSource) {
		return fmt.Errorf("secret %s/%s %w", s.Namespace, s.Name, ErrNotASource)
	}
	return nil
}

// MadeFor reports whether s is the source Secret the CLI made for registry: labelled managed by
// pullpass, role source, and that registry. The managed-by label alone says nothing about whose
// a Secret is: the webhook's TLS Secret and the pull secrets carry it too.
func MadeFor(s *corev1.Secret, registry string) bool {
	return Owned(s) && s.Labels[LabelRole] == RoleSource && s.Labels[LabelRegistry] == registry
}

// FromSecret reads the credentials for a registry from its source Secret:
//   - kubernetes.io/dockerconfigjson (or .dockercfg): an entry whose key names the registry's
//     hosts (entryFor); an entry for another host is never used, even the only one, since the
//     verifier and the kubelet would send it to the registry's hosts;
//   - kubernetes.io/basic-auth or Opaque: the "username" and "password" keys.
//
// One of pullpass's own Secrets is refused (CheckSource).
func FromSecret(s *corev1.Secret, hosts []string) (userpass.Credentials, error) {
	if err := CheckSource(s); err != nil {
		return userpass.Credentials{}, err
	}
	where := fmt.Sprintf("secret %s/%s", s.Namespace, s.Name)
	cfgData, isDockerConfig := s.Data[corev1.DockerConfigJsonKey]
	if !isDockerConfig {
		cfgData, isDockerConfig = s.Data[corev1.DockerConfigKey]
	}
	if isDockerConfig {
		cfg, err := dockerconfig.Parse(cfgData)
		if err != nil {
			return userpass.Credentials{}, fmt.Errorf("%s: %w", where, err)
		}
		e, ok := entryFor(cfg, hosts)
		if !ok {
			return userpass.Credentials{}, fmt.Errorf("%s: no entry names the registry's hosts %v (it has entries for %v): an entry is used only for the hosts its key names", where, hosts, cfg.Hosts())
		}
		if e.Username == "" && e.Password == "" {
			return userpass.Credentials{}, fmt.Errorf("%s: the entry for %v has no username or password", where, hosts)
		}
		return userpass.Credentials{Username: e.Username, Password: e.Password}, nil
	}
	u, p := s.Data[corev1.BasicAuthUsernameKey], s.Data[corev1.BasicAuthPasswordKey]
	if len(u) == 0 || len(p) == 0 {
		return userpass.Credentials{}, fmt.Errorf("%s: has neither %q nor %q and %q keys", where, corev1.DockerConfigJsonKey, corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey)
	}
	return userpass.Credentials{Username: string(u), Password: string(p)}, nil
}

// Username returns just the username, for listings.
func Username(s *corev1.Secret, hosts []string) (string, error) {
	c, err := FromSecret(s, hosts)
	return c.Username, err
}

// entryFor picks the docker config entry for a registry: one whose key, read as the kubelet
// reads it (match.ParsePattern: scheme, "/v1/", a trailing "/" and Docker Hub's names do not
// count), is one of the host patterns; else the most specific key that matches every image a host
// pattern matches ("ghcr.io" for "ghcr.io/org"), as the kubelet would use it for them.
func entryFor(cfg *dockerconfig.Config, hosts []string) (dockerconfig.AuthEntry, bool) {
	keys := make(map[string]match.Pattern, len(cfg.Auths))
	for k := range cfg.Auths {
		if p, err := match.ParsePattern(k); err == nil {
			keys[k] = p
		}
	}
	var patterns []match.Pattern
	for _, h := range hosts {
		hp, err := match.ParsePattern(h)
		if err != nil {
			continue
		}
		patterns = append(patterns, hp)
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			if keys[k].String() == hp.String() {
				return cfg.Auths[k], true
			}
		}
	}
	best := ""
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		for _, hp := range patterns {
			if keys[k].Covers(hp) && (best == "" || len(keys[k].String()) > len(keys[best].String())) {
				best = k
			}
		}
	}
	if best == "" {
		return dockerconfig.AuthEntry{}, false
	}
	return cfg.Auths[best], true
}

// ErrNotOwned is returned when pullpass is asked to change a Secret it does not own.
var ErrNotOwned = errors.New("secret is not managed by pullpass")

// Owned reports whether pullpass owns a Secret.
func Owned(s *corev1.Secret) bool { return s.Labels[LabelManagedBy] == ManagedByValue }
