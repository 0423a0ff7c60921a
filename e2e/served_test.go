//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/cli"
	"github.com/pullpass/pullpass/pkg/nodedelivery"
)

// Issue #24: each Registry says where it is served and whether anything serves it. What the node
// agents can serve is read from the cluster itself (the chart's ConfigMap pullpass-node-delivery,
// the same the keeper's --node-delivery is rendered from): with token mode (both e2e clusters'
// values), a Namespaced registry delivered by the node is served by the agents, counted as the
// DaemonSet counts them; without it, it is Served=False (NodeDeliveryOff), Ready=False,
// pullpass_registry_served 0, PullpassRegistryUnserved fires, and the CLI refuses to make one.
func TestRegistrySaysWhereItIsServed(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	pp := framework.PullpassNamespace
	cm, err := e.Kube.CoreV1().ConfigMaps(pp).Get(framework.Context(t, 30*time.Second), nodedelivery.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the chart's ConfigMap %s: %v", nodedelivery.ConfigMapName, err)
	}
	mode, err := nodedelivery.Parse(cm.Data[nodedelivery.ConfigMapKey])
	if err != nil || mode == nodedelivery.Unknown {
		t.Fatalf("ConfigMap %s: mode %q, %v", nodedelivery.ConfigMapName, mode, err)
	}
	conditions := func(name string) (served, ready *metav1.Condition, st v1alpha1.RegistryStatus) {
		r, err := e.Registries.Get(framework.Context(t, 30*time.Second), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionServed), meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady), r.Status
	}
	gauge := func(name string) float64 {
		return e.ControllerMetric(t, ep, "pullpass_registry_served", map[string]string{"registry": name})
	}

	t.Run("pull secrets", func(t *testing.T) {
		e.CreateRegistry(t, framework.RegistryOptions{Name: "served-pull-secrets", Hosts: []string{"served-pull-secrets.example.com"}})
		waitFor(t, time.Minute, "Served=True (PullSecrets), pullpass_registry_served 1", func() bool {
			served, _, st := conditions("served-pull-secrets")
			return served != nil && served.Status == metav1.ConditionTrue && served.Reason == "PullSecrets" &&
				st.Served != nil && st.Served.Nodes == nil && gauge("served-pull-secrets") == 1
		})
	})

	t.Run("delivery Node, agents in mode "+string(mode), func(t *testing.T) {
		nodeGrantsNothingAfter(t, e)
		e.CreateRegistry(t, framework.RegistryOptions{Name: "served-node", Hosts: []string{"served-node.example.com"},
			Scope: v1alpha1.ScopeNamespaced, Delivery: v1alpha1.DeliveryNode})
		if mode != nodedelivery.Tokens {
			waitFor(t, time.Minute, "Served=False and Ready=False (NodeDeliveryOff), pullpass_registry_served 0", func() bool {
				served, ready, _ := conditions("served-node")
				return served != nil && served.Status == metav1.ConditionFalse && served.Reason == nodedelivery.ReasonNodeDeliveryOff &&
					ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == served.Reason &&
					strings.Contains(served.Message, "agent.serviceAccountTokens.enabled") && gauge("served-node") == 0
			})
			prom := ep.Prometheus(t)
			match := map[string]string{"registry": "served-node"}
			prom.WaitAlert(t, "PullpassRegistryUnserved", match, "firing", 2*time.Minute)
			checkAlert(t, prom, "PullpassRegistryUnserved", match, "namespace", "registry")
			r := runCLI(t, e, "", "-N", pp, "registries", "add", "served-cli.example.com", "bot", "pw", "--delivery", "Node", "--no-wait")
			if r.code != 2 || !strings.Contains(r.errOut, nodedelivery.ReasonNodeDeliveryOff) || !strings.Contains(r.errOut, "--force") {
				t.Fatalf("registries add --delivery Node: exit %d, stderr %q; want 2 naming NodeDeliveryOff and --force", r.code, r.errOut)
			}
			return
		}
		// Token mode: served by the agents, as many as the DaemonSet says are ready.
		var last string
		defer func() {
			if t.Failed() {
				t.Log("last seen: " + last)
			}
		}()
		waitFor(t, time.Minute, "Served=True on the agents' nodes, pullpass_registry_served 1", func() bool {
			ds, err := e.Kube.AppsV1().DaemonSets(pp).Get(framework.Context(t, 30*time.Second), "pullpass-agent", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			served, _, st := conditions("served-node")
			want := v1alpha1.NodesServed{Ready: ds.Status.NumberReady, Desired: ds.Status.DesiredNumberScheduled}
			last = fmt.Sprintf("Served %+v, served %+v, DaemonSet %+v", served, st.Served, want)
			return served != nil && served.Status == metav1.ConditionTrue && served.Reason == "NodeAgents" && want.Ready > 0 &&
				st.Served != nil && st.Served.Nodes != nil && *st.Served.Nodes == want && gauge("served-node") == 1
		})
	})
}

