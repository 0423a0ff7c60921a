package promcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// The alerts' unit tests (alerts_test.yaml) pass under `promtool test rules`: each alert fires on
// the series it must, with its labels and annotations, and not on the others.
func TestAlertsUnderPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is needed (Debian: apt-get install prometheus; `make unit` installs it): %v", err)
	}
	out, err := exec.Command(promtool, "test", "rules", "alerts_test.yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

type ruleTests struct {
	RuleFiles          []string `json:"rule_files"`
	EvaluationInterval string   `json:"evaluation_interval"`
	Tests              []struct {
		Name        string `json:"name"`
		Interval    string `json:"interval"`
		InputSeries []struct {
			Series string `json:"series"`
			Values string `json:"values"`
		} `json:"input_series"`
		Evals []struct {
			EvalTime  string `json:"eval_time"`
			Alert     string `json:"alertname"`
			ExpAlerts []struct {
				Labels      map[string]string `json:"exp_labels"`
				Annotations map[string]string `json:"exp_annotations"`
			} `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// Every alert has a test where it fires, with every annotation checked, and one where it must
// not; and it links a runbook section that exists.
func TestEveryAlertTested(t *testing.T) {
	data, err := os.ReadFile("alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rt ruleTests
	if err := yaml.UnmarshalStrict(data, &rt); err != nil {
		t.Fatalf("alerts_test.yaml: %v", err)
	}
	if len(rt.RuleFiles) != 1 || filepath.Clean(rt.RuleFiles[0]) != filepath.Join(chart, "alerts.yaml") {
		t.Fatalf("alerts_test.yaml tests %v, not the chart's rule file", rt.RuleFiles)
	}
	fires, quiet := map[string]int{}, map[string]int{}
	for _, tc := range rt.Tests {
		for _, ev := range tc.Evals {
			if len(ev.ExpAlerts) == 0 {
				quiet[ev.Alert]++
			}
			for _, a := range ev.ExpAlerts {
				fires[ev.Alert]++
				for _, k := range []string{"summary", "description", "runbook_url"} {
					if a.Annotations[k] == "" {
						t.Errorf("%s: %q expects %s without annotation %s: every annotation is checked", tc.Name, ev.Alert, a.Labels, k)
					}
				}
			}
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "observability.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules(t) {
		if fires[r.Alert] == 0 || quiet[r.Alert] == 0 {
			t.Errorf("%s: %d tests where it fires, %d where it must not; both are needed", r.Alert, fires[r.Alert], quiet[r.Alert])
		}
		want := "https://github.com/pullpass/pullpass/blob/main/docs/observability.md#" + strings.ToLower(r.Alert)
		if r.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}
		if !regexp.MustCompile(`(?m)^### ` + r.Alert + `$`).Match(doc) {
			t.Errorf("%s: docs/observability.md has no runbook section \"### %s\"", r.Alert, r.Alert)
		}
	}
}

// Alerts keep the labels an on-call person needs: every aggregation keeps `namespace`, and
// `registry` when the series it aggregates have one.
func TestAlertsKeepNamespaceAndRegistry(t *testing.T) {
	labels := describeAll(t).labels
	for _, r := range rules(t) {
		e, err := parser.ParseExpr(r.Expr)
		if err != nil {
			t.Fatal(err)
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			agg, ok := n.(*parser.AggregateExpr)
			if !ok {
				return nil
			}
			if agg.Without || !slices.Contains(agg.Grouping, "namespace") {
				t.Errorf("%s: %s drops the namespace label", r.Alert, agg)
			}
			for _, m := range metricsOf(t, agg.Expr.String()) {
				if slices.Contains(labels[m], "registry") && !slices.Contains(agg.Grouping, "registry") {
					t.Errorf("%s: %s drops the registry label of %s", r.Alert, agg, m)
				}
			}
			return nil
		})
	}
}

func rules(t *testing.T) []rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(filepath.Join(chart, "alerts.yaml"), false, model.UTF8Validation)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var out []rulefmt.Rule
	for _, g := range groups.Groups {
		out = append(out, g.Rules...)
	}
	return out
}
