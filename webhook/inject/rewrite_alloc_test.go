package inject

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

// Rewriting costs nothing on the hot path when it has nothing to do: no allocation when the
// table holds no pull-through cache, none for a pod whose images are of no cached upstream.
func TestRewriteAllocatesNothingWithNothingToDo(t *testing.T) {
	reg := func(name, host string, pt *v1alpha1.PullThrough) *v1alpha1.Registry {
		return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{host}, PullThrough: pt,
			Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: name, Namespace: "pullpass"}},
		}}
	}
	plain := registrytable.Build([]*v1alpha1.Registry{reg("ghcr", "ghcr.io", nil)})
	cached := registrytable.Build([]*v1alpha1.Registry{reg("ghcr", "ghcr.io", nil), reg("hub", "cache.example.com", &v1alpha1.PullThrough{Upstream: "docker.io", Prefix: "hub"})})
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "a"}}}
	m := &Mutator{cfg: Config{Metrics: NoopRecorder{}}}
	pod := func(images ...string) *corev1.Pod {
		p := &corev1.Pod{}
		for _, img := range images {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c", Image: img})
		}
		return p
	}
	for name, tc := range map[string]struct {
		table *registrytable.Table
		pod   *corev1.Pod
	}{
		"no cache in the table":         {plain, pod("nginx:1.27", "ghcr.io/o/a:v1", "quay.io/p/n:v1")},
		"no image of a cached upstream": {cached, pod("ghcr.io/o/a:v1", "quay.io/p/n:v1", "localhost:5000/x", "registry.example.com/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")},
	} {
		var rw []Rewrite
		if n := testing.AllocsPerRun(100, func() { m.rewrite(tc.table, ns, tc.pod, nil, nil, &rw) }); n != 0 || len(rw) != 0 {
			t.Errorf("%s: %v allocations, %d rewrites; want none", name, n, len(rw))
		}
	}
}
