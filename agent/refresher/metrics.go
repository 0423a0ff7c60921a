package refresher

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of one registry's refresh.
const (
	ResultSuccess = "success"
	ResultStale   = "stale" // failed, the last good token still served
	ResultError   = "error"
)

// Where a sync's registries came from (the registries label of pullpass_agent_syncs_total).
const (
	SyncListed     = "listed"      // the node Secret, read
	SyncLastListed = "last_listed" // the node Secret not readable: the registries it last listed
	SyncHeld       = "held"        // not readable since the agent started: the cache and grants held
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
	// Synced records a finished sync (after its writes) by where its registries came from.
	Synced(registries string)
}

// NopMetrics records nothing.
type NopMetrics struct{}

func (NopMetrics) Refresh(string, string)         {}
func (NopMetrics) Served(string, bool, time.Time) {}
func (NopMetrics) Forget(string)                  {}
func (NopMetrics) Entries(int)                    {}
func (NopMetrics) CacheWrite(error)               {}
func (NopMetrics) Synced(string)                  {}

var _ Metrics = NopMetrics{}

// PrometheusMetrics records on a Prometheus registry. The per-registry series (refreshes by
// result, served, expiry) are kept as plain numbers, one small record a registry, and made into
// samples at each scrape: a client_golang vector holds about 700 bytes a series (its label
// pairs, a created timestamp), 1.5 MiB of the agent's heap at 1,000 registries.
type PrometheusMetrics struct {
	perRegistry *registrySeries
	entries     prometheus.Gauge
	writes      *prometheus.CounterVec
	lastWritten prometheus.Gauge
	syncs       *prometheus.CounterVec
}

var _ Metrics = (*PrometheusMetrics)(nil)

// NewPrometheusMetrics registers the refresher's metrics on reg.
func NewPrometheusMetrics(reg prometheus.Registerer) (*PrometheusMetrics, error) {
	m := &PrometheusMetrics{
		perRegistry: &registrySeries{
			refreshes: prometheus.NewDesc("pullpass_agent_refreshes_total",
				"Credential refreshes of Cluster-scope registries by the node agent, by result (success, stale: failed while the last good token is served, error).",
				[]string{"registry", "result"}, nil),
			expiry: prometheus.NewDesc("pullpass_agent_credentials_expiry_timestamp_seconds",
				"When the credentials the node serves for a registry expire (Unix time); absent for credentials that do not expire.",
				[]string{"registry"}, nil),
			served: prometheus.NewDesc("pullpass_agent_registry_served",
				"1 if the node cache holds credentials for the Cluster-scope registry, 0 if it has none to serve.",
				[]string{"registry"}, nil),
			regs: map[string]*registryRecord{},
		},
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
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_agent_syncs_total",
			Help: "Finished syncs of the node cache, by where their registries came from: listed (the node Secret), last_listed (the node Secret not readable: the registries last listed, each kept at most an hour), held (not readable since the agent started: the cache held as it is).",
		}, []string{"registries"}),
	}
	for _, c := range []prometheus.Collector{m.perRegistry, m.entries, m.writes, m.lastWritten, m.syncs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.writes.WithLabelValues("success")
	m.writes.WithLabelValues("error")
	for _, from := range []string{SyncListed, SyncLastListed, SyncHeld} {
		m.syncs.WithLabelValues(from)
	}
	return m, nil
}

// registrySeries holds the per-registry series.
type registrySeries struct {
	refreshes, expiry, served *prometheus.Desc

	mu   sync.Mutex
	regs map[string]*registryRecord
}

// registryRecord is one registry's series: a refresh count per result seen, whether it is served
// (once recorded), and when its credentials expire (when they do).
type registryRecord struct {
	refreshes []resultCount
	served    float64
	hasServed bool
	expiry    int64
	hasExpiry bool
}

type resultCount struct {
	result string
	n      float64
}

// get returns a registry's record, made if it has none. The caller holds mu.
func (s *registrySeries) get(registry string) *registryRecord {
	r := s.regs[registry]
	if r == nil {
		r = &registryRecord{}
		s.regs[registry] = r
	}
	return r
}

func (s *registrySeries) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.refreshes
	ch <- s.expiry
	ch <- s.served
}

func (s *registrySeries) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, r := range s.regs {
		for _, c := range r.refreshes {
			ch <- prometheus.MustNewConstMetric(s.refreshes, prometheus.CounterValue, c.n, name, c.result)
		}
		if r.hasServed {
			ch <- prometheus.MustNewConstMetric(s.served, prometheus.GaugeValue, r.served, name)
		}
		if r.hasExpiry {
			ch <- prometheus.MustNewConstMetric(s.expiry, prometheus.GaugeValue, float64(r.expiry), name)
		}
	}
}

func (m *PrometheusMetrics) Refresh(registry, result string) {
	s := m.perRegistry
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.get(registry)
	for i := range r.refreshes {
		if r.refreshes[i].result == result {
			r.refreshes[i].n++
			return
		}
	}
	r.refreshes = append(r.refreshes, resultCount{result: result, n: 1})
}

func (m *PrometheusMetrics) Served(registry string, ok bool, at time.Time) {
	s := m.perRegistry
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.get(registry)
	r.served, r.hasServed = b2f(ok), true
	r.hasExpiry = ok && !at.IsZero()
	if r.hasExpiry {
		r.expiry = at.Unix()
	}
}

func (m *PrometheusMetrics) Forget(registry string) {
	s := m.perRegistry
	s.mu.Lock()
	delete(s.regs, registry)
	s.mu.Unlock()
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

func (m *PrometheusMetrics) Synced(registries string) { m.syncs.WithLabelValues(registries).Inc() }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
