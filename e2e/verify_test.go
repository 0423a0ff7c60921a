//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/cli"
)

// addRefusedThenFixed runs `registries add` with a wrong password, then the right one: the first
// says what the registry said and exits 1 within its wait (no pod involved), the registry stays
// with Verified=False Unauthorized; the second says Login Succeeded and flips the condition.
func addRefusedThenFixed(t *testing.T, e *framework.Env, host, name, username, password, refusal string) {
	t.Helper()
	ns := framework.PullpassNamespace
	t.Cleanup(func() {
		_ = e.Registries.Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = e.Kube.CoreV1().Secrets(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	start := time.Now()
	r := runCLI(t, e, "wrong-password\n", "-N", ns, "registries", "add", host, "--name", name, "--username", username, "--password-stdin")
	took := time.Since(start)
	if r.code != cli.ExitNoMatch || !strings.Contains(r.out, "registry "+name+" created") ||
		!strings.Contains(r.errOut, "login to "+host+" refused") || !strings.Contains(r.errOut, refusal) || !strings.Contains(r.errOut, "(Unauthorized)") {
		t.Fatalf("add with a wrong password: exit %d, out %q, err %q; want exit 1 with the registry's refusal (%q)", r.code, r.out, r.errOut, refusal)
	}
	t.Logf("refused after %s: %s", took.Round(100*time.Millisecond), strings.TrimSpace(r.errOut))
	if strings.Contains(r.out+r.errOut, "wrong-password") {
		t.Fatal("the CLI printed the password")
	}
	c := e.WaitVerified(t, name, "Unauthorized", 5*time.Second)
	if c.Status != metav1.ConditionFalse || strings.Contains(c.Message, "wrong-password") {
		t.Fatalf("condition %+v", c)
	}
	list := runCLI(t, e, "", "-N", ns, "registries", "list")
	if !rowHas(list.out, name, "False (Unauthorized)") {
		t.Fatalf("list does not show the refusal:\n%s", list.out)
	}

	r = runCLI(t, e, password+"\n", "-N", ns, "registries", "add", host, "--name", name, "--username", username, "--password-stdin")
	if r.code != 0 || !strings.Contains(r.out, "registry "+name+" updated") || !strings.Contains(r.out, "Login Succeeded") {
		t.Fatalf("add with the right password: exit %d, out %q, err %q", r.code, r.out, r.errOut)
	}
	if strings.Contains(r.out+r.errOut, password) {
		t.Fatal("the CLI printed the password")
	}
	e.WaitVerified(t, name, "Verified", 5*time.Second)
	if list := runCLI(t, e, "", "-N", ns, "registries", "list"); !rowHas(list.out, name, "True") {
		t.Fatalf("list after the fix:\n%s", list.out)
	}
}

func rowHas(out, name, verified string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == name {
			return strings.Contains(l, " "+verified+" ")
		}
	}
	return false
}

// The htpasswd registry (Basic auth) refuses a wrong password, as docker login would.
func TestVerifyBasicRegistryWrongPassword(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	addRefusedThenFixed(t, e, e.Var("REGISTRY_ALIAS"), "verify-basic", e.RegistryUsername, e.RegistryPassword,
		"401 Unauthorized: UNAUTHORIZED: authentication required")
}

// The token registry (Bearer, as Docker Hub): its token service refuses the wrong password; no
// manifest is ever fetched by a verification.
func TestVerifyBearerRegistryWrongPassword(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	tr := e.TokenRegistry(t)
	before := tr.State(t).Counts
	addRefusedThenFixed(t, e, tr.Host, "verify-bearer", tr.Username, tr.Password, "incorrect username or password")
	after := tr.State(t).Counts
	if after["token-refused"] <= before["token-refused"] || after["token"] <= before["token"] {
		t.Fatalf("the token service saw no refused and no granted token request: %v -> %v", before, after)
	}
}

// A registry answering 429 with rate-limit headers shows RateLimited and the limit gauges; its
// retries (back-off, no source change) write no pull secret; it verifies again once it answers.
func TestVerifyRateLimited(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	tr := e.TokenRegistry(t)
	t.Cleanup(func() { tr.Set(t, ptr(false), nil) })
	e.CreateRegistry(t, framework.RegistryOptions{Name: "verify-429", Hosts: []string{tr.Host}, SourceHost: tr.Host, Username: tr.Username, Password: tr.Password})
	e.WaitVerified(t, "verify-429", "Verified", 30*time.Second)

	tr.Set(t, ptr(true), nil)
	touchSource(t, e, "verify-429") // a change of the source: verified at once
	c := e.WaitVerified(t, "verify-429", "RateLimited", 30*time.Second)
	if !strings.Contains(c.Message, "429 Too Many Requests: TOOMANYREQUESTS") {
		t.Fatalf("message %q", c.Message)
	}
	wantMetric(t, e, ep, "pullpass_registry_pull_limit", map[string]string{"registry": "verify-429"}, 200)
	wantMetric(t, e, ep, "pullpass_registry_pulls_remaining", map[string]string{"registry": "verify-429"}, 0)
	wantMetric(t, e, ep, "pullpass_registry_verification_state", map[string]string{"registry": "verify-429", "reason": "RateLimited"}, 1)
	wantMetric(t, e, ep, "pullpass_registry_verified", map[string]string{"registry": "verify-429"}, 0)

	// The retry after the back-off (Retry-After: 60s) is a verification with no source change: it
	// writes no Secret at all.
	attempts := e.ControllerMetric(t, ep, "pullpass_registry_verifications_total", map[string]string{"registry": "verify-429", "reason": "RateLimited"})
	writes := e.APIServerWrites(t, "secrets")
	waitFor(t, 2*time.Minute, "a retry of the rate-limited registry", func() bool {
		return e.ControllerMetric(t, ep, "pullpass_registry_verifications_total", map[string]string{"registry": "verify-429", "reason": "RateLimited"}) > attempts
	})
	if got := e.APIServerWrites(t, "secrets"); got != writes {
		t.Fatalf("secret writes went from %v to %v during a verification retry", writes, got)
	}

	tr.Set(t, ptr(false), nil)
	touchSource(t, e, "verify-429")
	e.WaitVerified(t, "verify-429", "Verified", 30*time.Second)
}

// Docker Hub's names log in where the deployment says (the harness's token registry here) and read
// the pull limit from a HEAD on a manifest, never a pull.
func TestVerifyDockerHubPullLimit(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	tr := e.TokenRegistry(t)
	t.Cleanup(func() { tr.Set(t, nil, ptr(int64(200))) })
	tr.Set(t, ptr(false), ptr(int64(37)))
	ctx := framework.Context(t, time.Minute)
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "e2e-verify-hub", Namespace: framework.PullpassNamespace},
		Data: map[string][]byte{"username": []byte(tr.Username), "token": []byte(tr.Password)}}
	if _, err := e.Kube.CoreV1().Secrets(src.Namespace).Create(ctx, src, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Kube.CoreV1().Secrets(src.Namespace).Delete(context.Background(), src.Name, metav1.DeleteOptions{})
	})
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "verify-hub"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{"docker.io"},
		Auth:  v1alpha1.RegistryAuth{DockerHub: &v1alpha1.DockerHubSource{SecretRef: v1alpha1.SecretReference{Name: src.Name, Namespace: src.Namespace}}},
	}}
	if _, err := e.Registries.Create(ctx, reg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Registries.Delete(context.Background(), "verify-hub", metav1.DeleteOptions{}) })
	before := tr.State(t).Counts
	c := e.WaitVerified(t, "verify-hub", "Verified", 30*time.Second)
	if !strings.Contains(c.Message, "pull limit 200 per 6h0m0s, 37 remaining") {
		t.Fatalf("message %q", c.Message)
	}
	wantMetric(t, e, ep, "pullpass_registry_pulls_remaining", map[string]string{"registry": "verify-hub"}, 37)
	wantMetric(t, e, ep, "pullpass_registry_pull_limit_window_seconds", map[string]string{"registry": "verify-hub"}, 21600)
	after := tr.State(t).Counts
	if after["limits"] <= before["limits"] {
		t.Fatalf("no rate-limit HEAD was answered: %v -> %v", before, after)
	}
	r, err := e.Registries.Get(ctx, "verify-hub", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l := r.Status.Verification.PullLimit; l == nil || l.Limit != 200 || l.Remaining != 37 {
		t.Fatalf("status pull limit %+v", l)
	}
}

