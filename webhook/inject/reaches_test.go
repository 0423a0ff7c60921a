package inject_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/webhook/inject"
)

// Whose pods a registry's credentials reach: the rule the verifier takes glob hosts by.
func TestRegistryReaches(t *testing.T) {
	team := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	reg := func(scope v1alpha1.Scope, delivery v1alpha1.Delivery, sel *metav1.LabelSelector) *v1alpha1.Registry {
		return &v1alpha1.Registry{Spec: v1alpha1.RegistrySpec{Hosts: []string{"*.azurecr.io"}, Scope: scope, Delivery: delivery, NamespaceSelector: sel}}
	}
	ns := func(name string, opted bool, labels map[string]string) *corev1.Namespace {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if opted {
			n.Annotations = map[string]string{inject.Annotation: inject.Enabled}
		}
		return n
	}
	policy := inject.Policy{Excluded: map[string]bool{"kube-system": true}}
	for _, tt := range []struct {
		name string
		reg  *v1alpha1.Registry
		ns   *corev1.Namespace
		want bool
	}{
		{"cluster scope, any namespace", reg(v1alpha1.ScopeCluster, "", nil), ns("tenant", false, nil), true},
		{"cluster scope, namespace not cached", reg(v1alpha1.ScopeCluster, "", nil), nil, true},
		{"pull secret, opted in", reg(v1alpha1.ScopeNamespaced, "", nil), ns("shop", true, nil), true},
		{"pull secret, not opted in", reg(v1alpha1.ScopeNamespaced, "", nil), ns("tenant", false, nil), false},
		{"pull secret, excluded", reg(v1alpha1.ScopeNamespaced, "", nil), ns("kube-system", true, nil), false},
		{"pull secret, not selected", reg(v1alpha1.ScopeNamespaced, "", team), ns("shop", true, map[string]string{"team": "b"}), false},
		{"pull secret, selected", reg(v1alpha1.ScopeNamespaced, "", team), ns("shop", true, map[string]string{"team": "a"}), true},
		{"node, selected", reg(v1alpha1.ScopeNamespaced, v1alpha1.DeliveryNode, team), ns("shop", false, map[string]string{"team": "a"}), true},
		{"node, not selected", reg(v1alpha1.ScopeNamespaced, v1alpha1.DeliveryNode, team), ns("tenant", false, nil), false},
		{"namespaced, namespace not cached", reg(v1alpha1.ScopeNamespaced, v1alpha1.DeliveryNode, nil), nil, false},
	} {
		if got := policy.RegistryReaches(tt.reg, tt.ns); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
