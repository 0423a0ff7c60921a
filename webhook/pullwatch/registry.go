package pullwatch

import (
	"github.com/pullpass/pullpass/pkg/image"
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
// known, else "other".
func TableRegistry(table func() *registrytable.Table) RegistryOf {
	return func(img string) string {
		if t := table(); t != nil {
			if m, ok, err := t.Lookup(img); err == nil && ok {
				return m.Registry.Name
			}
		}
		if ref, err := image.Parse(img); err == nil && WellKnownHosts[ref.Host] {
			return ref.Host
		}
		return "other"
	}
}
