package refresher_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pullpass/pullpass/agent/refresher"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
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

// Each finished sync is counted by where its registries came from: nothing listed since the
// agent started (the cache held), the node Secret, or the registries last listed from it while
// it cannot be read (as nodecreds.Reader.List answers).
func TestSyncsAreCountedByWhereTheirRegistriesCameFrom(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := refresher.NewPrometheusMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var listed []*v1alpha1.Registry
	var listErr error
	res := &resolver{creds: map[string]userpass.Credentials{"node": {Username: "u", Password: "p"}}, errs: map[string]error{}}
	r, err := refresher.New(refresher.Config{Registries: listFunc(func() ([]*v1alpha1.Registry, error) { return listed, listErr }),
		Resolver: res, CachePath: filepath.Join(t.TempDir(), "credentials.json"), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	notReadable := errors.New("node secret pullpass/pullpass-node-credentials is not readable yet")
	listErr = notReadable
	r.Sync(t.Context())
	listed, listErr = []*v1alpha1.Registry{registry("node", v1alpha1.ScopeCluster, "node.example.com")}, nil
	r.Sync(t.Context())
	listErr = notReadable
	r.Sync(t.Context())
	r.Sync(t.Context())
	want := `
# HELP pullpass_agent_syncs_total Finished syncs of the node cache, by where their registries came from: listed (the node Secret), last_listed (the node Secret not readable: the registries last listed, each kept at most an hour), held (not readable since the agent started: the cache held as it is).
# TYPE pullpass_agent_syncs_total counter
pullpass_agent_syncs_total{registries="held"} 1
pullpass_agent_syncs_total{registries="last_listed"} 2
pullpass_agent_syncs_total{registries="listed"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "pullpass_agent_syncs_total"); err != nil {
		t.Fatal(err)
	}
}
