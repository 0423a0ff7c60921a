package nodedelivery_test

import (
	"testing"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/nodedelivery"
)

func TestCheck(t *testing.T) {
	spec := func(scope v1alpha1.Scope, d v1alpha1.Delivery) v1alpha1.RegistrySpec {
		return v1alpha1.RegistrySpec{Hosts: []string{"r.io"}, Scope: scope, Delivery: d}
	}
	for _, tc := range []struct {
		name   string
		spec   v1alpha1.RegistrySpec
		mode   nodedelivery.Mode
		reason string
	}{
		{"pull secrets, no agents", spec("", ""), nodedelivery.None, ""},
		{"namespaced node, tokens", spec(v1alpha1.ScopeNamespaced, v1alpha1.DeliveryNode), nodedelivery.Tokens, ""},
		{"namespaced node, cluster agents", spec(v1alpha1.ScopeNamespaced, v1alpha1.DeliveryNode), nodedelivery.Cluster, nodedelivery.ReasonNodeDeliveryOff},
		{"namespaced node, no agents", spec(v1alpha1.ScopeNamespaced, v1alpha1.DeliveryNode), nodedelivery.None, nodedelivery.ReasonNodeDeliveryOff},
		{"namespaced node, not told", spec(v1alpha1.ScopeNamespaced, v1alpha1.DeliveryNode), nodedelivery.Unknown, ""},
		{"cluster, cluster agents", spec(v1alpha1.ScopeCluster, ""), nodedelivery.Cluster, ""},
		{"cluster, tokens", spec(v1alpha1.ScopeCluster, ""), nodedelivery.Tokens, ""},
		{"cluster, no agents", spec(v1alpha1.ScopeCluster, ""), nodedelivery.None, nodedelivery.ReasonNoNodeAgents},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, msg := nodedelivery.Check(tc.spec, tc.mode)
			if reason != tc.reason || (reason == "") != (msg == "") {
				t.Fatalf("Check = %q, %q; want reason %q", reason, msg, tc.reason)
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, s := range []string{"", "none", "cluster", "tokens"} {
		if m, err := nodedelivery.Parse(s); err != nil || string(m) != s {
			t.Fatalf("Parse(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := nodedelivery.Parse("legacy"); err == nil {
		t.Fatal("Parse(legacy): no error")
	}
}
