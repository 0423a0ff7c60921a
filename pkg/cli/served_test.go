package cli

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pullpass/pullpass/pkg/nodedelivery"
)

// nodeDelivery is the chart's ConfigMap saying what the node agents serve.
func nodeDelivery(mode nodedelivery.Mode) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: nodedelivery.ConfigMapName, Namespace: "pullpass"},
		Data: map[string]string{nodedelivery.ConfigMapKey: string(mode)}}
}

// Issue #24: add refuses a change that would leave a registry served by nothing, before it
// writes anything, saying why and what to do; --force applies it with a warning. Before, the
// registry was applied, its pull secrets deleted, and nothing said so.
func TestAddRefusesARegistryNothingWouldServe(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mode   nodedelivery.Mode
		args   []string
		reason string // "" when applied
	}{
		{"node delivery without token mode", nodedelivery.Cluster, []string{"--delivery", "Node"}, nodedelivery.ReasonNodeDeliveryOff},
		{"node delivery without agents", nodedelivery.None, []string{"--delivery", "Node"}, nodedelivery.ReasonNodeDeliveryOff},
		{"cluster scope without agents", nodedelivery.None, []string{"--scope", "Cluster"}, nodedelivery.ReasonNoNodeAgents},
		{"node delivery in token mode", nodedelivery.Tokens, []string{"--delivery", "Node"}, ""},
		{"cluster scope, legacy or provider agents", nodedelivery.Cluster, []string{"--scope", "Cluster"}, ""},
		{"pull secrets without agents", nodedelivery.None, nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &testCluster{kube: fake.NewClientset(nodeDelivery(tt.mode)), regs: newFakeRegistries()}
			args := append([]string{"registries", "add", "registry.example.org", "bot", examplePass, "--no-wait"}, tt.args...)
			code, stderr := c.run(t, args...)
			made := func() int {
				regs, _ := c.regs.List(context.Background(), metav1.ListOptions{})
				secrets, _ := c.kube.CoreV1().Secrets("pullpass").List(context.Background(), metav1.ListOptions{})
				return len(regs.Items) + len(secrets.Items)
			}
			if tt.reason == "" {
				if code != 0 || made() != 2 {
					t.Fatalf("exit %d, stderr %q, %d objects; want the registry and its secret applied", code, stderr, made())
				}
				return
			}
			if code != ExitBadInput || !strings.Contains(stderr, tt.reason) || !strings.Contains(stderr, "--force") || made() != 0 {
				t.Fatalf("exit %d, stderr %q, %d objects; want exit 2 naming %s and --force, nothing written", code, stderr, made(), tt.reason)
			}
			code, stderr = c.run(t, append(args, "--force")...)
			if code != 0 || !strings.Contains(stderr, "warning: nothing will serve") || made() != 2 {
				t.Fatalf("--force: exit %d, stderr %q, %d objects; want it applied with a warning", code, stderr, made())
			}
		})
	}
}

// An update that moves a registry to delivery Node is refused alike: the registry keeps its
// pull secrets.
func TestAddRefusesMovingARegistryWhereNothingServesIt(t *testing.T) {
	c := &testCluster{kube: fake.NewClientset(nodeDelivery(nodedelivery.Cluster)), regs: newFakeRegistries()}
	if code, stderr := c.run(t, "registries", "add", "registry.example.org", "bot", examplePass, "--no-wait"); code != 0 {
		t.Fatalf("add: exit %d, %s", code, stderr)
	}
	code, stderr := c.run(t, "registries", "add", "registry.example.org", "bot", examplePass, "--delivery", "Node", "--no-wait")
	if code != ExitBadInput || !strings.Contains(stderr, "agent.serviceAccountTokens.enabled") {
		t.Fatalf("exit %d, stderr %q; want 2 naming the chart value", code, stderr)
	}
	if d := c.registry(t, "registry.example.org").Spec.Delivery; d != "" {
		t.Fatalf("delivery %q after a refusal, want unchanged", d)
	}
}
