package framework

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/pullsecret"
)

// PullpassNamespace is where the deployed pullpass keeps registry source secrets.
const PullpassNamespace = "pullpass"

// Endpoints are what `make deploy` wrote: where the deployed pullpass serves its metrics, and the
// Prometheus that scrapes them.
type Endpoints struct {
	WebhookMetricsURL string
	// ControllerMetricsURL is the controller's, on the host network (the harness); elsewhere
	// empty, and ControllerMetricURLs lists the pods'.
	ControllerMetricsURL string
	AgentMetricsURL      string
	// PrometheusURL is a Prometheus that scrapes them as the chart's ServiceMonitor says and
	// evaluates the chart's alerts.
	PrometheusURL string
	// Chart is the chart pullpass was installed from, as helm takes it: the checkout's
	// charts/pullpass, or a released OCI chart (CHART, CHART_VERSION), which helm reaches with
	// CHART_REGISTRY_CONFIG and trusts through CHART_CA.
	Chart []string
	// HelmEnv is what helm needs beside the environment to reach Chart.
	HelmEnv []string
}

// Deployed returns the endpoints of the deployed pullpass, failing the test when pullpass was
// not deployed: these tests prove the deployed system, they are never skipped.
func (e *Env) Deployed(t testing.TB) Endpoints {
	t.Helper()
	path := os.Getenv("E2E_ENDPOINTS_ENV")
	if path == "" {
		path = filepath.Join(RepoRoot(), "_output", "e2e", "endpoints.env")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pullpass is not deployed (%v): run `make deploy`, or set E2E_ENDPOINTS_ENV", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			e.logPullpass(t)
		}
	})
	ep := Endpoints{Chart: []string{filepath.Join(RepoRoot(), "charts", "pullpass")}}
	for _, l := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), "=")
		switch k {
		case "WEBHOOK_METRICS_URL":
			ep.WebhookMetricsURL = v
		case "CONTROLLER_METRICS_URL":
			ep.ControllerMetricsURL = v
		case "AGENT_METRICS_URL":
			ep.AgentMetricsURL = v
		case "PROMETHEUS_URL":
			ep.PrometheusURL = v
		case "CHART":
			ep.Chart[0] = v
		case "CHART_VERSION":
			ep.Chart = append(ep.Chart, "--version", v)
		case "CHART_REGISTRY_CONFIG":
			ep.HelmEnv = append(ep.HelmEnv, "HELM_REGISTRY_CONFIG="+v)
		case "CHART_CA":
			ep.HelmEnv = append(ep.HelmEnv, "SSL_CERT_FILE="+v)
		}
	}
	return ep
}

// RegistryOptions shape a Registry made by a test.
type RegistryOptions struct {
	Name              string
	Hosts             []string // default: the test registry
	Scope             v1alpha1.Scope
	Delivery          v1alpha1.Delivery
	ServiceAccounts   *v1alpha1.ServiceAccountSelector
	NamespaceSelector *metav1.LabelSelector
	Username          string // default: the test registry's
	Password          string
	// NoSource leaves the source secret out, for failure tests.
	NoSource bool
	// SourceHost is the source docker config's key (default: the first host; an entry is used
	// only for the hosts it names).
	SourceHost string
	// PullThrough makes the registry a pull-through cache.
	PullThrough *v1alpha1.PullThrough
}

