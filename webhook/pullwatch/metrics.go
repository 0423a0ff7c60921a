package pullwatch

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the watcher's metrics. Labels are bounded: registry is a Registry's name, a
// well-known host or "other"; reason is one of pullfailure.Reasons.
type Metrics struct {
	failures *prometheus.CounterVec
	failing  *prometheus.Desc
	source   *Watcher
}

// NewMetrics registers the watcher's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_image_pull_failures_total",
			Help: "Image pull failure episodes (one per failing container, however often the kubelet retries), by registry, namespace and reason (auth, not_found, rate_limited, tls, network, other).",
		}, []string{"registry", "namespace", "reason"}),
		failing: prometheus.NewDesc("pullpass_image_pulls_failing",
			"Containers failing to pull their image now, by registry, namespace and reason.",
			[]string{"registry", "namespace", "reason"}, nil),
	}
	if err := reg.Register(m.failures); err != nil {
		return nil, err
	}
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Describe implements prometheus.Collector for the gauge of failures under way.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.failing }

// Collect counts the episodes under way.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if m.source == nil {
		return
	}
	counts := map[[3]string]float64{}
	for _, e := range m.source.Failing() {
		counts[[3]string{e.Registry, e.Namespace, string(e.Reason)}]++
	}
	for l, n := range counts {
		ch <- prometheus.MustNewConstMetric(m.failing, prometheus.GaugeValue, n, l[0], l[1], l[2])
	}
}
