package pullwatch

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"

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
// apart by namespaceSelector), the one that served the pod is named: the one whose pull secret the
// pod holds; else a Namespaced registry delivered by the node that selects the pod's namespace
// (nsLabels gives its labels; nil: none known); else a Cluster-scope registry; else the most
// specific.
func TableRegistry(table func() *registrytable.Table, nsLabels func(namespace string) map[string]string) RegistryOf {
	return func(img, namespace string, pullSecrets []corev1.LocalObjectReference) string {
		ref, err := image.Parse(img)
		if err != nil {
			return "other"
		}
		if t := table(); t != nil {
			if cands := t.Candidates(ref); len(cands) == 1 {
				return cands[0].Registry.Name
			} else if len(cands) > 1 {
				return servedBy(cands, namespace, pullSecrets, nsLabels)
			}
		}
		if WellKnownHosts[ref.Host] {
			return ref.Host
		}
		return "other"
	}
}

func servedBy(cands []registrytable.Match, namespace string, pullSecrets []corev1.LocalObjectReference, nsLabels func(string) map[string]string) string {
	for _, c := range cands {
		name := pullsecret.Name(c.Registry.Name)
		if slices.ContainsFunc(pullSecrets, func(s corev1.LocalObjectReference) bool { return s.Name == name }) {
			return c.Registry.Name
		}
	}
	if nsLabels != nil {
		labels := nsLabels(namespace)
		for _, c := range cands {
			spec := c.Registry.Spec
			if spec.EffectiveScope() != v1alpha1.ScopeNamespaced || spec.EffectiveDelivery() != v1alpha1.DeliveryNode {
				continue
			}
			if spec.NamespaceSelector == nil {
				return c.Registry.Name
			}
			if sel, err := metav1.LabelSelectorAsSelector(spec.NamespaceSelector); err == nil && sel.Matches(k8slabels.Set(labels)) {
				return c.Registry.Name
			}
		}
	}
	for _, c := range cands {
		if c.Registry.Spec.EffectiveScope() == v1alpha1.ScopeCluster {
			return c.Registry.Name
		}
	}
	return cands[0].Registry.Name
}
