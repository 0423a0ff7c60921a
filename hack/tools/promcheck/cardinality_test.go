package promcheck

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	agentapp "github.com/pullpass/pullpass/agent/app"
	"github.com/pullpass/pullpass/agent/refresher"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	webhookapp "github.com/pullpass/pullpass/webhook/app"
	"github.com/pullpass/pullpass/webhook/controller"
	"github.com/pullpass/pullpass/webhook/keeper"
)

// The worst case per registry of what the webhook, the controller and an agent serve, with 1,000 registries each
// given every label value pullpass can give it (every refresh result, every failure reason): far
// under 200 series per registry per target. Pull failures add series per (registry, namespace,
// reason) failing, which this does not bound; docs/benchmarks.md measures a real scrape.
func TestSeriesPerRegistryWorstCase(t *testing.T) {
	const registries, limit = 1000, 200
	expiry := time.Now().Add(time.Hour)
	reasons := []string{ecr.ReasonAccessDenied, ecr.ReasonThrottled, ecr.ReasonCredentialsExpired, ecr.ReasonNoCredentials,
		ecr.ReasonInvalidResponse, ecr.ReasonUnavailable, keeper.ReasonSourceSecretMissing, keeper.ReasonSourceUnavailable,
		keeper.ReasonSourceNamespaceNotAllowed}

	webhook := prometheus.NewRegistry()
	wm, err := webhookapp.NewMetrics(webhook)
	if err != nil {
		t.Fatal(err)
	}
	ctrl := prometheus.NewRegistry()
	cm, err := controller.NewMetrics(ctrl)
	if err != nil {
		t.Fatal(err)
	}
	agent := prometheus.NewRegistry()
	am, err := agentapp.RegisterMetrics(agent, filepath.Join(t.TempDir(), "credentials.json"), func() bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	for i := range registries {
		r := fmt.Sprintf("registry-%d", i)
		wm.Inject.Injected(r)
		for _, reason := range reasons {
			cm.Keeper.Credentials(r, true, expiry, reason)
		}
		cm.Keeper.Served(r, true)
		for _, result := range []string{refresher.ResultSuccess, refresher.ResultStale, refresher.ResultError} {
			am.Refresh(r, result)
		}
		am.Served(r, true, expiry)
	}
	for name, reg := range map[string]*prometheus.Registry{"webhook": webhook, "controller": ctrl, "agent": agent} {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		per := map[string]int{}
		total := 0
		for _, f := range families {
			for _, m := range f.GetMetric() {
				total++
				for _, l := range m.GetLabel() {
					if l.GetName() == "registry" {
						per[l.GetValue()]++
					}
				}
			}
		}
		most := 0
		for _, n := range per {
			most = max(most, n)
		}
		if len(per) != registries || most >= limit {
			t.Errorf("%s: %d registries labelled, up to %d series each (limit %d)", name, len(per), most, limit)
		}
		t.Logf("%s: %d series in all, at most %d per registry", name, total, most)
	}
}
