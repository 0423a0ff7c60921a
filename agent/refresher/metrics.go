package refresher

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of one registry's refresh.
const (
	ResultSuccess = "success"
	ResultStale   = "stale" // failed, the last good token still served
	ResultError   = "error"
)

// Metrics records what the refresher does.
type Metrics interface {
	Refresh(registry, result string)
	// Served records whether the node serves a registry's credentials and when they expire
	// (zero: never).
	Served(registry string, ok bool, expiresAt time.Time)
	Forget(registry string)
	Entries(n int)
	CacheWrite(err error)
}

// NopMetrics records nothing.
type NopMetrics struct{}

func (NopMetrics) Refresh(string, string)         {}
func (NopMetrics) Served(string, bool, time.Time) {}
func (NopMetrics) Forget(string)                  {}
func (NopMetrics) Entries(int)                    {}
func (NopMetrics) CacheWrite(error)               {}

var _ Metrics = NopMetrics{}

// PrometheusMetrics records on a Prometheus registry.
type PrometheusMetrics struct {
	refreshes   *prometheus.CounterVec
	expiry      *prometheus.GaugeVec
	served      *prometheus.GaugeVec
	entries     prometheus.Gauge
	writes      *prometheus.CounterVec
	lastWritten prometheus.Gauge
}

var _ Metrics = (*PrometheusMetrics)(nil)

// NewPrometheusMetrics registers the refresher's metrics on reg.
func NewPrometheusMetrics(reg prometheus.Registerer) (*PrometheusMetrics, error) {
	m := &PrometheusMetrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_agent_refreshes_total",
			Help: "Credential refreshes of Cluster-scope registries by the node agent, by result (success, stale: failed while the last good token is served, error).",
		}, []string{"registry", "result"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pullpass_agent_credentials_expiry_timestamp_seconds",
			Help: "When the credentials the node serves for a registry expire (Unix time); absent for credentials that do not expire.",
		}, []string{"registry"}),
		served: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pullpass_agent_registry_served",
			Help: "1 if the node cache holds credentials for the Cluster-scope registry, 0 if it has none to serve.",
		}, []string{"registry"}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pullpass_agent_cache_entries",
			Help: "Registries whose credentials the node cache holds.",
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_agent_cache_writes_total",
			Help: "Writes of the node credential cache, by result (success, error).",
		}, []string{"result"}),
		lastWritten: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pullpass_agent_cache_last_write_timestamp_seconds",
			Help: "When the node credential cache was last written (Unix time).",
		}),
	}
	for _, c := range []prometheus.Collector{m.refreshes, m.expiry, m.served, m.entries, m.writes, m.lastWritten} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.writes.WithLabelValues("success")
	m.writes.WithLabelValues("error")
	return m, nil
}

func (m *PrometheusMetrics) Refresh(registry, result string) {
	m.refreshes.WithLabelValues(registry, result).Inc()
}

func (m *PrometheusMetrics) Served(registry string, ok bool, at time.Time) {
	m.served.WithLabelValues(registry).Set(b2f(ok))
	if !ok || at.IsZero() {
		m.expiry.DeleteLabelValues(registry)
	} else {
		m.expiry.WithLabelValues(registry).Set(float64(at.Unix()))
	}
}

func (m *PrometheusMetrics) Forget(registry string) {
	m.expiry.DeleteLabelValues(registry)
	m.served.DeleteLabelValues(registry)
	m.refreshes.DeletePartialMatch(prometheus.Labels{"registry": registry})
}

func (m *PrometheusMetrics) Entries(n int) { m.entries.Set(float64(n)) }

func (m *PrometheusMetrics) CacheWrite(err error) {
	if err != nil {
		m.writes.WithLabelValues("error").Inc()
		return
	}
	m.writes.WithLabelValues("success").Inc()
	m.lastWritten.SetToCurrentTime()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