// A pod under a Deployment stuck in ImagePullBackOff on a wrong password is recreated within a
// minute of the fix where the namespace opts in; with the opt-in off, it is left alone.
func TestStuckPodRecreatedAfterFix(t *testing.T) {
	framework.ProvedOn(t, framework.Harness, "a stuck pod's status and its recreation do not depend on which node pulls")
	e := framework.Load(t)
	e.Deployed(t)
	e.CreateRegistry(t, framework.RegistryOptions{Name: "verify-stuck", Username: e.RegistryUsername, Password: "wrong-password"})
	on := e.Namespace(t, "stuck-on", map[string]string{"pullpass.io/inject": "enabled", "pullpass.io/recreate-stuck-pods": "enabled"})
	off := e.Namespace(t, "stuck-off", optIn)
	e.WaitVerified(t, "verify-stuck", "Unauthorized", 30*time.Second)
	e.WaitServed(t, on, "pullpass-verify-stuck")
	e.WaitServed(t, off, "pullpass-verify-stuck")
	stuck, names := map[string]types.UID{}, map[string]string{}
	for _, ns := range []string{on, off} {
		deploy(t, e, ns)
		stuck[ns], names[ns] = waitStuckPod(t, e, ns)
	}

	fixed := time.Now()
	e.SetSourcePassword(t, "verify-stuck", e.RegistryPassword)
	e.WaitVerified(t, "verify-stuck", "Verified", 30*time.Second)

	// Opted in: the stuck pod goes, with an event, and its replacement runs within a minute.
	waitFor(t, time.Minute, "a new pod running in "+on, func() bool {
		pods, err := e.Kube.CoreV1().Pods(on).List(framework.Context(t, time.Minute), metav1.ListOptions{LabelSelector: "app=stuck"})
		if err != nil {
			return false
		}
		for _, p := range pods.Items {
			if p.UID != stuck[on] && p.Status.Phase == corev1.PodRunning {
				return true
			}
		}
		return false
	})
	t.Logf("replacement running %s after the fix", time.Since(fixed).Round(100*time.Millisecond))
	if _, err := e.Kube.CoreV1().Pods(on).Get(framework.Context(t, time.Minute), names[on], metav1.GetOptions{}); err == nil {
		t.Fatal("the stuck pod is still there")
	}
	if n := recreatedEvents(t, e, on); n != 1 {
		t.Fatalf("%d PullpassRecreated events in %s, want 1", n, on)
	}
	// Not opted in: the stuck pod is the same pod (the kubelet's back-off brings it back in its time).
	if n := recreatedEvents(t, e, off); n != 0 {
		t.Fatalf("%d PullpassRecreated events in %s, want none", n, off)
	}
	pods, err := e.Kube.CoreV1().Pods(off).List(framework.Context(t, time.Minute), metav1.ListOptions{LabelSelector: "app=stuck"})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].UID != stuck[off] {
		t.Fatalf("the pod of %s was replaced (err %v, %d pods)", off, err, len(pods.Items))
	}
}

