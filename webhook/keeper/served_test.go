package keeper_test

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/nodedelivery"
	"github.com/pullpass/pullpass/webhook/inject"
	"github.com/pullpass/pullpass/webhook/keeper"
)

// agents is the agent DaemonSet's count; unknown is a cache not synced yet.
type agents struct {
	ready, desired int32
	found, unknown bool
}

func (a agents) Agents() (keeper.AgentCount, bool) {
	return keeper.AgentCount{Ready: a.ready, Desired: a.desired, Found: a.found}, !a.unknown
}

// withNodes rebuilds the fixture's keeper for a cluster whose nodes deliver so.
func (f *fixture) withNodes(t *testing.T, mode nodedelivery.Mode, a keeper.NodeAgents) {
	t.Helper()
	var err error
	f.k, err = keeper.New(keeper.Config{
		Client: f.client, RegistryAPI: f.status, Registries: f.regs, Desired: f.src,
		Managed: corelisters.NewSecretLister(f.managed), Namespaces: corelisters.NewNamespaceLister(f.ns),
		Policy: inject.Policy{Excluded: map[string]bool{}}, Metrics: f.metrics, NodeDelivery: mode, Agents: a,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// reconciled reconciles r and returns its Served and Ready conditions, its status.served and
// pullpass_registry_served.
func (f *fixture) reconciled(t *testing.T) (served, ready *metav1.Condition, where *v1alpha1.ServedStatus, gauge float64) {
	t.Helper()
	if err := f.k.Reconcile(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	st := f.status.last().Status
	gauge = -1
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "pullpass_registry_served" && len(mf.GetMetric()) == 1 {
			gauge = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionServed), meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady), st.Served, gauge
}

// Issue #24: a Namespaced registry moved to delivery Node on a cluster whose agents are not in
// token mode loses its pull secrets and is served by nothing: Served and Ready say so, and the
// gauge is 0. Before, Ready stayed True and nothing said it.
func TestNodeDeliveryWithoutTokenModeIsUnserved(t *testing.T) {
	for _, mode := range []nodedelivery.Mode{nodedelivery.Cluster, nodedelivery.None} {
		t.Run(string(mode), func(t *testing.T) {
			f := setup(t)
			f.withNodes(t, mode, agents{ready: 3, desired: 3, found: mode != nodedelivery.None})
			f.regs["r"].Spec.Delivery = v1alpha1.DeliveryNode
			served, ready, _, gauge := f.reconciled(t)
			if served == nil || served.Status != metav1.ConditionFalse || served.Reason != nodedelivery.ReasonNodeDeliveryOff ||
				!strings.Contains(served.Message, "agent.serviceAccountTokens.enabled") {
				t.Fatalf("Served %+v: want False, NodeDeliveryOff, naming the chart value", served)
			}
			if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != served.Reason {
				t.Fatalf("Ready %+v: want False with Served's reason", ready)
			}
			if gauge != 0 {
				t.Fatalf("pullpass_registry_served %v, want 0", gauge)
			}
		})
	}
}

// A Cluster-scope registry is the agents' alone: with no agents, nothing serves it.
func TestClusterScopeWithoutAgentsIsUnserved(t *testing.T) {
	f := setup(t)
	f.withNodes(t, nodedelivery.None, nil)
	f.regs["r"].Spec.Scope = v1alpha1.ScopeCluster
	served, ready, _, gauge := f.reconciled(t)
	if served == nil || served.Status != metav1.ConditionFalse || served.Reason != nodedelivery.ReasonNoNodeAgents ||
		ready.Status != metav1.ConditionFalse || gauge != 0 {
		t.Fatalf("Served %+v, Ready %+v, gauge %v: want both False (NoNodeAgents), 0", served, ready, gauge)
	}
}

// Delivered by the node agents in token mode: served on the nodes whose agent is ready, and by
// nothing while none is.
func TestNodeDeliveryCountsTheAgents(t *testing.T) {
	f := setup(t)
	f.withNodes(t, nodedelivery.Tokens, agents{ready: 2, desired: 3, found: true})
	f.regs["r"].Spec.Delivery = v1alpha1.DeliveryNode
	served, ready, where, gauge := f.reconciled(t)
	if served.Status != metav1.ConditionTrue || ready.Status != metav1.ConditionTrue || gauge != 1 ||
		where == nil || where.Nodes == nil || *where.Nodes != (v1alpha1.NodesServed{Ready: 2, Desired: 3}) ||
		!strings.Contains(served.Message, "2 of 3 nodes") {
		t.Fatalf("Served %+v, Ready %+v, served %+v, gauge %v: want True on 2 of 3 nodes", served, ready, where, gauge)
	}

	f.withNodes(t, nodedelivery.Tokens, agents{ready: 0, desired: 3, found: true})
	served, ready, _, gauge = f.reconciled(t)
	if served.Status != metav1.ConditionFalse || served.Reason != keeper.ReasonNoAgentReady || ready.Status != metav1.ConditionFalse || gauge != 0 {
		t.Fatalf("Served %+v, Ready %+v, gauge %v with no agent ready: want False (NoAgentReady), 0", served, ready, gauge)
	}

	f.withNodes(t, nodedelivery.Tokens, agents{})
	if served, _, _, _ = f.reconciled(t); served.Status != metav1.ConditionFalse || served.Reason != nodedelivery.ReasonNoNodeAgents {
		t.Fatalf("Served %+v with no agent DaemonSet: want False (NoNodeAgents)", served)
	}

	// Not known yet (the DaemonSet's cache not synced, or not readable): not judged by it.
	f.withNodes(t, nodedelivery.Tokens, agents{unknown: true})
	if served, _, where, _ := f.reconciled(t); served.Status != metav1.ConditionTrue || where.Nodes != nil {
		t.Fatalf("Served %+v, served %+v with the count unknown: want True, no counts", served, where)
	}
}

// Pull secrets serve wherever they are, whatever the nodes do; none yet is no fault.
func TestPullSecretsAreServed(t *testing.T) {
	f := setup(t)
	f.withNodes(t, nodedelivery.None, nil)
	served, ready, where, gauge := f.reconciled(t)
	if served.Status != metav1.ConditionTrue || served.Reason != keeper.ReasonPullSecrets || ready.Status != metav1.ConditionTrue ||
		where == nil || where.PullSecrets != 2 || where.Nodes != nil || gauge != 1 {
		t.Fatalf("Served %+v, Ready %+v, served %+v, gauge %v: want True in 2 namespaces", served, ready, where, gauge)
	}
}
