//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/ecr/ecrtest"
)

// pullpass's observability in a real Prometheus, configured by the Prometheus Operator's generator
// from the chart's ServiceMonitor and PrometheusRule (the harness values shorten `for` and windows):
// each failure raises its alert, the alert carries the labels and runbook an on-call person needs
// and resolves once the cause is gone, and then every query of the dashboard answers with data.
func TestObservabilityInPrometheus(t *testing.T) {
	framework.ProvedOn(t, framework.Harness, "Prometheus, its generator and the alerts see the same series from either cluster")
	e := framework.Load(t)
	ep := e.Deployed(t)
	prom := ep.Prometheus(t)
	start := time.Now()

	t.Run("scraped as the ServiceMonitor says, the chart's rules loaded", func(t *testing.T) {
		scrapedAsTheChartSays(t, prom)
	})
	t.Run("a wrong password", func(t *testing.T) {
		wrongPasswordAlerts(t, e, prom)
	})
	t.Run("an expiring ECR token and a failing refresh", func(t *testing.T) {
		ecrAlerts(t, e, prom)
	})
	t.Run("the webhook down", func(t *testing.T) {
		webhookDownAlert(t, e, prom)
	})
	t.Run("an image through a pull-through cache", func(t *testing.T) {
		pullThroughRewriteSeen(t, e, prom)
	})
	t.Run("a registry with a pull limit", func(t *testing.T) {
		if e.Var("TOKEN_REGISTRY") == "" {
			t.Skip("no registry with pull limits beside this cluster (the harness's token registry is one)")
		}
		pullLimitSeen(t, e, prom)
	})
	t.Run("every dashboard query answers", func(t *testing.T) {
		dashboardAnswers(t, e, prom, start)
	})
}

func scrapedAsTheChartSays(t *testing.T, prom *framework.Prometheus) {
	targets, err := prom.API.Targets(framework.Context(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]bool{}
	for _, tg := range targets.Active {
		job := string(tg.Labels["job"])
		if tg.ScrapePool != "serviceMonitor/pullpass/pullpass/0" {
			t.Errorf("target %v in scrape pool %s: not from the chart's ServiceMonitor", tg.Labels, tg.ScrapePool)
		}
		if tg.Health != promv1.HealthGood {
			t.Errorf("target %v: %s %s", tg.Labels, tg.Health, tg.LastError)
		}
		for _, l := range []model.LabelName{"namespace", "pod", "node", "service", "endpoint"} {
			if tg.Labels[l] == "" {
				t.Errorf("target %v has no %s label", tg.Labels, l)
			}
		}
		jobs[job] = true
	}
	if !jobs["pullpass-webhook"] || !jobs["pullpass-controller"] || !jobs["pullpass-agent"] || len(jobs) != 3 {
		t.Fatalf("scraped jobs %v, want pullpass-webhook, pullpass-controller and pullpass-agent", jobs)
	}

	// The rule groups are the chart's, with the harness's `for`.
	rules, err := prom.API.Rules(framework.Context(t, 30*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	loaded := map[string]float64{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if a, ok := r.(promv1.AlertingRule); ok {
				loaded[a.Name] = a.Duration
				if a.Health != promv1.RuleHealthGood {
					t.Errorf("alert %s: %s %s", a.Name, a.Health, a.LastError)
				}
			}
		}
	}
	for _, name := range chartAlerts(t) {
		if _, ok := loaded[name]; !ok {
			t.Errorf("alert %s of the chart is not loaded (loaded: %v)", name, loaded)
		}
	}
	if loaded["PullpassPullAuthFailing"] != 20 {
		t.Errorf("PullpassPullAuthFailing waits %vs, want the harness values' 20s", loaded["PullpassPullAuthFailing"])
	}
}

// chartAlerts names the alerts of the chart's rule file.
func chartAlerts(t *testing.T) []string {
	data, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "charts/pullpass/files/alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(data), "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(l), "- alert: "); ok {
			names = append(names, n)
		}
	}
	return names
}

