package pullwatch

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/image"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

// WellKnownHosts are public registries named by host in the registry label when no Registry
// serves an image; every other host is "other", so the label stays bounded.
var WellKnownHosts = map[string]bool{
	"docker.io": true, "ghcr.io": true, "quay.io": true, "gcr.io": true, "registry.k8s.io": true,
	"public.ecr.aws": true, "mcr.microsoft.com": true, "registry.gitlab.com": true, "nvcr.io": true,
	"docker.elastic.co": true, "registry.redhat.io": true,
}

// TableRegistry labels an image with the Registry the table gives it, else its host when well
// known, else "other". When several registries match the image's host (say, one per team, told
// apart by namespaceSelector), the one whose pull secret the pod holds served it; without one,
// a Cluster-scope registry (the node served it); else the most specific.
func TableRegistry(table func() *registrytable.Table) RegistryOf {
	return func(img string, pullSecrets []corev1.LocalObjectReference) string {
		ref, err := image.Parse(img)
		if err != nil {
			return "other"
		}
		if t := table(); t != nil {
			if cands := t.Candidates(ref); len(cands) > 0 {
				for _, c := range cands {
					name := pullsecret.Name(c.Registry.Name)
					if slices.ContainsFunc(pullSecrets, func(s corev1.LocalObjectReference) bool { return s.Name == name }) {
						return c.Registry.Name
					}
				}
				for _, c := range cands {
					if c.Registry.Spec.EffectiveScope() == v1alpha1.ScopeCluster {
						return c.Registry.Name
					}
				}
				return cands[0].Registry.Name
			}
		}
		if WellKnownHosts[ref.Host] {
			return ref.Host
		}
		return "other"
	}
}
