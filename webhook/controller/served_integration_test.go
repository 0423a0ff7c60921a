package controller

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/nodedelivery"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// Issue #24: on a cluster whose agents are not in token mode (--node-delivery=cluster), a
// Namespaced registry delivered by the node is Served=False and Ready=False, with
// pullpass_registry_served 0; a Cluster-scope one is served by the agent DaemonSet's ready pods,
// and by nothing once none is ready.
func TestServedFollowsNodeDelivery(t *testing.T) {
	env := controlPlane.Env(t)
	env.EnsureNamespace(t, ns)
	env.SourceSecret(t, ns, "served-src", "served.example.com", "pw")
	labels := map[string]string{"app": "served-agent"}
	ds, err := env.Kube.AppsV1().DaemonSets(ns).Create(t.Context(), &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "served-agent"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent"}}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 2, NumberReady: 1}
	if _, err := env.Kube.AppsV1().DaemonSets(ns).UpdateStatus(t.Context(), ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	registry := func(name string, scope v1alpha1.Scope, d v1alpha1.Delivery) *v1alpha1.Registry {
		return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{name + ".example.com"}, Scope: scope, Delivery: d,
			Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: "served-src"}},
		}}
	}
	env.CreateRegistry(t, registry("served-node", v1alpha1.ScopeNamespaced, v1alpha1.DeliveryNode))
	env.CreateRegistry(t, registry("served-cluster", v1alpha1.ScopeCluster, ""))
	r := startReplica(t, env, func(o *Options) { o.NodeDelivery, o.AgentDaemonSet = string(nodedelivery.Cluster), "served-agent" })

	status := func(name string) func() (*v1alpha1.RegistryStatus, error) {
		return func() (*v1alpha1.RegistryStatus, error) {
			reg, err := env.Registries.Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return &reg.Status, nil
		}
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		st, err := status("served-node")()
		if err != nil {
			return err
		}
		served := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionServed)
		ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
		if served == nil || served.Status != metav1.ConditionFalse || served.Reason != nodedelivery.ReasonNodeDeliveryOff ||
			ready == nil || ready.Status != metav1.ConditionFalse {
			return fmt.Errorf("served-node: Served %+v, Ready %+v; want both False, NodeDeliveryOff", served, ready)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		st, err := status("served-cluster")()
		if err != nil {
			return err
		}
		served := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionServed)
		if served == nil || served.Status != metav1.ConditionTrue || st.Served == nil || st.Served.Nodes == nil ||
			*st.Served.Nodes != (v1alpha1.NodesServed{Ready: 1, Desired: 2}) {
			return fmt.Errorf("served-cluster: Served %+v, served %+v; want True on 1 of 2 nodes", served, st.Served)
		}
		return nil
	})
	// The last agent stops being ready: nothing serves the Cluster-scope registry any more.
	ds, err = env.Kube.AppsV1().DaemonSets(ns).Get(t.Context(), "served-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ds.Status.NumberReady = 0
	if _, err := env.Kube.AppsV1().DaemonSets(ns).UpdateStatus(t.Context(), ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() error {
		st, err := status("served-cluster")()
		if err != nil {
			return err
		}
		served := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionServed)
		ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
		if served == nil || served.Status != metav1.ConditionFalse || served.Reason != "NoAgentReady" || ready == nil || ready.Status != metav1.ConditionFalse {
			return fmt.Errorf("served-cluster: Served %+v, Ready %+v; want both False, NoAgentReady", served, ready)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + r.metrics + "/metrics")
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		for _, want := range []string{`pullpass_registry_served{registry="served-node"} 0`, `pullpass_registry_served{registry="served-cluster"} 0`} {
			if !strings.Contains(string(body), want) {
				return fmt.Errorf("/metrics has no %s", want)
			}
		}
		return nil
	})
}