// checkAlert checks what an on-call person reads: the labels and the runbook link.
func checkAlert(t *testing.T, prom *framework.Prometheus, name string, match map[string]string, labels ...string) {
	t.Helper()
	alerts := prom.Alerts(t, name, match)
	if len(alerts) == 0 {
		t.Fatalf("no alert %s%v", name, match)
	}
	a := alerts[0]
	for _, l := range append(labels, "severity") {
		if a.Labels[model.LabelName(l)] == "" {
			t.Errorf("%s has no %s label: %v", name, l, a.Labels)
		}
	}
	if want := "docs/observability.md#" + strings.ToLower(name); !strings.HasSuffix(string(a.Annotations["runbook_url"]), want) {
		t.Errorf("%s: runbook_url %q, want one ending in %s", name, a.Annotations["runbook_url"], want)
	}
	if a.Annotations["summary"] == "" || a.Annotations["description"] == "" || strings.Contains(string(a.Annotations["description"]), "<no value>") {
		t.Errorf("%s: annotations %v", name, a.Annotations)
	}
}

// A wrong password: the failures appear for the pods' namespace (not pullpass's), the pull-auth
// alerts go pending then fire; the right password resolves them.
func wrongPasswordAlerts(t *testing.T, e *framework.Env, prom *framework.Prometheus) {
	// The rising alert counts a counter first seen within its window from zero only if Prometheus
	// was scraping the controller a window ago (else it cannot tell new failures from old ones).
	waitFor(t, 2*time.Minute, "Prometheus scraping the controller for a window (1m)", func() bool {
		return len(prom.Query(t, `up{job="pullpass-controller"} offset 1m == 1`)) > 0
	})
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "prom-auth", Username: e.RegistryUsername, Password: "wrong-password"})
	ns := e.Namespace(t, "prom-auth", optIn)
	e.WaitServed(t, ns, "pullpass-"+reg.Name)
	var pods []string
	for range 3 {
		pods = append(pods, e.CreatePod(t, e.Pod(ns, framework.PodOptions{})).Name)
	}
	failures := `pullpass_image_pull_failures_total{reason="auth", registry="prom-auth", namespace="` + ns + `"}`
	waitFor(t, 2*time.Minute, "three failures in Prometheus", func() bool {
		v := prom.Query(t, failures)
		return len(v) == 1 && v[0].Value == 3
	})
	got := prom.Query(t, failures)[0].Metric
	if got["job"] != "pullpass-controller" || got["exported_namespace"] != "" {
		t.Fatalf("the failures series is %v: want job pullpass-controller and the pods' namespace kept", got)
	}

	// Three new failures at once (one counter at 3): rising fires at once, for the window (1m here).
	match := map[string]string{"namespace": ns, "registry": reg.Name}
	prom.WaitAlert(t, "PullpassPullAuthFailuresRising", match, "firing", 30*time.Second)
	checkAlert(t, prom, "PullpassPullAuthFailuresRising", match, "namespace", "registry")
	// The containers keep failing: pending, then firing after its `for` (20s here).
	states := prom.WaitAlert(t, "PullpassPullAuthFailing", match, "firing", 2*time.Minute)
	if !slices.Contains(states, "pending") {
		t.Errorf("PullpassPullAuthFailing went %q: never pending before firing", states)
	}
	checkAlert(t, prom, "PullpassPullAuthFailing", match, "namespace", "registry")

	// The right password: the keeper rewrites the pull secret, the kubelet's next retry pulls.
	e.SetSourcePassword(t, reg.Name, e.RegistryPassword)
	for _, p := range pods {
		e.WaitPod(t, ns, p, 4*time.Minute, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	}
	prom.WaitAlert(t, "PullpassPullAuthFailing", match, "", time.Minute)
	prom.WaitAlert(t, "PullpassPullAuthFailuresRising", match, "", 2*time.Minute)
}

