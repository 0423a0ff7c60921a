//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// The chart's defaults on a cluster of several nodes (make e2e-kind): two webhook replicas behind
// their Service, two controller replicas (one leading), an agent per node. On the one-node harness these tests have nothing to prove
// and say so.

const (
	webhookSelector    = "app.kubernetes.io/component=webhook"
	controllerSelector = "app.kubernetes.io/component=controller"
)

// workers returns the schedulable nodes without the control-plane role, failing over to a
// skip on a cluster of one node.
func workers(t *testing.T, e *framework.Env) []string {
	t.Helper()
	nodes, err := e.Kube.CoreV1().Nodes().List(framework.Context(t, time.Minute), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range nodes.Items {
		if _, cp := n.Labels["node-role.kubernetes.io/control-plane"]; !cp && !n.Spec.Unschedulable {
			out = append(out, n.Name)
		}
	}
	if len(out) < 2 {
		t.Skipf("needs a cluster with two worker nodes and a pod network (make e2e-kind); this one has %d", len(out))
	}
	slices.Sort(out)
	return out
}

func webhookPods(t *testing.T, e *framework.Env) []corev1.Pod {
	return pullpassPods(t, e, webhookSelector)
}

func controllerPods(t *testing.T, e *framework.Env) []corev1.Pod {
	return pullpassPods(t, e, controllerSelector)
}

// pullpassPods are the pods of one component, not being deleted.
func pullpassPods(t *testing.T, e *framework.Env, selector string) []corev1.Pod {
	t.Helper()
	list, err := e.Kube.CoreV1().Pods(framework.PullpassNamespace).List(framework.Context(t, time.Minute), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// webhookReady waits for the webhook Deployment to have all its replicas ready and up to date.
func webhookReady(t *testing.T, e *framework.Env, d time.Duration) {
	deploymentReady(t, e, "pullpass-webhook", d)
}

// deploymentReady waits for one of pullpass's Deployments to have all its replicas ready and up
// to date.
func deploymentReady(t *testing.T, e *framework.Env, name string, d time.Duration) {
	t.Helper()
	waitFor(t, d, name+" rolled out and ready", func() bool {
		dep, err := e.Kube.AppsV1().Deployments(framework.PullpassNamespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil || dep.Spec.Replicas == nil {
			return false
		}
		s := dep.Status
		return s.ObservedGeneration >= dep.Generation && s.UpdatedReplicas == *dep.Spec.Replicas &&
			s.ReadyReplicas == *dep.Spec.Replicas && s.Replicas == *dep.Spec.Replicas
	})
}

// controllerSettled waits for the controller's Deployment ready, no controller pod terminating,
// and a current pod holding the keeper's Lease: what a leader counts is then in the metrics of a
// pod that stays.
func controllerSettled(t *testing.T, e *framework.Env, d time.Duration) {
	t.Helper()
	deploymentReady(t, e, "pullpass-controller", d)
	waitFor(t, d, "the old controller pods gone and a current one leading", func() bool {
		list, err := e.Kube.CoreV1().Pods(framework.PullpassNamespace).List(framework.Context(t, time.Minute), metav1.ListOptions{LabelSelector: controllerSelector})
		if err != nil {
			return false
		}
		l, err := e.Kube.CoordinationV1().Leases(framework.PullpassNamespace).Get(framework.Context(t, time.Minute), keeperLease, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return false
		}
		leads := false
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				return false
			}
			// The holder is named by the host: on the harness (host network) the node's name,
			// which the old pods are gone from.
			leads = leads || strings.HasPrefix(*l.Spec.HolderIdentity, p.Name+"_") ||
				(p.Spec.HostNetwork && *l.Spec.HolderIdentity != "")
		}
		return leads
	})
}

// failOpens is the API server's count of admissions that went on without pullpass's answer.
func failOpens(t *testing.T, e *framework.Env) float64 {
	return e.APIServerMetric(t, "apiserver_admission_webhook_fail_open_count", func(l map[string]string) bool {
		return l["type"] == "admit"
	})
}

// admitMany creates pods in ns, a few at a time, while during() runs (and at least n of them),
// and returns the names of those admitted without the pull secret.
func admitMany(t *testing.T, e *framework.Env, ns, secret string, n int, during func()) []string {
	t.Helper()
	var (
		mu      sync.Mutex
		without []string
		wg      sync.WaitGroup
	)
	slots := make(chan struct{}, 3)
	done := make(chan struct{})
	for i := 0; ; i++ {
		if i == 2 {
			go func() { during(); close(done) }()
		}
		if i >= n {
			select {
			case <-done:
				wg.Wait()
				return without
			default:
			}
		}
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			p := e.Pod(ns, framework.PodOptions{ImagePullPolicy: corev1.PullIfNotPresent, RestartNever: true, Command: []string{"/hello"}})
			created, err := e.Kube.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
			if err != nil {
				t.Errorf("creating pod %d: %v", i, err)
				return
			}
			if !slices.Contains(pullSecretNames(created), secret) {
				mu.Lock()
				without = append(without, created.Name)
				mu.Unlock()
			}
		}()
		if i < n {
			time.Sleep(200 * time.Millisecond)
		} else {
			time.Sleep(time.Second) // the first n make the load; then a pod a second until during() ends
		}
	}
}

func pullSecretNames(p *corev1.Pod) []string {
	var out []string
	for _, r := range p.Spec.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out
}

// A Deployment of the private image, spread over both workers, becomes ready with the pull
// secret the webhook wrote; a Cluster-scope registry is served to a pod on each node by that
// node's agent.
func TestHADeploymentAcrossWorkersAndEveryNodeServes(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	nodes := workers(t, e)
	nodeServesNothingAfter(t, e) // the Cluster-scope registry below must not serve later tests
	ctx := framework.Context(t, 5*time.Minute)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "ha-spread"})
	ns := e.Namespace(t, "ha-spread", optIn)
	e.WaitServed(t, ns, "pullpass-"+reg.Name)

	labels := map[string]string{"app": "ha-spread"}
	replicas := int32(len(nodes))
	tmpl := e.Pod(ns, framework.PodOptions{})
	tmpl.Spec.Tolerations, tmpl.Spec.NodeSelector = nil, nil // anywhere but the control plane
	tmpl.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			TopologyKey: "kubernetes.io/hostname", LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "ha-spread", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: tmpl.Spec}}}
	if _, err := e.Kube.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "the Deployment ready on every worker", func() bool {
		d, err := e.Kube.AppsV1().Deployments(ns).Get(ctx, dep.Name, metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == replicas
	})
	pods, err := e.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=ha-spread"})
	if err != nil {
		t.Fatal(err)
	}
	var on []string
	for _, p := range pods.Items {
		on = append(on, p.Spec.NodeName)
		if !slices.Contains(pullSecretNames(&p), "pullpass-"+reg.Name) {
			t.Errorf("pod %s has pull secrets %v", p.Name, pullSecretNames(&p))
		}
	}
	slices.Sort(on)
	if !slices.Equal(on, nodes) {
		t.Fatalf("pods on %v, want one on each worker %v", on, nodes)
	}

	// Cluster scope: no pull secret anywhere, each node's agent serves its kubelet.
	e.CreateRegistry(t, framework.RegistryOptions{Name: "ha-node", Scope: v1alpha1.ScopeCluster})
	time.Sleep(pluginCache)
	plain := e.Namespace(t, "ha-node", nil)
	for _, node := range nodes {
		p := e.Pod(plain, framework.PodOptions{})
		p.Spec.NodeName, p.Spec.NodeSelector = node, nil
		created := e.CreatePod(t, p)
		if len(created.Spec.ImagePullSecrets) != 0 {
			t.Fatalf("a pod of a plain namespace got pull secrets %v", created.Spec.ImagePullSecrets)
		}
		e.WaitRunning(t, plain, created.Name)
	}
}

