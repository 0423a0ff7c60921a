package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// The controller's wiring against a real API server: replicas of it, as the chart runs them.
// client-go's elector renews optimistically, which only an API server that checks
// resourceVersions refuses.
var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

const ns = "pullpass"

// replica is one running controller process (Run).
type replica struct {
	metrics string
	stop    context.CancelFunc
	done    chan error
}

// startReplica runs a controller until the test ends, with leader election in seconds rather
// than the production 15 s, and waits for it to serve /readyz.
func startReplica(t *testing.T, env *testenv.Env, options ...func(*Options)) *replica {
	t.Helper()
	o := DefaultOptions()
	o.Kubeconfig = env.KubeconfigFile(t)
	o.Namespace = ns
	o.MetricsAddress = testenv.FreeAddress(t)
	o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 3*time.Second, 2*time.Second, 500*time.Millisecond
	o.WatchPulls = false
	for _, f := range options {
		f(o)
	}
	r := &replica{metrics: o.MetricsAddress, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- Run(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(cancel)
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := r.scrape()
		return err
	})
	return r
}

// scrape returns the replica's /metrics once it is ready.
func (r *replica) scrape() (string, error) {
	resp, err := http.Get("http://" + r.metrics + "/readyz")
	if err != nil {
		return "", err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("readyz %d", resp.StatusCode)
	}
	resp, err = http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// holder is the Lease's holder ("" when none).
func holder(t *testing.T, env *testenv.Env, name string) string {
	t.Helper()
	l, err := env.Kube.CoordinationV1().Leases(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// pullSecretIn makes registry's pull secret in namespace, as admission would.
func pullSecretIn(t *testing.T, env *testenv.Env, namespace string, reg *v1alpha1.Registry, password string) {
	t.Helper()
	s, err := pullsecret.Build(namespace, reg, userpass.Credentials{Username: "user", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Kube.CoreV1().Secrets(namespace).Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A replica whose Lease another holder takes returns ErrLeadershipLost from Run (its process
// exits and restarts): nothing of its term goes on beside the next leader's.
func TestLosingTheLeaseEndsRun(t *testing.T) {
	env := controlPlane.Env(t)
	env.EnsureNamespace(t, ns)
	const lease = "lose-it"
	r := startReplica(t, env, func(o *Options) { o.LeaseName = lease })
	testenv.Eventually(t, 20*time.Second, func() error {
		if holder(t, env, lease) == "" {
			return errors.New("no leader yet")
		}
		return nil
	})
	leases := env.Kube.CoordinationV1().Leases(ns)
	thief, hour := "someone-else", int32(3600)
	// The elector renews every half second: a conflict is only its write in between.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Get(t.Context(), lease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.NewMicroTime(time.Now())
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &thief, &hour, &now
		_, err = leases.Update(t.Context(), l, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		if !errors.Is(err, ErrLeadershipLost) {
			t.Fatalf("Run returned %v, want ErrLeadershipLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run still running 20 s after the Lease was taken")
	}
	if h := holder(t, env, lease); h != thief {
		t.Fatalf("the Lease is held by %q, want the other holder's", h)
	}
}

// Two replicas: one leads and keeps the pull secrets (a rotated source reaches them), the other
// stands by and keeps nothing (it serves no keeper series). Cancelling the leader hands the
// Lease over at once (released on cancel) and the other keeps them from then on.
func TestOnlyTheLeaderKeepsAndTheOtherTakesOver(t *testing.T) {
	env := controlPlane.Env(t)
	env.EnsureNamespace(t, ns)
	const host, lease = "takeover.example.com", "takeover"
	env.SourceSecret(t, ns, "takeover-src", host, "first")
	reg := env.CreateRegistry(t, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "takeover"},
		Spec: v1alpha1.RegistrySpec{Hosts: []string{host}, Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: "takeover-src"}}}})
	shop := env.OptedIn(t, nil)
	pullSecretIn(t, env, shop, reg, "stale")
	withLease := func(o *Options) { o.LeaseName = lease }
	a, b := startReplica(t, env, withLease), startReplica(t, env, withLease)
	rotatedTo := func(pw string) func() error {
		return func() error {
			if got := env.PullSecretPassword(t, shop, "takeover", host); got != pw {
				return fmt.Errorf("pull secret password %q, want %q", got, pw)
			}
			return nil
		}
	}
	testenv.Eventually(t, 30*time.Second, rotatedTo("first"))

	keeping := func(r *replica) bool {
		m, err := r.scrape()
		return err == nil && strings.Contains(m, `pullpass_credentials_ready{registry="takeover"}`)
	}
	leader, standby := a, b
	if !keeping(a) {
		leader, standby = b, a
	}
	if !keeping(leader) || keeping(standby) {
		t.Fatalf("keeper series on a: %v, on b: %v; want them on the leader only", keeping(a), keeping(b))
	}

	leader.stop()
	if err := <-leader.done; err != nil {
		t.Fatalf("the leader, cancelled: %v", err)
	}
	env.SourceSecret(t, ns, "takeover-src", host, "second")
	testenv.Eventually(t, 30*time.Second, rotatedTo("second"))
	if !keeping(standby) {
		t.Fatal("the new leader serves no keeper series")
	}
}

// A pod admitted ahead of its pull secret (the webhook's write late or lost with its replica)
// gets it from the controller as soon as the controller sees the pod, in a namespace the
// registry serves; a pod in a namespace it does not serve, naming the same Secret, gets nothing.
func TestPodAdmittedAheadOfItsPullSecretGetsItFromTheController(t *testing.T) {
	env := controlPlane.Env(t)
	env.EnsureNamespace(t, ns)
	const host = "ahead.example.com"
	env.SourceSecret(t, ns, "ahead-src", host, "pw")
	reg := env.CreateRegistry(t, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ahead"},
		Spec: v1alpha1.RegistrySpec{Hosts: []string{host}, Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: "ahead-src"}}}})
	shop := env.OptedIn(t, nil)
	const elsewhere = "ahead-not-served"
	env.EnsureNamespace(t, elsewhere)
	startReplica(t, env, func(o *Options) { o.LeaseName, o.WatchPulls = "ahead", true })

	pod := func(namespace string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "ahead-", Namespace: namespace}, Spec: corev1.PodSpec{
			Containers:       []corev1.Container{{Name: "app", Image: host + "/app:1"}},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "someone-elses"}, {Name: pullsecret.Name(reg.Name)}},
		}}
		if _, err := env.Kube.CoreV1().Pods(namespace).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod(elsewhere)
	pod(shop)
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := env.PullSecretPassword(t, shop, reg.Name, host); got != "pw" {
			return fmt.Errorf("pull secret password %q", got)
		}
		return nil
	})
	_, err := env.Kube.CoreV1().Secrets(elsewhere).Get(t.Context(), pullsecret.Name(reg.Name), metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("the pull secret in a namespace the registry does not serve: %v, want NotFound", err)
	}
}