// A Cluster-scope ECR registry (the controller's keeper and the node agent both fetch its tokens):
// a token that expires within the hour raises the expiring alerts; ECR refusing raises the refresh
// alerts, and once the last token expired, not-ready; ECR answering again with a token of three
// hours resolves them all.
func ecrAlerts(t *testing.T, e *framework.Env, prom *framework.Prometheus) {
	nodeServesNothingAfter(t, e)
	// Every token ECR hands out expires at the same moment, a minute from now.
	srv := startECR(t, ecrtest.Reply{Username: e.RegistryUsername, Password: e.RegistryPassword, ExpiresAt: time.Now().Add(time.Minute)})
	reg := createECRRegistry(t, e, "prom-ecr", v1alpha1.ScopeCluster)
	match := map[string]string{"registry": reg.Name}
	for _, a := range []string{"PullpassCredentialsExpiringSoon", "PullpassNodeCredentialsExpiringSoon"} {
		prom.WaitAlert(t, a, match, "firing", time.Minute)
		checkAlert(t, prom, a, match, "namespace", "registry")
	}

	// ECR refuses: refreshes fail (the last token stays in use), then it expires.
	srv.SetReplies(ecrtest.Reply{ErrorCode: "AccessDeniedException", Message: "not authorized to perform: ecr:GetAuthorizationToken"})
	for _, a := range []string{"PullpassCredentialRefreshFailing", "PullpassNodeRefreshFailing"} {
		prom.WaitAlert(t, a, match, "firing", 2*time.Minute)
		checkAlert(t, prom, a, match, "namespace", "registry")
	}
	if got := prom.Alerts(t, "PullpassCredentialRefreshFailing", match)[0].Labels["reason"]; got != "AccessDenied" {
		t.Errorf("PullpassCredentialRefreshFailing reason %q, want AccessDenied", got)
	}
	prom.WaitAlert(t, "PullpassCredentialsNotReady", match, "firing", 2*time.Minute)
	checkAlert(t, prom, "PullpassCredentialsNotReady", match, "namespace", "registry")

	// ECR answers again, with a token of three hours.
	srv.SetReplies(ecrtest.Reply{Username: e.RegistryUsername, Password: e.RegistryPassword, ExpiresAt: time.Now().Add(3 * time.Hour)})
	for _, a := range []string{"PullpassCredentialsNotReady", "PullpassCredentialsExpiringSoon", "PullpassNodeCredentialsExpiringSoon",
		"PullpassCredentialRefreshFailing", "PullpassNodeRefreshFailing"} {
		prom.WaitAlert(t, a, match, "", 5*time.Minute)
	}
	ready := prom.Query(t, `pullpass_credentials_ready{registry="prom-ecr"}`)
	if len(ready) != 1 || ready[0].Value != 1 {
		t.Fatalf("pullpass_credentials_ready of prom-ecr: %v, want 1", ready)
	}
}

// No webhook replica: PullpassWebhookDown fires; back, it resolves.
func webhookDownAlert(t *testing.T, e *framework.Env, prom *framework.Prometheus) {
	ctx := framework.Context(t, 10*time.Minute)
	deploys := e.Kube.AppsV1().Deployments(framework.PullpassNamespace)
	scale, err := deploys.GetScale(ctx, "pullpass-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replicas := scale.Spec.Replicas
	setReplicas := func(n int32) {
		s, err := deploys.GetScale(ctx, "pullpass-webhook", metav1.GetOptions{})
		if err == nil {
			s.Spec.Replicas = n
			_, err = deploys.UpdateScale(ctx, "pullpass-webhook", s, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatalf("scaling the webhook to %d: %v", n, err)
		}
	}
	back := func() {
		setReplicas(replicas)
		waitFor(t, 3*time.Minute, "the webhook back", func() bool {
			d, err := deploys.Get(ctx, "pullpass-webhook", metav1.GetOptions{})
			return err == nil && d.Status.ReadyReplicas == replicas && d.Status.Replicas == replicas
		})
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			back()
		}
	})
	setReplicas(0)
	prom.WaitAlert(t, "PullpassWebhookDown", nil, "firing", 2*time.Minute)
	if a := prom.Alerts(t, "PullpassWebhookDown", nil)[0]; a.Labels["severity"] != "critical" ||
		!strings.HasSuffix(string(a.Annotations["runbook_url"]), "#pullpasswebhookdown") {
		t.Errorf("PullpassWebhookDown: %v %v", a.Labels, a.Annotations)
	}
	back()
	restored = true
	prom.WaitAlert(t, "PullpassWebhookDown", nil, "", 2*time.Minute)
}

