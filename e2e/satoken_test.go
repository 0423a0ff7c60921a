//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/pullpass/pullpass/agent/nodegrant"
	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/ecr/ecrtest"
)

// Namespaced registries delivered by the node (agent.serviceAccountTokens, on in the harness):
// the kubelet runs the plugin's token entry with each pod's service account token, and the node
// serves a registry only to the namespaces and service accounts it allows, with no Secret.

// tokenCache is how long the kubelet keeps the token entry's answer for a service account
// (agent.serviceAccountTokens.cacheDuration in the harness).
const tokenCache = 5 * time.Second

func grantsOnNode(t *testing.T, e *framework.Env) map[string]nodegrant.Grant {
	t.Helper()
	f, err := nodegrant.Read(nodegrant.Path(e.AgentCache()))
	if err != nil {
		t.Fatalf("reading the node's grants (is agent.serviceAccountTokens on?): %v", err)
	}
	out := map[string]nodegrant.Grant{}
	for _, g := range f.Grants {
		out[g.Registry] = g
	}
	return out
}

// nodeGrantsNothingAfter waits, when the test ends, for the node to grant nothing and the
// kubelet's cached answers to expire: other tests rely on the node serving nothing.
func nodeGrantsNothingAfter(t *testing.T, e *framework.Env) {
	t.Cleanup(func() {
		waitFor(t, time.Minute, "node grants empty", func() bool { return len(grantsOnNode(t, e)) == 0 })
		time.Sleep(tokenCache + time.Second)
	})
}

// freshImage copies the test image to a repository of its own: one no pod has pulled on this
// node yet, so the kubelet's pull records (KEP-2535) know it only from this test.
func freshImage(t *testing.T, e *framework.Env) string {
	t.Helper()
	img := e.Registry + "/satoken/" + rand.String(8) + ":1" // as the cluster names it
	e.CopyImage(t, e.Image, img)
	return img
}

func setLabel(t *testing.T, e *framework.Env, ns, key, value string) {
	t.Helper()
	ctx := framework.Context(t, time.Minute)
	obj, err := e.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(obj.Labels, key)
	} else {
		obj.Labels[key] = value
	}
	if _, err := e.Kube.CoreV1().Namespaces().Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func noPullSecretIn(t *testing.T, e *framework.Env, ns string) {
	t.Helper()
	secrets, err := e.Kube.CoreV1().Secrets(ns).List(framework.Context(t, time.Minute), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if s.Type == corev1.SecretTypeDockerConfigJson {
			t.Fatalf("a pull secret %s is in namespace %s", s.Name, ns)
		}
	}
}