func deploy(t *testing.T, e *framework.Env, ns string) {
	t.Helper()
	one := int32(1)
	pod := e.Pod(ns, framework.PodOptions{})
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "stuck", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "stuck"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "stuck"}}, Spec: pod.Spec},
		},
	}
	if _, err := e.Kube.AppsV1().Deployments(ns).Create(framework.Context(t, time.Minute), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitStuckPod waits for the Deployment's pod to wait in ImagePullBackOff and returns its UID and name.
func waitStuckPod(t *testing.T, e *framework.Env, ns string) (uid types.UID, name string) {
	t.Helper()
	waitFor(t, 2*time.Minute, "a pod in ImagePullBackOff in "+ns, func() bool {
		pods, err := e.Kube.CoreV1().Pods(ns).List(framework.Context(t, time.Minute), metav1.ListOptions{LabelSelector: "app=stuck"})
		if err != nil || len(pods.Items) != 1 {
			return false
		}
		p := pods.Items[0]
		for _, c := range p.Status.ContainerStatuses {
			if w := c.State.Waiting; w != nil && w.Reason == "ImagePullBackOff" {
				uid, name = p.UID, p.Name
				return true
			}
		}
		return false
	})
	return uid, name
}

func recreatedEvents(t *testing.T, e *framework.Env, ns string) int {
	t.Helper()
	evs, err := e.Kube.CoreV1().Events(ns).List(framework.Context(t, time.Minute), metav1.ListOptions{FieldSelector: "reason=PullpassRecreated"})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs.Items)
}

// touchSource changes the source secret CreateRegistry made without changing its credentials.
func touchSource(t *testing.T, e *framework.Env, registry string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"pullpass.io/e2e-touched":%q}}}`, time.Now().Format(time.RFC3339Nano))
	if _, err := e.Kube.CoreV1().Secrets(framework.PullpassNamespace).Patch(framework.Context(t, time.Minute), "e2e-"+registry,
		types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func wantMetric(t *testing.T, e *framework.Env, ep framework.Endpoints, name string, labels map[string]string, want float64) {
	t.Helper()
	if got := e.ControllerMetric(t, ep, name, labels); got != want {
		t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func ptr[T any](v T) *T { return &v }