// One webhook pod is deleted while 30 pods are created in a namespace that just opted in: every
// pod is admitted with its pull secret (the other replica answers, the deleted one drains), and
// the API server never had to go on without pullpass.
func TestHAWebhookPodDeletedWhileAdmitting(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	workers(t, e)
	webhookReady(t, e, 2*time.Minute)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "ha-admit"})
	secret := "pullpass-" + reg.Name
	ns := e.Namespace(t, "ha-admit", optIn)
	e.WaitServed(t, ns, secret)
	opens := failOpens(t, e)
	victim := webhookPods(t, e)[0].Name
	without := admitMany(t, e, ns, secret, 30, func() {
		if err := e.Kube.CoreV1().Pods(framework.PullpassNamespace).Delete(context.Background(), victim, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting webhook pod %s: %v", victim, err)
		}
	})
	if len(without) > 0 {
		t.Fatalf("%d of 30 pods admitted without their pull secret while %s went: %v", len(without), victim, without)
	}
	if d := failOpens(t, e) - opens; d != 0 {
		t.Fatalf("the API server went on without pullpass %v times", d)
	}
	webhookReady(t, e, 2*time.Minute)
}

// The controller's leader is deleted: leadership moves to the other replica, and a rotation still
// reaches every namespace.
func TestHALeaderDeletedRotationStillReaches(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	workers(t, e)
	controllerSettled(t, e, 2*time.Minute)
	ctx := framework.Context(t, 5*time.Minute)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "ha-leader"})
	secret := "pullpass-" + reg.Name
	var namespaces []string
	for range 2 {
		ns := e.Namespace(t, "ha-leader", optIn)
		e.WaitServed(t, ns, secret)
		e.CreatePod(t, e.Pod(ns, framework.PodOptions{ImagePullPolicy: corev1.PullIfNotPresent, RestartNever: true, Command: []string{"/hello"}}))
		waitFor(t, 30*time.Second, "the pull secret made", func() bool { return !e.SecretGone(t, ns, secret) })
		namespaces = append(namespaces, ns)
	}
	leases := e.Kube.CoordinationV1().Leases(framework.PullpassNamespace)
	holder := func() string {
		l, err := leases.Get(ctx, keeperLease, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	// A replica leads (after an earlier test's restarts, the Lease may take a term to be won).
	var leader, leaderPod string
	waitFor(t, time.Minute, "a controller pod holding the Lease", func() bool {
		leader = holder()
		for _, p := range controllerPods(t, e) {
			if strings.HasPrefix(leader, p.Name+"_") {
				leaderPod = p.Name
			}
		}
		return leaderPod != ""
	})
	if err := e.Kube.CoreV1().Pods(framework.PullpassNamespace).Delete(ctx, leaderPod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "another replica leading", func() bool { h := holder(); return h != "" && h != leader })
	t.Logf("leader %s, then %s", leader, holder())
	t.Cleanup(func() {
		if t.Failed() {
			for _, ns := range namespaces {
				t.Logf("pull secret %s", e.SecretWriters(t, ns, secret))
			}
		}
	})
	pw := "rotated-" + rand.String(6)
	e.SetSourcePassword(t, reg.Name, pw)
	for _, ns := range namespaces {
		waitFor(t, time.Minute, "the rotation in "+ns, func() bool { got, _ := e.PullSecretPassword(t, ns, secret); return got == pw })
	}
	deploymentReady(t, e, "pullpass-controller", 2*time.Minute)
}

// With no webhook pod at all, pods are still admitted (failurePolicy Ignore, through the
// Service), and the API server counts each; once the webhook is back, pods get their secrets.
func TestHAFailOpenThroughTheService(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	workers(t, e)
	ctx := framework.Context(t, 5*time.Minute)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "ha-failopen"})
	secret := "pullpass-" + reg.Name
	ns := e.Namespace(t, "ha-failopen", optIn)
	e.WaitServed(t, ns, secret)
	deps := e.Kube.AppsV1().Deployments(framework.PullpassNamespace)
	scale := func(n int32) {
		s, err := deps.GetScale(ctx, "pullpass-webhook", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Spec.Replicas = n
		if _, err := deps.UpdateScale(ctx, "pullpass-webhook", s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { scale(2); webhookReady(t, e, 3*time.Minute) })
	scale(0)
	waitFor(t, 2*time.Minute, "no webhook pod left", func() bool {
		list, _ := e.Kube.CoreV1().Pods(framework.PullpassNamespace).List(ctx, metav1.ListOptions{LabelSelector: webhookSelector})
		return list != nil && len(list.Items) == 0
	})
	opens := failOpens(t, e)
	p := e.CreatePod(t, e.Pod(ns, framework.PodOptions{ImagePullPolicy: corev1.PullIfNotPresent, RestartNever: true, Command: []string{"/hello"}}))
	if names := pullSecretNames(p); slices.Contains(names, secret) {
		t.Fatalf("pull secrets %v with no webhook running", names)
	}
	if d := failOpens(t, e) - opens; d < 1 {
		t.Fatalf("the API server did not count the admission that went on without pullpass (%v)", d)
	}
	scale(2)
	webhookReady(t, e, 3*time.Minute)
	e.WaitServed(t, ns, secret)
}

// helm upgrade rolls the webhook's pods: no admission during the roll goes without pullpass.
func TestHAHelmUpgradeRollsWithoutFailedAdmission(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	workers(t, e)
	webhookReady(t, e, 2*time.Minute)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "ha-roll"})
	secret := "pullpass-" + reg.Name
	ns := e.Namespace(t, "ha-roll", optIn)
	e.WaitServed(t, ns, secret)
	before := webhookPods(t, e)
	opens := failOpens(t, e)
	upgrade := e.HelmUpgrade(t, e.Deployed(t), "--set", "webhook.podAnnotations.e2e-roll="+rand.String(6), "--wait", "--timeout", "3m")
	var out []byte
	var upErr error
	without := admitMany(t, e, ns, secret, 40, func() { out, upErr = upgrade.CombinedOutput() })
	if upErr != nil {
		t.Fatalf("helm upgrade: %v\n%s", upErr, out)
	}
	webhookReady(t, e, 3*time.Minute)
	after := webhookPods(t, e)
	for _, p := range after {
		for _, b := range before {
			if p.Name == b.Name {
				t.Fatalf("pod %s was not replaced by the upgrade", p.Name)
			}
		}
	}
	if len(without) > 0 {
		t.Fatalf("%d pods admitted without their pull secret during the roll: %v", len(without), without)
	}
	if d := failOpens(t, e) - opens; d != 0 {
		t.Fatalf("the API server went on without pullpass %v times during the roll", d)
	}
}

