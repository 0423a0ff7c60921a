package controller

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// Two pull-through caches of Docker Hub with equally specific namespaceSelectors that both
// select a namespace: the leader's keeper says why neither serves it in both Registries' status
// (the webhook rewrites there to neither: inject's TestPullThroughConflict). A more specific selector on one settles it; a cache of a cache is
// refused with its own reason.
func TestPullThroughConflictStatus(t *testing.T) {
	env := controlPlane.Env(t)
	env.EnsureNamespace(t, ns)
	const ecrHost, harborHost = "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "harbor.example.com"
	env.SourceSecret(t, ns, "pt-ecr-src", ecrHost, "pw")
	env.SourceSecret(t, ns, "pt-harbor-src", harborHost, "pw")
	cache := func(name, host, upstream, prefix, src string, sel map[string]string) *v1alpha1.Registry {
		return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{host}, NamespaceSelector: &metav1.LabelSelector{MatchLabels: sel},
			Auth:        v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: src}},
			PullThrough: &v1alpha1.PullThrough{Upstream: upstream, Prefix: prefix},
		}}
	}
	env.CreateRegistry(t, cache("pt-ecr", ecrHost, "docker.io", "docker-hub", "pt-ecr-src", map[string]string{"team": "a"}))
	harbor := env.CreateRegistry(t, cache("pt-harbor", harborHost, "docker.io", "hub", "pt-harbor-src", map[string]string{"env": "prod"}))
	env.CreateRegistry(t, cache("pt-chained", harborHost+"/ecr", ecrHost, "ecr", "pt-harbor-src", nil))
	startReplica(t, env)
	shop, err := env.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "shop-", Labels: map[string]string{"team": "a", "env": "prod"}, Annotations: map[string]string{"pullpass.io/inject": "enabled"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	condition := func(name string) (metav1.Condition, error) {
		reg, err := env.Registries.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return metav1.Condition{}, err
		}
		for _, c := range reg.Status.Conditions {
			if c.Type == v1alpha1.ConditionPullThrough {
				return c, nil
			}
		}
		return metav1.Condition{}, fmt.Errorf("registry %s has no PullThrough condition: %+v", name, reg.Status.Conditions)
	}
	want := func(name, reason, message string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			c, err := condition(name)
			if err != nil {
				return err
			}
			if c.Reason != reason || !strings.Contains(c.Message, message) {
				return fmt.Errorf("registry %s: PullThrough %s %s: %s; want %s, %q", name, c.Status, c.Reason, c.Message, reason, message)
			}
			return nil
		})
	}
	want("pt-ecr", "Conflict", "registry pt-harbor is a pull-through cache of docker.io too")
	want("pt-harbor", "Conflict", "both select namespace "+shop.Name)
	want("pt-chained", "Chained", "upstream "+ecrHost+" is the host of pull-through cache pt-ecr")

	// One more requirement on one selector: it wins the namespace, the other steps back.
	harbor, err = env.Registries.Get(t.Context(), harbor.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	harbor.Spec.NamespaceSelector.MatchLabels["team"] = "a"
	if _, err := env.Registries.Update(t.Context(), harbor, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want("pt-harbor", "Active", "images of docker.io are rewritten to harbor.example.com/hub/... in 1 namespaces")
	want("pt-ecr", "Active", "in 0 namespaces")
}