// queueCounts reads, from a replica's metrics, each work queue's adds, finished items and depth.
// A queue whose finished items equal its adds and whose depth is 0 has done all it was given.
func (r *replica) queueCounts() (map[string][3]float64, error) {
	text, err := r.scrape()
	if err != nil {
		return nil, err
	}
	families, err := testenv.ParseMetrics(text)
	if err != nil {
		return nil, err
	}
	// Adds, finished items (a histogram counts its observations) and depth, by the queue's name.
	metrics := []string{"workqueue_adds_total", "workqueue_work_duration_seconds", "workqueue_depth"}
	counts := map[string][3]float64{}
	for _, metric := range metrics {
		for _, m := range families[metric].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "name" {
					counts[l.GetValue()] = [3]float64{}
				}
			}
		}
	}
	for name := range counts {
		var c [3]float64
		for i, metric := range metrics {
			c[i], _ = testenv.MetricValue(families, metric, map[string]string{"name": name})
		}
		counts[name] = c
	}
	return counts, nil
}

// drained returns how many items the replicas' work queues have finished, or an error while one
// of them has not finished all it was given.
func drained(replicas ...*replica) (finished float64, err error) {
	for _, r := range replicas {
		counts, err := r.queueCounts()
		if err != nil {
			return 0, err
		}
		for name, c := range counts {
			if c[0] != c[1] || c[2] != 0 {
				return 0, fmt.Errorf("queue %s: %v added, %v finished, %v waiting", name, c[0], c[1], c[2])
			}
			finished += c[1]
		}
	}
	return finished, nil
}

// barrier returns once the controller has dealt with everything that happened before it: the
// queues drained, then a touch of a pull secret (an annotation pullpass does not own) that the
// keeper's watch delivers after every earlier event of its stream, and the queues drained again
// past it. It stands in for the sleep a test would take to see that nothing more happens.
func barrier(t *testing.T, env *testenv.Env, namespace, secret string, replicas ...*replica) {
	t.Helper()
	var before float64
	testenv.Eventually(t, 30*time.Second, func() (err error) { before, err = drained(replicas...); return err })
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"test.pullpass.io/barrier":%q}}}`, time.Now().Format(time.RFC3339Nano))
	if _, err := env.Kube.CoreV1().Secrets(namespace).Patch(t.Context(), secret, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		finished, err := drained(replicas...)
		if err == nil && finished <= before {
			return errors.New("the touch is not dealt with yet")
		}
		return err
	})
}