// A Docker Hub registry (verify.dockerHubHost sends its login and the limit HEAD to the harness's
// token registry) shows its pull limit in Prometheus: the dashboard's Docker Hub panel.
func pullLimitSeen(t *testing.T, e *framework.Env, prom *framework.Prometheus) {
	tr := e.TokenRegistry(t)
	ctx := framework.Context(t, time.Minute)
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "e2e-prom-hub", Namespace: framework.PullpassNamespace},
		Data: map[string][]byte{"username": []byte(tr.Username), "token": []byte(tr.Password)}}
	if _, err := e.Kube.CoreV1().Secrets(src.Namespace).Create(ctx, src, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Kube.CoreV1().Secrets(src.Namespace).Delete(context.Background(), src.Name, metav1.DeleteOptions{})
	})
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "prom-hub"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{"docker.io"},
		Auth:  v1alpha1.RegistryAuth{DockerHub: &v1alpha1.DockerHubSource{SecretRef: v1alpha1.SecretReference{Name: src.Name, Namespace: src.Namespace}}},
	}}
	if _, err := e.Registries.Create(ctx, reg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Registries.Delete(context.Background(), reg.Name, metav1.DeleteOptions{}) })
	e.WaitVerified(t, reg.Name, "Verified", 30*time.Second)
	for _, expr := range []string{`pullpass_registry_pulls_remaining{registry="prom-hub"}`, `pullpass_registry_pull_limit{registry="prom-hub"}`} {
		deadline := time.Now().Add(time.Minute)
		for v := prom.Query(t, expr); len(v) == 0; v = prom.Query(t, expr) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: nothing after a minute", expr)
			}
			time.Sleep(time.Second)
		}
	}
}

// An image rewritten to a pull-through cache is counted for that cache (the dashboard's
// pull-through panel).
func pullThroughRewriteSeen(t *testing.T, e *framework.Env, prom *framework.Prometheus) {
	prefix, sel := pullThroughCache(t, e)
	reg := e.CreateRegistry(t, framework.RegistryOptions{
		Name: "prom-pt-" + sel["pullpass.io/e2e-cache"], NamespaceSelector: &metav1.LabelSelector{MatchLabels: sel},
		PullThrough: &v1alpha1.PullThrough{Upstream: "docker.io", Prefix: prefix},
	})
	ns := labelled(t, e, "prom-pt", optIn, sel)
	waitRewritten(t, e, ns)
	expr := fmt.Sprintf(`sum(pullpass_webhook_image_rewrites_total{cache=%q})`, reg.Name)
	deadline := time.Now().Add(time.Minute)
	for v := prom.Query(t, expr); len(v) == 0 || v[0].Value < 1; v = prom.Query(t, expr) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v after a minute, want at least 1", expr, v)
		}
		time.Sleep(time.Second)
	}
	// The panel's rate() needs two samples of the series.
	expr = fmt.Sprintf(`rate(pullpass_webhook_image_rewrites_total{cache=%q}[1m])`, reg.Name)
	for v := prom.Query(t, expr); len(v) == 0; v = prom.Query(t, expr) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v after a minute, want at least 1", expr, v)
		}
		time.Sleep(time.Second)
	}
}

