package pullthrough_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/pullthrough"
)

func labels(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func TestNilIndexHoldsNothing(t *testing.T) {
	plain := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ghcr"}, Spec: v1alpha1.RegistrySpec{Hosts: []string{"ghcr.io"}}}
	ix := pullthrough.NewIndex([]*v1alpha1.Registry{plain})
	if ix != nil {
		t.Fatal("an index of registries without a cache is not nil")
	}
	if ix.Len() != 0 || ix.Upstream("docker.io") || ix.Select("docker.io", nil).Cache != nil || ix.Refused("x") != "" || ix.Condition("ghcr", 1, nil) != nil {
		t.Fatal("a nil index answered")
	}
}

func TestSelectMostSpecificNamespaceSelector(t *testing.T) {
	ix := pullthrough.NewIndex([]*v1alpha1.Registry{
		cache("everyone", ecrHost, "docker.io", "docker-hub", nil),
		cache("team-a", "harbor.example.com", "docker.io", "hub", labels("team", "a")),
		cache("team-a-prod", "harbor.example.com", "docker.io", "hub-prod", labels("team", "a", "env", "prod")),
		cache("env-prod", "gitlab.example.com", "docker.io", "g/dependency_proxy/containers", labels("env", "prod")),
		cache("ghcr", ecrHost, "ghcr.io", "ghcr", nil),
	})
	tests := []struct {
		upstream string
		labels   map[string]string
		want     string // cache name, "conflict:a,b" or ""
	}{
		{"docker.io", nil, "everyone"},
		{"docker.io", map[string]string{"team": "b"}, "everyone"},
		{"docker.io", map[string]string{"team": "a"}, "team-a"},
		{"docker.io", map[string]string{"team": "a", "env": "prod"}, "team-a-prod"},
		{"docker.io", map[string]string{"env": "prod"}, "env-prod"},
		{"docker.io", map[string]string{"team": "b", "env": "prod"}, "env-prod"},
		{"ghcr.io", map[string]string{"team": "a"}, "ghcr"},
		{"quay.io", nil, ""},
	}
	for _, tt := range tests {
		if got := choice(ix.Select(tt.upstream, tt.labels)); got != tt.want {
			t.Errorf("Select(%s, %v) = %s, want %s", tt.upstream, tt.labels, got, tt.want)
		}
	}
}

func choice(c pullthrough.Choice) string {
	switch {
	case c.Cache != nil:
		return c.Cache.Registry.Name
	case c.Conflict[0] != nil:
		return "conflict:" + c.Conflict[0].Registry.Name + "," + c.Conflict[1].Registry.Name
	}
	return ""
}

// Two caches of one upstream, equally specific, both selecting a namespace: neither is used
// there, and both say so in their condition, naming the other and the namespace.
func TestConflictAndItsCondition(t *testing.T) {
	ix := pullthrough.NewIndex([]*v1alpha1.Registry{
		cache("b-cache", "harbor.example.com", "docker.io", "hub", labels("team", "a")),
		cache("a-cache", ecrHost, "docker.io", "docker-hub", labels("env", "prod")),
		cache("fallback", "gitlab.example.com", "docker.io", "", nil),
	})
	if got := choice(ix.Select("docker.io", map[string]string{"team": "a", "env": "prod"})); got != "conflict:a-cache,b-cache" {
		t.Fatalf("Select = %s, want the conflict", got)
	}
	if got := choice(ix.Select("docker.io", map[string]string{"team": "a"})); got != "b-cache" {
		t.Fatalf("Select(team=a) = %s", got)
	}
	ns := func(name string, annotations map[string]string, kv ...string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels(kv...).MatchLabels, Annotations: annotations}}
	}
	namespaces := []*corev1.Namespace{
		ns("shop", nil, "team", "a"),
		ns("shop-prod", nil, "team", "a", "env", "prod"),
		ns("opted-out", map[string]string{pullthrough.AnnotationOptOut: "disabled"}, "team", "a", "env", "prod"),
		ns("plain", nil),
	}
	c := ix.Condition("b-cache", 3, namespaces)
	if c.Status != metav1.ConditionFalse || c.Reason != pullthrough.ReasonConflict || c.ObservedGeneration != 3 ||
		!strings.Contains(c.Message, "registry a-cache is a pull-through cache of docker.io too") || !strings.Contains(c.Message, "namespace shop-prod (1 namespaces in all)") {
		t.Fatalf("condition %+v", c)
	}
	if c := ix.Condition("a-cache", 1, namespaces); c.Reason != pullthrough.ReasonConflict || !strings.Contains(c.Message, "registry b-cache") {
		t.Fatalf("condition of the other %+v", c)
	}
	c = ix.Condition("fallback", 1, namespaces)
	if c.Status != metav1.ConditionTrue || c.Reason != pullthrough.ReasonActive || c.Message != "images of docker.io are rewritten to gitlab.example.com/... in 1 namespaces" {
		t.Fatalf("condition of the fallback %+v", c)
	}
	// Selectors that no served namespace both satisfy are no conflict.
	if c := ix.Condition("b-cache", 1, namespaces[:1]); c.Status != metav1.ConditionTrue || c.Message != "images of docker.io are rewritten to harbor.example.com/hub/... in 1 namespaces" {
		t.Fatalf("condition without the shared namespace %+v", c)
	}
}

// A cache whose upstream is another cache's host is refused: following it would rewrite an
// image a second time.
func TestCacheOfACacheIsRefused(t *testing.T) {
	ix := pullthrough.NewIndex([]*v1alpha1.Registry{
		cache("hub", ecrHost, "docker.io", "docker-hub", nil),
		cache("of-hub", "harbor.example.com", ecrHost, "ecr", nil),
	})
	if ix.Len() != 1 || ix.Upstream(ecrHost) {
		t.Fatalf("the chained cache is in use: len %d", ix.Len())
	}
	c := ix.Condition("of-hub", 1, nil)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != pullthrough.ReasonChained || !strings.Contains(c.Message, "upstream "+ecrHost+" is the host of pull-through cache hub") {
		t.Fatalf("condition %+v", c)
	}
	if ix.Condition("hub", 1, nil).Status != metav1.ConditionTrue {
		t.Fatal("the first cache is not active")
	}
}
