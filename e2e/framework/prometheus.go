package framework

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Prometheus is the Prometheus that scrapes the deployed pullpass (PROMETHEUS_URL of endpoints.env).
type Prometheus struct {
	URL string
	API promv1.API
}

// Prometheus returns a client of the Prometheus make deploy started, failing the test when there
// is none: these tests prove pullpass's observability in a real Prometheus, they never skip.
func (ep Endpoints) Prometheus(t testing.TB) *Prometheus {
	t.Helper()
	if ep.PrometheusURL == "" {
		t.Fatal("no PROMETHEUS_URL in endpoints.env: run `make deploy` (it starts the harness Prometheus), or set it for your cluster")
	}
	c, err := api.NewClient(api.Config{Address: ep.PrometheusURL})
	if err != nil {
		t.Fatal(err)
	}
	return &Prometheus{URL: ep.PrometheusURL, API: promv1.NewAPI(c)}
}

// Query evaluates expr now and returns its samples, failing the test on an error or a warning.
func (p *Prometheus) Query(t testing.TB, expr string) model.Vector {
	t.Helper()
	v, warnings, _, err := p.API.Query(Context(t, 30*time.Second), expr, time.Now())
	if err != nil || len(warnings) > 0 {
		t.Fatalf("query %s: %v %v", expr, err, warnings)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		t.Fatalf("query %s: a %s, not a vector", expr, v.Type())
	}
	return vec
}

// Alert is one alert Prometheus holds, pending or firing.
type Alert struct {
	Name        string
	State       string // pending, firing
	Labels      model.LabelSet
	Annotations model.LabelSet
}

func (a Alert) String() string { return fmt.Sprintf("%s %s %v", a.Name, a.State, a.Labels) }

// Alerts returns the active alerts named name whose labels include match.
func (p *Prometheus) Alerts(t testing.TB, name string, match map[string]string) []Alert {
	t.Helper()
	res, err := p.API.Alerts(Context(t, 30*time.Second))
	if err != nil {
		t.Fatalf("reading the alerts: %v", err)
	}
	var out []Alert
	for _, a := range res.Alerts {
		if string(a.Labels[model.AlertNameLabel]) != name || !includes(a.Labels, match) {
			continue
		}
		out = append(out, Alert{Name: name, State: string(a.State), Labels: a.Labels, Annotations: a.Annotations})
	}
	return out
}

func includes(ls model.LabelSet, match map[string]string) bool {
	for k, v := range match {
		if string(ls[model.LabelName(k)]) != v {
			return false
		}
	}
	return true
}

// AlertState returns the state of the alert named name with these labels: pending, firing, or
// "" (inactive).
func (p *Prometheus) AlertState(t testing.TB, name string, match map[string]string) string {
	t.Helper()
	state := ""
	for _, a := range p.Alerts(t, name, match) {
		if a.State == "firing" || state == "" {
			state = a.State
		}
	}
	return state
}

// WaitAlert waits until the alert is in state (pending, firing, or "" for resolved) and returns
// the states it went through on the way, in order.
func (p *Prometheus) WaitAlert(t testing.TB, name string, match map[string]string, state string, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var seen []string
	for {
		got := p.AlertState(t, name, match)
		if len(seen) == 0 || seen[len(seen)-1] != got {
			seen = append(seen, got)
		}
		if got == state {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert %s%v not %q after %s (went through %q); active alerts:\n%s", name, match, state, timeout, seen, p.activeAlerts(t))
		}
		time.Sleep(time.Second)
	}
}

func (p *Prometheus) activeAlerts(t testing.TB) string {
	res, err := p.API.Alerts(Context(t, 30*time.Second))
	if err != nil {
		return err.Error()
	}
	var lines []string
	for _, a := range res.Alerts {
		lines = append(lines, fmt.Sprintf("  %s %v", a.State, a.Labels))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
