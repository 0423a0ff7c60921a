package keeper

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics records what the keeper learns of each registry's credentials.
type Metrics interface {
	// Credentials records a reconcile: whether usable credentials exist, when they expire
	// (zero: never), and why the source failed ("" when it did not).
	Credentials(registry string, usable bool, expiresAt time.Time, failure string)
	// Served records whether anything serves the registry (its Served condition).
	Served(registry string, served bool)
	Forget(registry string)
}

// NopMetrics records nothing.
type NopMetrics struct{}

func (NopMetrics) Credentials(string, bool, time.Time, string) {}
func (NopMetrics) Served(string, bool)                         {}
func (NopMetrics) Forget(string)                               {}

var _ Metrics = NopMetrics{}

// PrometheusMetrics records on a Prometheus registry.
type PrometheusMetrics struct {
	ready, expiry, served *prometheus.GaugeVec
	errors                *prometheus.CounterVec
}

var _ Metrics = (*PrometheusMetrics)(nil)

// NewPrometheusMetrics registers the keeper's metrics on reg. Only the leader reconciles, so only
// its replica reports them.
func NewPrometheusMetrics(reg prometheus.Registerer) (*PrometheusMetrics, error) {
	m := &PrometheusMetrics{
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pullpass_credentials_ready",
			Help: "1 when usable credentials can be had for the registry, else 0 (Ready is also False when nothing serves it: see pullpass_registry_served).",
		}, []string{"registry"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pullpass_credentials_expiry_timestamp_seconds",
			Help: "When the registry's current credentials expire (Unix time); absent for credentials that do not expire.",
		}, []string{"registry"}),
		served: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pullpass_registry_served",
			Help: "1 when something serves the registry (pull secrets, or node agents able to serve it: Served=True in its status), else 0.",
		}, []string{"registry"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_credentials_refresh_errors_total",
			Help: "Failed reads of a registry's credential source, by reason (AccessDenied, Throttled, CredentialsExpired, SourceSecretMissing, SourceUnavailable, ...).",
		}, []string{"registry", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.ready, m.expiry, m.served, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *PrometheusMetrics) Credentials(registry string, usable bool, expiresAt time.Time, failure string) {
	v := 0.0
	if usable {
		v = 1
	}
	m.ready.WithLabelValues(registry).Set(v)
	if usable && !expiresAt.IsZero() {
		m.expiry.WithLabelValues(registry).Set(float64(expiresAt.Unix()))
	} else {
		m.expiry.DeleteLabelValues(registry)
	}
	if failure != "" {
		m.errors.WithLabelValues(registry, failure).Inc()
	}
}

func (m *PrometheusMetrics) Served(registry string, served bool) {
	v := 0.0
	if served {
		v = 1
	}
	m.served.WithLabelValues(registry).Set(v)
}

func (m *PrometheusMetrics) Forget(registry string) {
	m.ready.DeleteLabelValues(registry)
	m.served.DeleteLabelValues(registry)
	m.expiry.DeleteLabelValues(registry)
	m.errors.DeletePartialMatch(prometheus.Labels{"registry": registry})
}
