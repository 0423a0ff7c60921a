package refresher_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pullpass/pullpass/agent/refresher"
)

// The per-registry series say what they said as client_golang vectors: a counter per result
// seen, served once recorded, an expiry only for credentials that expire, nothing once
// forgotten.
func TestPrometheusMetricsSeries(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := refresher.NewPrometheusMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Unix(1_800_000_000, 0)
	m.Refresh("a", refresher.ResultSuccess)
	m.Refresh("a", refresher.ResultSuccess)
	m.Refresh("a", refresher.ResultStale)
	m.Served("a", true, exp)
	m.Refresh("b", refresher.ResultError)
	m.Served("b", false, exp) // not served: no expiry
	m.Refresh("c", refresher.ResultSuccess)
	m.Served("c", true, time.Time{}) // never expires: no expiry
	m.Refresh("gone", refresher.ResultSuccess)
	m.Served("gone", true, exp)
	m.Forget("gone")
	m.Served("a", true, exp.Add(time.Hour))
	want := `
# HELP pullpass_agent_credentials_expiry_timestamp_seconds When the credentials the node serves for a registry expire (Unix time); absent for credentials that do not expire.
# TYPE pullpass_agent_credentials_expiry_timestamp_seconds gauge
pullpass_agent_credentials_expiry_timestamp_seconds{registry="a"} 1.8000036e+09
# HELP pullpass_agent_refreshes_total Credential refreshes of Cluster-scope registries by the node agent, by result (success, stale: failed while the last good token is served, error).
# TYPE pullpass_agent_refreshes_total counter
pullpass_agent_refreshes_total{registry="a",result="stale"} 1
pullpass_agent_refreshes_total{registry="a",result="success"} 2
pullpass_agent_refreshes_total{registry="b",result="error"} 1
pullpass_agent_refreshes_total{registry="c",result="success"} 1
# HELP pullpass_agent_registry_served 1 if the node cache holds credentials for the Cluster-scope registry, 0 if it has none to serve.
# TYPE pullpass_agent_registry_served gauge
pullpass_agent_registry_served{registry="a"} 1
pullpass_agent_registry_served{registry="b"} 0
pullpass_agent_registry_served{registry="c"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "pullpass_agent_credentials_expiry_timestamp_seconds",
		"pullpass_agent_refreshes_total", "pullpass_agent_registry_served"); err != nil {
		t.Fatal(err)
	}
}

// Recording a registry already recorded allocates nothing: a sync records every registry.
func TestPrometheusMetricsRecordWithoutAllocating(t *testing.T) {
	m, err := refresher.NewPrometheusMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	m.Refresh("a", refresher.ResultSuccess)
	m.Served("a", true, exp)
	if n := testing.AllocsPerRun(100, func() {
		m.Refresh("a", refresher.ResultSuccess)
		m.Served("a", true, exp)
	}); n != 0 {
		t.Fatalf("%v allocations per registry recorded, want 0", n)
	}
}
