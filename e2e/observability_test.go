//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/e2e/framework"
)

// A registry with a wrong password: the one failing pod counts once in
// pullpass_image_pull_failures_total{reason="auth"} for its namespace within a minute of the first
// failed pull, and stays at one while the kubelet backs off and retries.
func TestPullAuthFailureCountedOncePerEpisode(t *testing.T) {
	framework.ProvedOn(t, framework.Harness, "the count is made from pod statuses, which every kubelet writes alike")
	e := framework.Load(t)
	ep := e.Deployed(t)
	// An earlier test may have restarted the controller: a count made by a leader on its way out
	// goes with its pod (docs/observability.md), and this test is about one leader's count.
	controllerSettled(t, e, 2*time.Minute)
	e.CreateRegistry(t, framework.RegistryOptions{Name: "obs-wrong", Username: e.RegistryUsername, Password: "wrong-password"})
	ns := e.Namespace(t, "obs", optIn)
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	labels := map[string]string{"registry": "obs-wrong", "namespace": ns, "reason": "auth"}
	// The kubelet's first failed pull: within seconds, or up to a minute on a busy node (seen on
	// kind: a new namespace's service account token mount waiting for the node's configmap cache).
	failedPulls := func(atLeast int32) bool {
		evs, err := e.Kube.CoreV1().Events(ns).List(framework.Context(t, time.Minute), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name + ",reason=Failed"})
		if err != nil {
			return false
		}
		for _, ev := range evs.Items {
			if strings.HasPrefix(ev.Message, "Failed to pull image") && ev.Count >= atLeast {
				return true
			}
		}
		return false
	}
	waitFor(t, 2*time.Minute, "a failed pull", func() bool { return failedPulls(1) })
	start := time.Now()
	var last float64
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pullpass_image_pull_failures_total%v was %v; the pod's pull events:", labels, last)
			evs, _ := e.Kube.CoreV1().Events(ns).List(framework.Context(t, time.Minute), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name})
			if evs != nil {
				for _, ev := range evs.Items {
					t.Logf("  %s %s x%d: %s", ev.LastTimestamp.Format(time.TimeOnly), ev.Reason, ev.Count, ev.Message)
				}
			}
		}
	})
	waitFor(t, time.Minute, "the auth failure counted", func() bool {
		last = e.ControllerMetric(t, ep, "pullpass_image_pull_failures_total", labels)
		return last == 1
	})
	t.Logf("counted %s after the first failed pull was seen", time.Since(start).Round(100*time.Millisecond))

	// The kubelet retries (back-off 10 s, then 20 s): wait for two more failed pulls.
	waitFor(t, 2*time.Minute, "three failed pulls", func() bool { return failedPulls(3) })
	if got := e.ControllerMetric(t, ep, "pullpass_image_pull_failures_total", labels); got != 1 {
		t.Fatalf("failures = %v after the kubelet retried, want 1 (one episode)", got)
	}
	if got := e.ControllerMetric(t, ep, "pullpass_image_pulls_failing", labels); got != 1 {
		t.Fatalf("failing now = %v, want 1", got)
	}
	if err := e.Kube.CoreV1().Pods(ns).Delete(framework.Context(t, time.Minute), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the episode gone with its pod", func() bool {
		return e.ControllerMetric(t, ep, "pullpass_image_pulls_failing", labels) == 0
	})
}

// What the deployed webhook, controller and agent serve passes promtool's metric lint (promlint, the same
// checks as `promtool check metrics`). Every controller replica is linted; only the leader serves
// pullpass's own series (a standby builds nothing until it leads).
func TestMetricsPassPromlint(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	targets := map[string]string{"webhook": ep.WebhookMetricsURL, "agent": ep.AgentMetricsURL}
	for i, url := range e.ControllerMetricURLs(t, ep) {
		targets[fmt.Sprintf("controller-%d", i)] = url
	}
	served := map[string]bool{}
	for name, url := range targets {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		binary, _, _ := strings.Cut(name, "-")
		served[binary] = served[binary] || strings.Contains(string(body), "pullpass_")
		problems, err := promlint.New(strings.NewReader(string(body))).Lint()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range problems {
			if strings.HasPrefix(p.Metric, "pullpass_") {
				t.Errorf("%s: %s: %s", name, p.Metric, p.Text)
			} else {
				t.Logf("%s (not pullpass's): %s: %s", name, p.Metric, p.Text)
			}
		}
	}
	for _, binary := range []string{"webhook", "controller", "agent"} {
		if !served[binary] {
			t.Errorf("the %s serves no pullpass metric", binary)
		}
	}
}
