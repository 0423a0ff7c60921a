package promcheck

import (
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	agentapp "github.com/pullpass/pullpass/agent/app"
	"github.com/pullpass/pullpass/e2e/framework"
	webhookapp "github.com/pullpass/pullpass/webhook/app"
	"github.com/pullpass/pullpass/webhook/controller"
	"github.com/pullpass/pullpass/webhook/inject"
)

var chart = filepath.Join("..", "..", "..", "charts", "pullpass", "files")

// describing records the names of every metric family registered on it, and their labels.
type describing struct {
	names  map[string]bool
	labels map[string][]string
}

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

func (d *describing) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := descName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
			if l := descLabels.FindStringSubmatch(desc.String()); l != nil && l[1] != "" {
				d.labels[m[1]] = strings.Split(l[1], ",")
			}
		}
	}
	return nil
}
func (d *describing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}
func (d *describing) Unregister(prometheus.Collector) bool { return true }

// exported returns every metric name pullpass's binaries serve: their own registrations, the
// webhook's kubewebhook handler, and the Go and process collectors.
func exported(t *testing.T) map[string]bool {
	return describeAll(t).names
}

func describeAll(t *testing.T) *describing {
	t.Helper()
	d := &describing{names: map[string]bool{}, labels: map[string][]string{}}
	if _, err := webhookapp.NewMetrics(d); err != nil {
		t.Fatal(err)
	}
	if _, err := controller.NewMetrics(d); err != nil {
		t.Fatal(err)
	}
	if _, err := webhookapp.NewHandlerFor(inject.Webhook{}, d, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := agentapp.RegisterMetrics(d, filepath.Join(t.TempDir(), "credentials.json"), func() bool { return false }); err != nil {
		t.Fatal(err)
	}
	d.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.names["up"] = true // Prometheus's own series of every target it scrapes
	// Histograms and summaries are served as these series.
	for n := range d.names {
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			d.names[n+s] = true
		}
	}
	if len(d.names) < 20 || !d.names["pullpass_image_pull_failures_total"] || !d.names["pullpass_agent_plugin_requests_total"] {
		t.Fatalf("too few metrics found, the collection is broken: %v", sorted(d.names))
	}
	return d
}

func sorted(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// metricsOf returns the metric names an expression selects.
func metricsOf(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.ParseExpr(expr)
	if err != nil {
		t.Fatalf("not PromQL: %v\n%s", err, expr)
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// What `promtool check rules` checks: the file parses as a rule file, every expression as PromQL,
// templates of labels and annotations expand; and every metric an alert uses is one pullpass serves.
func TestAlertRules(t *testing.T) {
	groups, errs := rulefmt.ParseFile(filepath.Join(chart, "alerts.yaml"), false, model.UTF8Validation)
	for _, err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	have := exported(t)
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts++
			for _, m := range metricsOf(t, r.Expr) {
				if !have[m] {
					t.Errorf("alert %s uses %s, which pullpass does not serve", r.Alert, m)
				}
			}
			if r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("alert %s needs a summary and a severity", r.Alert)
			}
		}
	}
	if alerts < 5 {
		t.Fatalf("%d alerts", alerts)
	}
}

// Grafana's variables, replaced by values a query can have, so the query parses as PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
	`"$namespace"`, `".*"`, `"$registry"`, `".*"`)

func TestDashboard(t *testing.T) {
	dash, err := framework.LoadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	have := exported(t)
	queries := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			if strings.Contains(grafanaVars.Replace(tg.Expr), "$") {
				t.Errorf("panel %q: unknown variable in %s", p.Title, tg.Expr)
			}
			for _, m := range metricsOf(t, grafanaVars.Replace(tg.Expr)) {
				if !have[m] {
					t.Errorf("panel %q uses %s, which pullpass does not serve", p.Title, m)
				}
			}
		}
	}
	// label_values(METRIC, LABEL), or of {__name__=~"METRIC|METRIC"}: every metric one pullpass serves.
	labelValues := regexp.MustCompile(`^label_values\(([a-z_:]+|\{__name__=~"[a-z_:|]+"\}), [a-z_]+\)$`)
	for _, v := range dash.Templating.List {
		q, ok := v.Query.(map[string]any)
		if !ok {
			continue
		}
		m := labelValues.FindStringSubmatch(q["query"].(string))
		if m == nil {
			t.Errorf("variable %s: query %v is not label_values of pullpass metrics", v.Name, q["query"])
			continue
		}
		for _, name := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(m[1], `{__name__=~"`), `"}`), "|") {
			if !have[name] {
				t.Errorf("variable %s: %s is not a metric pullpass serves", v.Name, name)
			}
		}
	}
	if queries < 10 {
		t.Fatalf("%d queries", queries)
	}
}
