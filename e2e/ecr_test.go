//go:build e2e

package e2e

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/ecr/ecrtest"
)

// ecrEndpoint is where the deployed webhook and agent look for the ECR API: the harness's
// (values-harness.yaml), or E2E_ECR_LISTEN (the kind cluster's, which its pods reach).
var ecrEndpoint = func() string {
	if v := os.Getenv("E2E_ECR_LISTEN"); v != "" {
		return v
	}
	return "127.0.0.1:28900"
}()

// An ECR registry, through the real aws-sdk-go-v2 client in the deployed webhook, against a local
// ECR API whose tokens open the harness registry: a pod pulls with the token, the token is
// refreshed at half its life, a failing refresh keeps the last good token until it expires, and
// the status says each of these.
func TestECRTokensRefreshAndExpire(t *testing.T) {
	framework.ProvedOn(t, framework.Harness, "the controller's refresh of a token does not depend on the nodes")
	e := framework.Load(t)
	e.Deployed(t)
	ctx := framework.Context(t, 5*time.Minute)

	life := 30 * time.Second
	srv := startECR(t, ecrtest.Reply{Username: e.RegistryUsername, Password: e.RegistryPassword, ExpiresAt: time.Now().Add(life)})
	reg := createECRRegistry(t, e, "e2e-ecr-"+rand.String(5), v1alpha1.ScopeNamespaced)

	ns := e.Namespace(t, "ecr", optIn)
	e.WaitServed(t, ns, "pullpass-"+reg.Name)
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	e.WaitRunning(t, ns, pod.Name)
	if _, signed := srv.Calls(); signed == 0 {
		t.Fatal("no SigV4-signed GetAuthorizationToken reached the local ECR API")
	}

	ready := func() (*v1alpha1.Registry, *metav1.Condition) {
		r, err := e.Registries.Get(ctx, reg.Name, metav1.GetOptions{})
		if err != nil {
			return nil, nil
		}
		return r, meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady)
	}
	var firstExpiry time.Time
	waitFor(t, time.Minute, "Ready with an expiry", func() bool {
		r, c := ready()
		if c == nil || c.Status != metav1.ConditionTrue || r.Status.ExpiresAt == nil {
			return false
		}
		firstExpiry = r.Status.ExpiresAt.Time
		return true
	})

	// At about half its life the token is refreshed: the next one expires later. Later by whole
	// seconds: the status keeps seconds only, and a pod that runs at once leaves the first
	// token's expiry within a second of now+life (CI saw both truncate to the same second).
	srv.SetReplies(ecrtest.Reply{Username: e.RegistryUsername, Password: e.RegistryPassword, ExpiresAt: firstExpiry.Add(life / 2)})
	waitFor(t, life, "refreshed before expiry", func() bool {
		r, _ := ready()
		return r != nil && r.Status.ExpiresAt != nil && r.Status.ExpiresAt.After(firstExpiry)
	})

	// ECR starts refusing: the last good token stays, and the status says the refresh fails...
	srv.SetReplies(ecrtest.Reply{ErrorCode: "AccessDeniedException", Message: "not authorized to perform: ecr:GetAuthorizationToken"})
	waitFor(t, life, "reporting RefreshFailing while the last token is good", func() bool {
		_, c := ready()
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == "RefreshFailing"
	})
	// ... until it expires.
	waitFor(t, life+30*time.Second, "not Ready (AccessDenied) once the last token expired", func() bool {
		_, c := ready()
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == "AccessDenied"
	})
}

// A source slower than the webhook's timeout (issue #24): the local ECR API answers after 8 s, past
// the chart's 5 s timeoutSeconds, when the first pod of a new namespace is admitted. The pod is
// admitted within the timeout with the reference to its pull secret (a pod's pull secrets can
// never be added later), counted, and runs with no human action once the secret is written.
func TestSlowSourceFirstPodGetsItsReferenceAndRuns(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	delay := 8 * time.Second
	startECR(t, ecrtest.Reply{Username: e.RegistryUsername, Password: e.RegistryPassword, ExpiresAt: time.Now().Add(12 * time.Hour), Delay: delay})
	reg := createECRRegistry(t, e, "e2e-slow-ecr-"+rand.String(5), v1alpha1.ScopeNamespaced)
	secret := "pullpass-" + reg.Name
	ns := e.Namespace(t, "slow-source", optIn)
	ahead := func() float64 {
		return e.WebhookMetric(t, ep, "pullpass_webhook_pods_admitted_ahead_of_secret_total", map[string]string{"registry": reg.Name})
	}
	before := ahead()

	start := time.Now()
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	admitted := time.Since(start)
	if admitted >= delay {
		t.Fatalf("admission took %s: it waited for the slow source", admitted)
	}
	if !slices.ContainsFunc(pod.Spec.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == secret }) {
		t.Fatalf("the pod was admitted (in %s) without %s: %v", admitted.Round(time.Millisecond), secret, pod.Spec.ImagePullSecrets)
	}
	// Its first pulls may fail (FailedToRetrieveImagePullSecret): the kubelet reads the pod's
	// pull secrets again at each try.
	e.WaitPod(t, ns, pod.Name, 2*time.Minute, "running once its pull secret is written", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})
	t.Logf("admitted in %s with its reference; running %s after creation", admitted.Round(time.Millisecond), time.Since(start).Round(time.Second))
	if got := ahead(); got < before+1 {
		t.Fatalf("pullpass_webhook_pods_admitted_ahead_of_secret_total{registry=%q}: %v -> %v, want one more", reg.Name, before, got)
	}
}