// CreateRegistry makes a source secret in pullpass's namespace and a Registry pointing at it,
// both deleted when the test ends.
func (e *Env) CreateRegistry(t testing.TB, o RegistryOptions) *v1alpha1.Registry {
	t.Helper()
	ctx := Context(t, time.Minute)
	if len(o.Hosts) == 0 {
		o.Hosts = []string{e.Registry}
	}
	if o.Username == "" {
		o.Username, o.Password = e.RegistryUsername, e.RegistryPassword
	}
	if o.SourceHost == "" {
		o.SourceHost = o.Hosts[0]
	}
	source := "e2e-" + o.Name
	if !o.NoSource {
		data, err := dockerconfig.ForHost(o.SourceHost, o.Username, o.Password).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: source, Namespace: PullpassNamespace},
			Type:       corev1.SecretTypeDockerConfigJson,
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
		}
		if _, err := e.Kube.CoreV1().Secrets(PullpassNamespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating source secret: %v", err)
		}
		t.Cleanup(func() {
			_ = e.Kube.CoreV1().Secrets(PullpassNamespace).Delete(context.Background(), source, metav1.DeleteOptions{})
		})
	}
	r := &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name},
		Spec: v1alpha1.RegistrySpec{
			Hosts: o.Hosts, Scope: o.Scope, Delivery: o.Delivery, ServiceAccounts: o.ServiceAccounts, NamespaceSelector: o.NamespaceSelector, PullThrough: o.PullThrough,
			Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: source, Namespace: PullpassNamespace}},
		},
	}
	created, err := e.Registries.Create(ctx, r, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating registry %s: %v", o.Name, err)
	}
	t.Cleanup(func() { _ = e.Registries.Delete(context.Background(), o.Name, metav1.DeleteOptions{}) })
	return created
}

// DryRunSecrets creates a pod in a server-side dry run and returns the pull secrets it would
// get: what the webhook does now, without side effects.
func (e *Env) DryRunSecrets(t testing.TB, namespace string, p *corev1.Pod) []string {
	t.Helper()
	out, err := e.Kube.CoreV1().Pods(namespace).Create(Context(t, time.Minute), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("dry-run pod: %v", err)
	}
	var names []string
	for _, s := range out.Spec.ImagePullSecrets {
		names = append(names, s.Name)
	}
	return names
}

// WaitServed waits until the webhook gives the secret to a pod of the namespace (the registry
// table of the webhook follows Registry objects through an informer, a moment behind) and the
// registry's credentials can be had (its Ready condition): a pod gets the reference to its
// registry's pull secret even when the secret cannot be written yet.
func (e *Env) WaitServed(t testing.TB, namespace, secret string) {
	t.Helper()
	registry := strings.TrimPrefix(secret, pullsecret.Prefix)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := e.DryRunSecrets(t, namespace, e.Pod(namespace, PodOptions{}))
		if slices.Contains(got, secret) && e.registryReady(t, registry) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook did not start serving %s in %s within 30s (dry run gave %v; registry %s ready: %v)",
				secret, namespace, got, registry, e.registryReady(t, registry))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// registryReady reports whether a Registry's Ready condition is True.
func (e *Env) registryReady(t testing.TB, name string) bool {
	r, err := e.Registries.Get(Context(t, time.Minute), name, metav1.GetOptions{})
	return err == nil && meta.IsStatusConditionTrue(r.Status.Conditions, v1alpha1.ConditionReady)
}

// SecretGone reports whether a secret does not exist.
func (e *Env) SecretGone(t testing.TB, namespace, name string) bool {
	_, err := e.Kube.CoreV1().Secrets(namespace).Get(Context(t, time.Minute), name, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

// Metric scrapes url and returns the value of the sample with exactly these labels (0 when absent).
func Metric(t testing.TB, url, name string, labels map[string]string) float64 {
	t.Helper()
	if url == "" {
		t.Fatalf("no metrics URL for %s", name)
	}
	ctx := Context(t, 30*time.Second)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	return findSample(t, resp.Body, name, labels)
}

func findSample(t testing.TB, r io.Reader, name string, labels map[string]string) float64 {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var lbls string
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			lbls, rest = rest[1:end], rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue
		}
		if !labelsEqual(lbls, labels) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	return 0
}

func labelsEqual(s string, want map[string]string) bool {
	got := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			got[k] = strings.Trim(v, `"`)
		}
	}
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// String formats endpoints for messages.
func (ep Endpoints) String() string {
	return fmt.Sprintf("webhook metrics %s, controller metrics %s, agent metrics %s", ep.WebhookMetricsURL, ep.ControllerMetricsURL, ep.AgentMetricsURL)
}

// SetSourcePassword rotates the password in the source secret CreateRegistry made.
func (e *Env) SetSourcePassword(t testing.TB, registry, password string) {
	t.Helper()
	e.SetSourceCredentials(t, registry, e.Registry, e.RegistryUsername, password)
}

