// Package nodedelivery says what the node agents of a cluster can serve, and so whether a
// Registry is served by anything: the keeper writes it into the Served condition, and the CLI
// refuses a change that would leave a registry unserved. The chart sets the mode from its
// values (agent.enabled, agent.mode, agent.serviceAccountTokens.enabled), in the webhook's
// --node-delivery flag and in a ConfigMap that the CLI reads.
package nodedelivery

import (
	"fmt"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// Mode is how the node agents serve the kubelets.
type Mode string

const (
	// Unknown: not told (a webhook started without --node-delivery); nothing is judged.
	Unknown Mode = ""
	// None: no node agents (agent.enabled: false). Only pull secrets serve.
	None Mode = "none"
	// Cluster: the agents serve Cluster-scope registries to every pod, through the credential
	// provider plugin or, in legacy mode, the kubelet's docker config (which matches the same
	// host patterns). They cannot tell pods apart, so not Namespaced registries.
	Cluster Mode = "cluster"
	// Tokens: the agents also serve Namespaced registries with delivery Node, told apart by the
	// pod's service account token (agent.serviceAccountTokens.enabled).
	Tokens Mode = "tokens"
)

// ConfigMapName is the chart's ConfigMap in the release namespace that says the mode, under
// ConfigMapKey, to whoever may write Registries.
const (
	ConfigMapName = "pullpass-node-delivery"
	ConfigMapKey  = "mode"
)

// Parse reads a mode as the flag and the ConfigMap write it.
func Parse(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Unknown, None, Cluster, Tokens:
		return m, nil
	}
	return "", fmt.Errorf("node delivery %q: want none, cluster or tokens", s)
}

// Reasons of a Served condition that is False.
const (
	// ReasonNodeDeliveryOff: a Namespaced registry with delivery Node, and agents that are not in
	// token mode (or no agents).
	ReasonNodeDeliveryOff = "NodeDeliveryOff"
	// ReasonNoNodeAgents: a Cluster-scope registry, and no agents at all.
	ReasonNoNodeAgents = "NoNodeAgents"
)

// Check says why nothing of mode can serve a registry of spec: "" when something can (or the
// mode is Unknown). Pull secrets (Namespaced, delivery PullSecret) are always served.
func Check(spec v1alpha1.RegistrySpec, mode Mode) (reason, message string) {
	if mode == Unknown || spec.EffectiveDelivery() != v1alpha1.DeliveryNode {
		return "", ""
	}
	switch {
	case spec.EffectiveScope() == v1alpha1.ScopeCluster && mode == None:
		return ReasonNoNodeAgents, "scope Cluster is served by the node agents, and this cluster runs none (chart value agent.enabled: false)"
	case spec.EffectiveScope() == v1alpha1.ScopeNamespaced && mode != Tokens:
		return ReasonNodeDeliveryOff, fmt.Sprintf("delivery Node needs the agents in token mode (chart values agent.enabled, agent.mode: provider, agent.serviceAccountTokens.enabled), and this cluster's node delivery is %q: use delivery PullSecret, or turn token mode on", mode)
	}
	return "", ""
}