// startECR serves a local ECR API on the port the deployed webhook and agent know.
func startECR(t *testing.T, replies ...ecrtest.Reply) *ecrtest.Server {
	t.Helper()
	srv := ecrtest.New(replies...)
	srv.Close() // rebind on the port the webhook knows
	ln, err := net.Listen("tcp", ecrEndpoint)
	if err != nil {
		t.Fatalf("the local ECR API needs %s: %v", ecrEndpoint, err)
	}
	srv.Server = httptest.NewUnstartedServer(srv.Config.Handler)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// createECRRegistry makes an ECR Registry for the harness registry's host, with static keys,
// changed by opts before it is created.
func createECRRegistry(t *testing.T, e *framework.Env, name string, scope v1alpha1.Scope, opts ...func(*v1alpha1.Registry)) *v1alpha1.Registry {
	t.Helper()
	ctx := framework.Context(t, time.Minute)
	keys := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-aws-keys", Namespace: framework.PullpassNamespace},
		StringData: map[string]string{"aws_access_key_id": "AKIAE2EEXAMPLE", "aws_secret_access_key": "e2e-secret-key"}}
	if _, err := e.Kube.CoreV1().Secrets(framework.PullpassNamespace).Create(ctx, keys, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Kube.CoreV1().Secrets(framework.PullpassNamespace).Delete(context.Background(), keys.Name, metav1.DeleteOptions{})
	})
	reg := &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.RegistrySpec{Hosts: []string{e.Registry}, Scope: scope, Auth: v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{
			Region: "us-east-1", AccessKeySecretRef: &v1alpha1.SecretReference{Name: keys.Name, Namespace: framework.PullpassNamespace},
		}}},
	}
	for _, o := range opts {
		o(reg)
	}
	created, err := e.Registries.Create(ctx, reg, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Registries.Delete(context.Background(), reg.Name, metav1.DeleteOptions{}) })
	return created
}

// The node agent with ECR through the real SDK: a pod in a plain namespace pulls with the token
// the node serves; when ECR starts refusing, the node keeps serving the last good token until it
// expires, and then drops it.
func TestAgentECRKeepsLastGoodTokenUntilExpiry(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	nodeServesNothingAfter(t, e)
	life := 40 * time.Second
	expires := time.Now().Add(life).Truncate(time.Second)
	srv := startECR(t, ecrtest.Reply{Username: e.RegistryUsername, Password: e.RegistryPassword, ExpiresAt: expires})
	createECRRegistry(t, e, "node-ecr", v1alpha1.ScopeCluster)
	waitFor(t, 30*time.Second, "the ECR token in the node cache", func() bool {
		return agentCache(t, e)["node-ecr"].Password == e.RegistryPassword
	})
	if got := framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_credentials_expiry_timestamp_seconds", map[string]string{"registry": "node-ecr"}); got != float64(expires.Unix()) {
		t.Fatalf("expiry metric %v, want %d", got, expires.Unix())
	}
	time.Sleep(pluginCache)
	ns := e.Namespace(t, "node-ecr", nil)
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	e.WaitRunning(t, ns, pod.Name)

	// ECR refuses from now on: the token stays until it expires.
	srv.SetReplies(ecrtest.Reply{ErrorCode: "AccessDeniedException", Message: "not authorized to perform: ecr:GetAuthorizationToken"})
	waitFor(t, life, "a failed refresh counted", func() bool {
		return framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_refreshes_total", map[string]string{"registry": "node-ecr", "result": "stale"}) >= 1
	})
	if time.Now().Before(expires) {
		if got := agentCache(t, e)["node-ecr"]; got.Password != e.RegistryPassword {
			t.Fatalf("the last good token left the cache before it expired: %v", got)
		}
	}
	waitFor(t, life+15*time.Second, "the expired token out of the cache", func() bool {
		_, ok := agentCache(t, e)["node-ecr"]
		return !ok
	})
	if left := time.Until(expires); left > time.Second {
		t.Fatalf("the token was dropped %s before it expired", left)
	}
}