// SetSourceCredentials rewrites the source secret CreateRegistry made, keyed for host.
func (e *Env) SetSourceCredentials(t testing.TB, registry, host, username, password string) {
	t.Helper()
	ctx := Context(t, time.Minute)
	api := e.Kube.CoreV1().Secrets(PullpassNamespace)
	src, err := api.Get(ctx, "e2e-"+registry, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := dockerconfig.ForHost(host, username, password).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	src.Data[corev1.DockerConfigJsonKey] = data
	if _, err := api.Update(ctx, src, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// PullSecretPassword returns the password a pull secret holds for the test registry, or ""
// with the secret's UID when it cannot be read.
func (e *Env) PullSecretPassword(t testing.TB, namespace, name string) (password string, uid string) {
	t.Helper()
	s, err := e.Kube.CoreV1().Secrets(namespace).Get(Context(t, time.Minute), name, metav1.GetOptions{})
	if err != nil {
		return "", ""
	}
	cfg, err := dockerconfig.Parse(s.Data[corev1.DockerConfigJsonKey])
	if err != nil {
		return "", string(s.UID)
	}
	entry, _ := cfg.Lookup(e.Registry)
	return entry.Password, string(s.UID)
}

// SecretWriters describes who last wrote a secret, for a failed test's output: its resource
// version and each field manager with its operation and time (never the data).
func (e *Env) SecretWriters(t testing.TB, namespace, name string) string {
	t.Helper()
	s, err := e.Kube.CoreV1().Secrets(namespace).Get(Context(t, time.Minute), name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	out := fmt.Sprintf("%s/%s resourceVersion %s, created %s", namespace, name, s.ResourceVersion, s.CreationTimestamp.Format(time.TimeOnly))
	for _, m := range s.ManagedFields {
		at := ""
		if m.Time != nil {
			at = m.Time.Format(time.TimeOnly)
		}
		out += fmt.Sprintf("; %s %s at %s", m.Manager, m.Operation, at)
	}
	return out
}

// APIServerWrites returns how many create, update and patch requests the API server has served
// for a resource (all codes, no dry runs), from its own request counters.
func (e *Env) APIServerWrites(t testing.TB, resource string) float64 {
	t.Helper()
	return e.APIServerMetric(t, "apiserver_request_total", func(l map[string]string) bool {
		switch l["verb"] {
		case "POST", "PUT", "PATCH", "APPLY":
		default:
			return false
		}
		return l["resource"] == resource && l["subresource"] == "" && l["dry_run"] == ""
	})
}

// APIServerMetric sums the API server's samples of a metric whose labels match.
func (e *Env) APIServerMetric(t testing.TB, name string, match func(labels map[string]string) bool) float64 {
	t.Helper()
	body, err := e.Kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(Context(t, 30*time.Second))
	if err != nil {
		t.Fatalf("reading the API server's metrics: %v", err)
	}
	var total float64
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		end := strings.Index(line, "}")
		lbls := map[string]string{}
		for _, kv := range strings.Split(line[len(name)+1:end], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				lbls[k] = strings.Trim(v, `"`)
			}
		}
		if !match(lbls) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		total += v
	}
	return total
}

// WebhookMetric sums a sample over every webhook replica, as a Prometheus query over the pods
// would: each replica counts the admissions it served. With one replica on the host network (the
// harness) it reads WEBHOOK_METRICS_URL.
func (e *Env) WebhookMetric(t testing.TB, ep Endpoints, name string, labels map[string]string) float64 {
	t.Helper()
	if e.HostNetwork {
		return Metric(t, ep.WebhookMetricsURL, name, labels)
	}
	var sum float64
	for _, url := range e.podMetricsURLs(t, "app.kubernetes.io/component=webhook", "") {
		sum += Metric(t, url, name, labels)
	}
	return sum
}

// ControllerMetric sums a sample over every controller replica, as a Prometheus query over the
// pods would: the leader alone keeps, verifies and counts pull failures.
func (e *Env) ControllerMetric(t testing.TB, ep Endpoints, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, url := range e.ControllerMetricURLs(t, ep) {
		sum += Metric(t, url, name, labels)
	}
	return sum
}

// ControllerMetricURLs are the /metrics URLs of the ready controller replicas (CONTROLLER_METRICS_URL
// on the host network, where one replica runs).
func (e *Env) ControllerMetricURLs(t testing.TB, ep Endpoints) []string {
	t.Helper()
	if e.HostNetwork {
		return []string{ep.ControllerMetricsURL}
	}
	return e.podMetricsURLs(t, "app.kubernetes.io/component=controller", "")
}

// AgentMetricsURL is the metrics URL of the agent on the suite's node (NodeName): on a cluster
// of several nodes, the one whose cache and kubelet the tests watch.
func (e *Env) AgentMetricsURL(t testing.TB, ep Endpoints) string {
	t.Helper()
	if e.HostNetwork || e.NodeName == "" {
		return ep.AgentMetricsURL
	}
	return e.AgentMetricsURLOn(t, e.NodeName)
}

// AgentMetricsURLOn is the metrics URL of the ready agent on node, by its pod's address (on a
// cluster whose pod addresses the suite reaches).
func (e *Env) AgentMetricsURLOn(t testing.TB, node string) string {
	t.Helper()
	urls := e.podMetricsURLs(t, "app.kubernetes.io/component=agent", node)
	if len(urls) != 1 {
		t.Fatalf("%d agent pods ready on node %s, want 1", len(urls), node)
	}
	return urls[0]
}

// podMetricsURLs lists the /metrics URLs of pullpass's ready pods with a label (on one node,
// when given), by pod IP and the container port named "metrics".
func (e *Env) podMetricsURLs(t testing.TB, selector, node string) []string {
	t.Helper()
	opts := metav1.ListOptions{LabelSelector: selector}
	if node != "" {
		opts.FieldSelector = "spec.nodeName=" + node
	}
	pods, err := e.Kube.CoreV1().Pods(PullpassNamespace).List(Context(t, time.Minute), opts)
	if err != nil {
		t.Fatalf("listing pullpass pods: %v", err)
	}
	var urls []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" || !ready(&p) {
			continue
		}
		for _, c := range p.Spec.Containers {
			for _, port := range c.Ports {
				if port.Name == "metrics" {
					urls = append(urls, fmt.Sprintf("http://%s/metrics", net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port.ContainerPort)))))
				}
			}
		}
	}
	return urls
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// logPullpass puts the last lines pullpass's webhook and controller pods logged (debug lines left
// out) into a failed test's output: what the leader did is most of the story of a failure.
func (e *Env) logPullpass(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods, err := e.Kube.CoreV1().Pods(PullpassNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component in (webhook, controller)"})
	if err != nil {
		return
	}
	tail := int64(400)
	for _, p := range pods.Items {
		raw, err := e.Kube.CoreV1().Pods(PullpassNamespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
		if err != nil {
			continue
		}
		var keep []string
		for _, l := range strings.Split(string(raw), "\n") {
			if l != "" && !strings.Contains(l, "level=DEBUG") && !strings.Contains(l, `"level":"DEBUG"`) {
				keep = append(keep, l)
			}
		}
		if len(keep) > 40 {
			keep = keep[len(keep)-40:]
		}
		t.Logf("pod %s, last lines:\n%s", p.Name, strings.Join(keep, "\n"))
	}
}

// HelmUpgrade is `helm upgrade pullpass` of the chart pullpass was installed from, with the
// values it was installed with (--reuse-values) and args after them: a test changes a value the
// way an operator does, on whichever chart the cluster runs (the checkout's, or a release's).
func (e *Env) HelmUpgrade(t testing.TB, ep Endpoints, args ...string) *exec.Cmd {
	t.Helper()
	all := append([]string{"upgrade", "pullpass"}, ep.Chart...)
	all = append(all, "--kubeconfig", e.Kubeconfig, "--namespace", PullpassNamespace, "--reuse-values")
	cmd := exec.Command(Helm(t), append(all, args...)...)
	cmd.Env = append(os.Environ(), ep.HelmEnv...)
	return cmd
}

// Helm finds the pinned helm (hack/build-tools.sh builds it once), or one on PATH.
func Helm(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(RepoRoot(), "hack/build-tools.sh"), "helm").Output()
	if err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return filepath.Join(strings.TrimSpace(lines[len(lines)-1]), "helm")
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	t.Fatalf("no helm: %v", err)
	return ""
}