// A worker is drained (its evictable pods go, the PodDisruptionBudget holding one webhook
// replica) and uncordoned: its agent kept serving throughout, and a pod there pulls with no secret.
func TestHADrainedNodeKeepsItsAgentServing(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	node := workers(t, e)[0]
	nodeServesNothingAfter(t, e)
	ctx := framework.Context(t, 5*time.Minute)
	nodes := e.Kube.CoreV1().Nodes()
	cordon := func(v bool) {
		n, err := nodes.Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Spec.Unschedulable = v
		if _, err := nodes.Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { cordon(false) })
	cordon(true)
	pods, err := e.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		// As kubectl drain: DaemonSet pods stay (the agent among them); finished or already
		// terminating pods need no eviction.
		owner := metav1.GetControllerOf(&p)
		if owner != nil && owner.Kind == "DaemonSet" || p.Namespace == "kube-system" || p.DeletionTimestamp != nil ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
		waitFor(t, 2*time.Minute, fmt.Sprintf("pod %s/%s evicted", p.Namespace, p.Name), func() bool {
			err := e.Kube.CoreV1().Pods(p.Namespace).EvictV1(ctx, ev)
			return err == nil || apierrors.IsNotFound(err)
		})
	}
	// The agent on the drained node is still there and ready.
	agents, err := e.Kube.CoreV1().Pods(framework.PullpassNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/component=agent", FieldSelector: "spec.nodeName=" + node})
	if err != nil || len(agents.Items) != 1 || !podReady(&agents.Items[0]) {
		t.Fatalf("the agent of the drained node is not running and ready: %v", err)
	}
	cordon(false)
	e.CreateRegistry(t, framework.RegistryOptions{Name: "ha-drain", Scope: v1alpha1.ScopeCluster})
	time.Sleep(pluginCache)
	plain := e.Namespace(t, "ha-drain", nil)
	p := e.Pod(plain, framework.PodOptions{})
	p.Spec.NodeName, p.Spec.NodeSelector = node, nil
	e.WaitRunning(t, plain, e.CreatePod(t, p).Name)
	webhookReady(t, e, 3*time.Minute)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
