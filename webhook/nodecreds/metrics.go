package nodecreds

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics records what the writer does.
type Metrics interface {
	// Write records a sync's write of the node Secrets (nil: they hold what the nodes need).
	Write(err error)
	// Entries records how many registries the node Secrets hold, over how many shards.
	Entries(registries, shards int)
}

// NopMetrics records nothing.
type NopMetrics struct{}

func (NopMetrics) Write(error)      {}
func (NopMetrics) Entries(int, int) {}

var _ Metrics = NopMetrics{}

// PrometheusMetrics records on a Prometheus registry.
type PrometheusMetrics struct {
	writes          *prometheus.CounterVec
	entries, shards prometheus.Gauge
}

var _ Metrics = (*PrometheusMetrics)(nil)

// NewPrometheusMetrics registers the writer's metrics on reg. Only the leader writes, so only its
// replica reports them.
func NewPrometheusMetrics(reg prometheus.Registerer) (*PrometheusMetrics, error) {
	m := &PrometheusMetrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_node_credentials_syncs_total",
			Help: "Syncs of the node credentials Secret the agents serve from, by result (success, error).",
		}, []string{"result"}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pullpass_node_credentials_registries",
			Help: "How many registries the node credentials Secret holds entries for.",
		}),
		shards: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pullpass_node_credentials_shards",
			Help: "How many Secrets the node credentials are spread over (one until they pass the shard budget).",
		}),
	}
	for _, c := range []prometheus.Collector{m.writes, m.entries, m.shards} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.writes.WithLabelValues("success")
	m.writes.WithLabelValues("error")
	return m, nil
}

func (m *PrometheusMetrics) Write(err error) {
	result := "success"
	if err != nil {
		result = "error"
	}
	m.writes.WithLabelValues(result).Inc()
}

func (m *PrometheusMetrics) Entries(registries, shards int) {
	m.entries.Set(float64(registries))
	m.shards.Set(float64(shards))
}
