package verify

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullpass/pullpass/pkg/registrylogin"
)

// Metrics records what the verifier learns. Labels are bounded: registry is a Registry's name (or
// docker.io for the anonymous pull limit), reason one of AllReasons.
type Metrics interface {
	Verified(registry, reason string)
	Success(registry string, at time.Time)
	Requests(registry string, n int)
	PullLimit(registry string, l *registrylogin.PullLimit)
	InUse(registry string, used bool)
	Forget(registry string)
}

// AllReasons are the Verified condition's reasons.
var AllReasons = append(append([]string{}, registrylogin.Reasons...), NotVerifiable, NoCredentials)

// NopMetrics records nothing.
type NopMetrics struct{}

func (NopMetrics) Verified(string, string)                    {}
func (NopMetrics) Success(string, time.Time)                  {}
func (NopMetrics) Requests(string, int)                       {}
func (NopMetrics) PullLimit(string, *registrylogin.PullLimit) {}
func (NopMetrics) InUse(string, bool)                         {}
func (NopMetrics) Forget(string)                              {}

var _ Metrics = NopMetrics{}

// PrometheusMetrics records on a Prometheus registry (the leader's replica reports them).
type PrometheusMetrics struct {
	verified, state, lastSuccess, limit, remaining, window, inUse *prometheus.GaugeVec
	verifications, requests                                       *prometheus.CounterVec
}

var _ Metrics = (*PrometheusMetrics)(nil)

// NewPrometheusMetrics registers the verifier's metrics on reg.
func NewPrometheusMetrics(reg prometheus.Registerer) (*PrometheusMetrics, error) {
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	m := &PrometheusMetrics{
		verified: g("pullpass_registry_verified",
			"1 when the registry accepted a login with its current credentials, 0 when it refused or could not be reached; absent while it cannot be verified (NotVerifiable, NoCredentials).", "registry"),
		state: g("pullpass_registry_verification_state",
			"1 for the reason of the registry's Verified condition (Verified, Unauthorized, Forbidden, RateLimited, TLSError, Unreachable, RegistryError, NotVerifiable, NoCredentials), 0 for the others.", "registry", "reason"),
		lastSuccess: g("pullpass_registry_last_verified_timestamp_seconds",
			"When a login to the registry last succeeded (Unix time).", "registry"),
		limit: g("pullpass_registry_pull_limit",
			"Pulls the registry allows these credentials per window (its ratelimit-limit header; Docker Hub); absent when it states none.", "registry"),
		remaining: g("pullpass_registry_pulls_remaining",
			"Pulls left in the window (the ratelimit-remaining header; Docker Hub).", "registry"),
		window: g("pullpass_registry_pull_limit_window_seconds",
			"Length of the pull limit's window.", "registry"),
		inUse: g("pullpass_registry_in_use",
			"1 when pods use the registry: it has pull secrets in namespaces, is served to nodes (Cluster scope), or pods were seen pulling from it.", "registry"),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_registry_verifications_total",
			Help: "Logins to the registry, by outcome.",
		}, []string{"registry", "reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_registry_verification_requests_total",
			Help: "HTTP requests the verifier sent to the registry (and its token service).",
		}, []string{"registry"}),
	}
	for _, c := range []prometheus.Collector{m.verified, m.state, m.lastSuccess, m.limit, m.remaining, m.window, m.inUse, m.verifications, m.requests} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *PrometheusMetrics) Verified(registry, reason string) {
	for _, r := range AllReasons {
		v := 0.0
		if r == reason {
			v = 1
		}
		m.state.WithLabelValues(registry, r).Set(v)
	}
	switch reason {
	case NotVerifiable, NoCredentials:
		m.verified.DeleteLabelValues(registry)
		return
	case registrylogin.Verified:
		m.verified.WithLabelValues(registry).Set(1)
	default:
		m.verified.WithLabelValues(registry).Set(0)
	}
	m.verifications.WithLabelValues(registry, reason).Inc()
}

func (m *PrometheusMetrics) Success(registry string, at time.Time) {
	m.lastSuccess.WithLabelValues(registry).Set(float64(at.Unix()))
}

func (m *PrometheusMetrics) Requests(registry string, n int) {
	if n > 0 {
		m.requests.WithLabelValues(registry).Add(float64(n))
	}
}

func (m *PrometheusMetrics) PullLimit(registry string, l *registrylogin.PullLimit) {
	if l == nil {
		m.limit.DeleteLabelValues(registry)
		m.remaining.DeleteLabelValues(registry)
		m.window.DeleteLabelValues(registry)
		return
	}
	m.limit.WithLabelValues(registry).Set(float64(l.Limit))
	m.remaining.WithLabelValues(registry).Set(float64(l.Remaining))
	m.window.WithLabelValues(registry).Set(l.Window.Seconds())
}

func (m *PrometheusMetrics) InUse(registry string, used bool) {
	v := 0.0
	if used {
		v = 1
	}
	m.inUse.WithLabelValues(registry).Set(v)
}

func (m *PrometheusMetrics) Forget(registry string) {
	for _, v := range []*prometheus.GaugeVec{m.verified, m.lastSuccess, m.limit, m.remaining, m.window, m.inUse} {
		v.DeleteLabelValues(registry)
	}
	m.state.DeletePartialMatch(prometheus.Labels{"registry": registry})
	m.verifications.DeletePartialMatch(prometheus.Labels{"registry": registry})
	m.requests.DeletePartialMatch(prometheus.Labels{"registry": registry})
}