// The unserved case on this cluster itself (issue #24): the agents taken out of token mode
// (helm upgrade, the suite's other values kept), a Namespaced registry delivered by the node
// turns Served=False and Ready=False (NodeDeliveryOff), pullpass_registry_served 0,
// PullpassRegistryUnserved fires, and the CLI refuses to make another. Token mode is put back
// after, and the kubelets restarted on the config they started with.
func TestRegistryNothingServesSaysSoAlertsAndTheCLIRefuses(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	pp := framework.PullpassNamespace
	setTokens := func(t *testing.T, on bool) {
		out, err := e.HelmUpgrade(t, ep, "--set", fmt.Sprintf("agent.serviceAccountTokens.enabled=%t", on),
			"--wait", "--timeout", "3m").CombinedOutput()
		if err != nil {
			t.Fatalf("helm upgrade (tokens %t): %v\n%s", on, err, out)
		}
		want := map[bool]nodedelivery.Mode{true: nodedelivery.Tokens, false: nodedelivery.Cluster}[on]
		waitFor(t, 2*time.Minute, "the agents rolled out with tokens "+fmt.Sprint(on), func() bool {
			ds, err := e.Kube.AppsV1().DaemonSets(pp).Get(context.Background(), "pullpass-agent", metav1.GetOptions{})
			if err != nil {
				return false
			}
			s := ds.Status
			cm, err := e.Kube.CoreV1().ConfigMaps(pp).Get(context.Background(), nodedelivery.ConfigMapName, metav1.GetOptions{})
			return err == nil && nodedelivery.Mode(cm.Data[nodedelivery.ConfigMapKey]) == want && s.ObservedGeneration >= ds.Generation &&
				s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberReady == s.DesiredNumberScheduled
		})
	}
	cm, err := e.Kube.CoreV1().ConfigMaps(pp).Get(framework.Context(t, 30*time.Second), nodedelivery.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nodedelivery.Mode(cm.Data[nodedelivery.ConfigMapKey]) == nodedelivery.Tokens {
		setTokens(t, false)
		t.Cleanup(func() {
			setTokens(t, true)
			script(t, "restart-kubelet.sh")
		})
	}
	e.CreateRegistry(t, framework.RegistryOptions{Name: "unserved-node", Hosts: []string{"unserved-node.example.com"},
		Scope: v1alpha1.ScopeNamespaced, Delivery: v1alpha1.DeliveryNode})
	waitFor(t, time.Minute, "Served=False and Ready=False (NodeDeliveryOff), pullpass_registry_served 0", func() bool {
		r, err := e.Registries.Get(context.Background(), "unserved-node", metav1.GetOptions{})
		if err != nil {
			return false
		}
		served := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionServed)
		ready := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady)
		return served != nil && served.Status == metav1.ConditionFalse && served.Reason == nodedelivery.ReasonNodeDeliveryOff &&
			ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == served.Reason &&
			strings.Contains(served.Message, "agent.serviceAccountTokens.enabled") &&
			e.ControllerMetric(t, ep, "pullpass_registry_served", map[string]string{"registry": "unserved-node"}) == 0
	})
	prom := ep.Prometheus(t)
	match := map[string]string{"registry": "unserved-node"}
	prom.WaitAlert(t, "PullpassRegistryUnserved", match, "firing", 2*time.Minute)
	checkAlert(t, prom, "PullpassRegistryUnserved", match, "namespace", "registry")
	r := runCLI(t, e, "", "-N", pp, "registries", "add", "unserved-cli.example.com", "bot", "pw", "--delivery", "Node", "--no-wait")
	if r.code != 2 || !strings.Contains(r.errOut, nodedelivery.ReasonNodeDeliveryOff) || !strings.Contains(r.errOut, "--force") {
		t.Fatalf("registries add --delivery Node: exit %d, stderr %q; want 2 naming NodeDeliveryOff and --force", r.code, r.errOut)
	}
	if _, err := e.Registries.Get(context.Background(), cli.NameForHost("unserved-cli.example.com"), metav1.GetOptions{}); err == nil {
		t.Fatal("the refused add wrote its Registry")
	}
}
