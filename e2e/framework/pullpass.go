package framework

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
)

// PullpassNamespace is where the deployed pullpass keeps registry source secrets.
const PullpassNamespace = "pullpass"

// Endpoints are what `make deploy` wrote: where the deployed pullpass serves its metrics, and the
// Prometheus that scrapes them.
type Endpoints struct {
	WebhookMetricsURL string
	AgentMetricsURL   string
	// PrometheusURL is a Prometheus that scrapes them as the chart's ServiceMonitor says and
	// evaluates the chart's alerts.
	PrometheusURL string
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
	var ep Endpoints
	for _, l := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), "=")
		switch k {
		case "WEBHOOK_METRICS_URL":
			ep.WebhookMetricsURL = v
		case "AGENT_METRICS_URL":
			ep.AgentMetricsURL = v
		case "PROMETHEUS_URL":
			ep.PrometheusURL = v
		}
	}
	return ep
}

// RegistryOptions shape a Registry made by a test.
type RegistryOptions struct {
	Name              string
	Hosts             []string // default: the test registry
	Scope             v1alpha1.Scope
	NamespaceSelector *metav1.LabelSelector
	Username          string // default: the test registry's
	Password          string
	// NoSource leaves the source secret out, for failure tests.
	NoSource bool
	// SourceHost is the source docker config's key (default: the test registry).
	SourceHost string
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
		o.SourceHost = e.Registry
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
			Hosts: o.Hosts, Scope: o.Scope, NamespaceSelector: o.NamespaceSelector,
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

// WaitServed waits until the webhook gives the secret to a pod of the namespace: the registry
// table of the webhook follows Registry objects through an informer, a moment behind.
func (e *Env) WaitServed(t testing.TB, namespace, secret string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := e.DryRunSecrets(t, namespace, e.Pod(namespace, PodOptions{}))
		for _, s := range got {
			if s == secret {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook did not start serving %s in %s within 30s (dry run gave %v)", secret, namespace, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
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
	return fmt.Sprintf("webhook metrics %s, agent metrics %s", ep.WebhookMetricsURL, ep.AgentMetricsURL)
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

// APIServerWrites returns how many create, update and patch requests the API server has served
// for a resource (all codes, no dry runs), from its own request counters.
func (e *Env) APIServerWrites(t testing.TB, resource string) float64 {
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
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		end := strings.Index(line, "}")
		lbls := map[string]string{}
		for _, kv := range strings.Split(line[len("apiserver_request_total{"):end], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				lbls[k] = strings.Trim(v, `"`)
			}
		}
		switch lbls["verb"] {
		case "POST", "PUT", "PATCH", "APPLY":
		default:
			continue
		}
		if lbls["resource"] != resource || lbls["subresource"] != "" || lbls["dry_run"] != "" {
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