// dashboardAnswers evaluates every query of the dashboard as Grafana would over the time of the
// scenarios above ("All" for the variables): each answers, without error or warning, with data.
func dashboardAnswers(t *testing.T, e *framework.Env, prom *framework.Prometheus, start time.Time) {
	dash, err := framework.LoadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	// Grafana's $__rate_interval is at least four scrape intervals of its data source (15 s by
	// default): a minute.
	// $__range is the dashboard's time range: here, the scenarios'.
	vars := strings.NewReplacer("$__rate_interval", "1m", "$__range", fmt.Sprintf("%ds", int(time.Since(start).Seconds())+1),
		"$namespace", ".*", "$registry", ".*")
	// Docker Hub's pull limits come from the Docker Hub stand-in (verify.dockerHubHost), which
	// only the harness runs.
	noDockerHub := e.Var("TOKEN_REGISTRY") == ""
	// Evaluated up to now exactly (the steps are counted back from the end): a series that just
	// got its second sample, like the pull-through rewrite's, shows in the last step.
	end, step := time.Now(), 5*time.Second
	r := promv1.Range{Start: end.Add(-end.Sub(start).Truncate(step) - step), End: end, Step: step}
	ctx := framework.Context(t, 5*time.Minute)
	queries := 0
	answers := map[string]model.Matrix{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			expr := vars.Replace(tg.Expr)
			v, warnings, _, err := prom.API.QueryRange(ctx, expr, r)
			switch m, _ := v.(model.Matrix); {
			case err != nil || len(warnings) > 0:
				t.Errorf("panel %q, query %s: %v %v\n%s", p.Title, tg.RefID, err, warnings, expr)
			case len(m) == 0 && noDockerHub && strings.Contains(expr, "pullpass_registry_pull"):
				t.Logf("panel %q, query %s: no data, as this cluster has no Docker Hub stand-in", p.Title, tg.RefID)
			case len(m) == 0:
				t.Errorf("panel %q, query %s: no data\n%s", p.Title, tg.RefID, expr)
			default:
				answers[p.Title+"/"+tg.RefID] = m
			}
		}
	}
	if queries < 15 {
		t.Fatalf("%d dashboard queries", queries)
	}
	// A namespace's first failures show: the counter appears at 3, which increase() alone misses.
	if most := maxOf(answers["Pull auth failures by registry/A"], "registry", "prom-auth"); most < 1 {
		t.Errorf("Pull auth failures by registry shows %v for prom-auth, want the failures", most)
	}

	// The variables' values, as Grafana's label_values asks for them.
	for _, v := range dash.Templating.List {
		q, ok := v.Query.(map[string]any)
		if !ok {
			continue
		}
		sel, label, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(q["query"].(string), "label_values("), ")"), ", ")
		values, warnings, _, err := prom.API.LabelValues(ctx, label, []string{sel}, start, time.Now())
		if err != nil || len(warnings) > 0 {
			t.Errorf("variable %s: %v %v", v.Name, err, warnings)
			continue
		}
		want := map[string]string{"namespace": "prom-auth-", "registry": "prom-ecr"}[v.Name]
		if !slices.ContainsFunc(values, func(lv model.LabelValue) bool { return strings.HasPrefix(string(lv), want) }) {
			t.Errorf("variable %s offers %v: no %s...", v.Name, values, want)
		}
	}
}

func maxOf(m model.Matrix, label, value string) float64 {
	best := 0.0
	for _, s := range m {
		if string(s.Metric[model.LabelName(label)]) != value {
			continue
		}
		for _, p := range s.Values {
			best = max(best, float64(p.Value))
		}
	}
	return best
}

// The alerts' unit tests pass under the promtool of the Prometheus the harness runs (3.x) as
// they do under Debian's (make unit).
func TestAlertUnitTestsUnderHarnessPromtool(t *testing.T) {
	out, err := exec.Command(filepath.Join(framework.RepoRoot(), "e2e/cluster/prometheus.sh"), "bin").Output()
	if err != nil {
		t.Fatalf("prometheus.sh bin: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	cmd := exec.Command(filepath.Join(lines[len(lines)-1], "promtool"), "test", "rules", "alerts_test.yaml")
	cmd.Dir = filepath.Join(framework.RepoRoot(), "hack/tools/promcheck")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