// A Namespaced registry delivered by the node, selecting namespace A by label: a pod in A (never
// opted in to injection) pulls with no Secret anywhere; a pod in B on the same node cannot run
// the image even with IfNotPresent after A pulled it (the kubelet's pull records, KEP-2535, name
// A's service account); when A loses its label, pods in A are refused within seconds, new pulls
// and the image already on the node alike.
func TestNodeServesANamespacedRegistryOnlyToItsNamespaces(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	nodeServesNothingAfter(t, e)
	nodeGrantsNothingAfter(t, e)
	img := freshImage(t, e)
	label := "pullpass.io/e2e-satoken"
	nsA := e.Namespace(t, "sa-allowed", nil)
	nsB := e.Namespace(t, "sa-refused", nil)
	setLabel(t, e, nsA, label, "yes")

	e.CreateRegistry(t, framework.RegistryOptions{Name: "per-namespace", Scope: v1alpha1.ScopeNamespaced, Delivery: v1alpha1.DeliveryNode,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{label: "yes"}}})
	waitFor(t, time.Minute, "namespace A granted on the node", func() bool {
		g, ok := grantsOnNode(t, e)["per-namespace"]
		return ok && slices.Contains(g.Namespaces, nsA) && !slices.Contains(g.Namespaces, nsB)
	})
	if _, ok := agentCache(t, e)["per-namespace"]; ok {
		t.Fatal("the Namespaced registry is in the Cluster cache, served to every pod")
	}
	time.Sleep(tokenCache) // answers the kubelet cached before the grant expire

	hits := framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_plugin_requests_total", map[string]string{"result": "hit"})
	a := e.CreatePod(t, e.Pod(nsA, framework.PodOptions{Image: img, ImagePullPolicy: corev1.PullIfNotPresent}))
	if len(a.Spec.ImagePullSecrets) != 0 {
		t.Fatalf("the pod in A got pull secrets %v", a.Spec.ImagePullSecrets)
	}
	e.WaitRunning(t, nsA, a.Name)
	noPullSecretIn(t, e, nsA)
	if got := framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_plugin_requests_total", map[string]string{"result": "hit"}); got <= hits {
		t.Fatalf("plugin hits %v -> %v: the kubelet did not get A's credentials from the plugin", hits, got)
	}

	// B, same node, IfNotPresent: the image is there, but B's service account never pulled it.
	b := e.CreatePod(t, e.Pod(nsB, framework.PodOptions{Image: img, ImagePullPolicy: corev1.PullIfNotPresent}))
	msg := e.WaitPullFailure(t, nsB, b.Name)
	t.Logf("B refused: %s", firstLine(msg))
	noPullSecretIn(t, e, nsB)

	// A loses its label: the grant loses A, and once the kubelet's answer for A's service
	// account expired, a new pull in A is refused.
	setLabel(t, e, nsA, label, "")
	start := time.Now()
	waitFor(t, 30*time.Second, "namespace A out of the grant", func() bool {
		return !slices.Contains(grantsOnNode(t, e)["per-namespace"].Namespaces, nsA)
	})
	t.Logf("the grant lost namespace A %s after its label went", time.Since(start).Round(100*time.Millisecond))
	time.Sleep(tokenCache + time.Second)
	again := e.CreatePod(t, e.Pod(nsA, framework.PodOptions{Image: img, ImagePullPolicy: corev1.PullAlways}))
	e.WaitPullFailure(t, nsA, again.Name)
	// Nor may A run the image already on the node: the kubelet's check (KEP-2535) matches the
	// record of A's service account against the credentials the plugin gives that service
	// account now, and it gives none.
	kept := e.CreatePod(t, e.Pod(nsA, framework.PodOptions{Image: img, ImagePullPolicy: corev1.PullIfNotPresent}))
	e.WaitPullFailure(t, nsA, kept.Name)
}

// ECR per service account: a ServiceAccount annotated with a role (EKS's annotation) gets that
// role's ECR token, which the agent fetches through the real SDK from the local STS and ECR: STS
// with the pod's own service account token, ECR signed with the role's temporary keys. A service
// account the registry does not allow gets nothing.
func TestNodeServesECRWithTheServiceAccountsRole(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	nodeServesNothingAfter(t, e)
	nodeGrantsNothingAfter(t, e)
	srv := startECR(t, ecrtest.Reply{Username: e.RegistryUsername, Password: e.RegistryPassword, ExpiresAt: time.Now().Add(12 * time.Hour)})
	const role = "arn:aws:iam::123456789012:role/e2e-puller"
	ns := e.Namespace(t, "sa-ecr", nil)
	ctx := framework.Context(t, time.Minute)
	if _, err := e.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "puller",
		Annotations: map[string]string{"eks.amazonaws.com/ecr-role-arn": role}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ecr-per-sa"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{e.Registry}, Scope: v1alpha1.ScopeNamespaced, Delivery: v1alpha1.DeliveryNode,
		ServiceAccounts: &v1alpha1.ServiceAccountSelector{Names: []string{"puller"}},
		Auth:            v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{Region: "us-east-1"}},
	}}
	if _, err := e.Registries.Create(ctx, reg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Registries.Delete(context.Background(), reg.Name, metav1.DeleteOptions{}) })
	waitFor(t, time.Minute, "the ECR registry granted on the node", func() bool {
		g, ok := grantsOnNode(t, e)["ecr-per-sa"]
		return ok && g.ECR != nil
	})
	time.Sleep(tokenCache)

	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{ServiceAccount: "puller"}))
	e.WaitRunning(t, ns, pod.Name)
	if got := srv.WebIdentityRoles(); !slices.Contains(got, role+" for system:serviceaccount:"+ns+":puller") {
		t.Fatalf("STS AssumeRoleWithWebIdentity calls %v: want the role, with the pod's service account token", got)
	}
	if keys := srv.SigningKeys(); !slices.Contains(keys, ecrtest.WebIdentityKey(role)) {
		t.Fatalf("ECR calls signed by %v, want the role's key %s", keys, ecrtest.WebIdentityKey(role))
	}
	noPullSecretIn(t, e, ns)

	other := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	e.WaitPullFailure(t, ns, other.Name)
	for _, r := range srv.WebIdentityRoles() {
		if strings.HasSuffix(r, ":default") {
			t.Fatalf("STS was asked for the default service account: %v", r)
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
