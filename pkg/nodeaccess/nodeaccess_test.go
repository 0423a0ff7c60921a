package nodeaccess_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/nodeaccess"
)

func TestServedByNode(t *testing.T) {
	now := metav1.Now()
	for _, tt := range []struct {
		name string
		spec v1alpha1.RegistrySpec
		gone bool
		want bool
	}{
		{"cluster", v1alpha1.RegistrySpec{Scope: v1alpha1.ScopeCluster}, false, true},
		{"namespaced", v1alpha1.RegistrySpec{Scope: v1alpha1.ScopeNamespaced}, false, false},
		{"namespaced by the node", v1alpha1.RegistrySpec{Scope: v1alpha1.ScopeNamespaced, Delivery: v1alpha1.DeliveryNode}, false, true},
		{"cluster, being deleted", v1alpha1.RegistrySpec{Scope: v1alpha1.ScopeCluster}, true, false},
	} {
		r := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: tt.spec}
		if tt.gone {
			r.DeletionTimestamp = &now
		}
		if got := nodeaccess.ServedByNode(r); got != tt.want {
			t.Errorf("%s: ServedByNode = %t, want %t", tt.name, got, tt.want)
		}
	}
}
