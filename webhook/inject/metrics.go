package inject

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
)

// Recorder records what the mutator did.
type Recorder interface {
	Injected(registry string)
	Skipped(reason string)
	Error(kind string)
	// Rewritten counts an image routed through a pull-through cache (the cache's Registry).
	Rewritten(cache string)
	// RewriteSkipped counts an image of a cached upstream left as it is, and why.
	RewriteSkipped(reason string)
	// AdmittedAhead counts a pod admitted with the reference to a registry's pull secret that
	// was not written in time (written after admission).
	AdmittedAhead(registry string)
}

// NoopRecorder records nothing.
type NoopRecorder struct{}

var _ Recorder = NoopRecorder{}

func (NoopRecorder) Injected(string) {}
func (NoopRecorder) Skipped(string)  {}
func (NoopRecorder) Error(string)    {}

func (NoopRecorder) Rewritten(string)      {}
func (NoopRecorder) RewriteSkipped(string) {}
func (NoopRecorder) AdmittedAhead(string)  {}

// PrometheusRecorder counts on an injected registry. Label values are bounded: registry names
// (objects an admin creates), and the fixed reason and kind sets of this package.
type PrometheusRecorder struct {
	injections *prometheus.CounterVec
	skipped    *prometheus.CounterVec
	errors     *prometheus.CounterVec
	rewrites   *prometheus.CounterVec
	rwSkipped  *prometheus.CounterVec
	ahead      *prometheus.CounterVec
}

var _ Recorder = (*PrometheusRecorder)(nil)

// NewPrometheusRecorder registers the mutator's metrics on reg.
func NewPrometheusRecorder(reg prometheus.Registerer) (*PrometheusRecorder, error) {
	r := &PrometheusRecorder{
		injections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_webhook_injections_total",
			Help: "Pull secrets added to pods, by registry.",
		}, []string{"registry"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_webhook_pods_skipped_total",
			Help: "Pods admitted without a change, by reason.",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_webhook_errors_total",
			Help: "Pods admitted unchanged because of an internal error (the webhook failed open), by kind.",
		}, []string{"kind"}),
		rewrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_webhook_image_rewrites_total",
			Help: "Pod images routed through a pull-through cache, by cache (the Registry's name).",
		}, []string{"cache"}),
		rwSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_webhook_image_rewrites_skipped_total",
			Help: "Pod images of a cached upstream left as they are, by reason (conflict: two caches tie for the namespace; no_credentials: the cache's credentials do not reach the pod; too_long).",
		}, []string{"reason"}),
		ahead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullpass_webhook_pods_admitted_ahead_of_secret_total",
			Help: "Pods admitted with the reference to a pull secret that was not written in time (a slow or failing source or API server), by registry; the webhook writes it after admission.",
		}, []string{"registry"}),
	}
	for _, c := range []prometheus.Collector{r.injections, r.skipped, r.errors, r.rewrites, r.rwSkipped, r.ahead} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, k := range []string{ErrorNamespace, ErrorEnsureSecret, ErrorTableNotLoaded, ErrorPanic, ErrorDecode} {
		r.errors.WithLabelValues(k) // so alerts see a zero before the first error
	}
	for _, k := range []string{SkipPodOptOut, SkipNamespaceNotIn, SkipNamespaceExcl, SkipNoMatch} {
		r.skipped.WithLabelValues(k) // and the dashboard before the first skip
	}
	for _, k := range []string{RewriteSkipConflict, RewriteSkipNoCredentials, RewriteSkipTooLong} {
		r.rwSkipped.WithLabelValues(k)
	}
	return r, nil
}

func (r *PrometheusRecorder) Injected(registry string)      { r.injections.WithLabelValues(registry).Inc() }
func (r *PrometheusRecorder) Skipped(reason string)         { r.skipped.WithLabelValues(reason).Inc() }
func (r *PrometheusRecorder) Error(kind string)             { r.errors.WithLabelValues(kind).Inc() }
func (r *PrometheusRecorder) Rewritten(cache string)        { r.rewrites.WithLabelValues(cache).Inc() }
func (r *PrometheusRecorder) AdmittedAhead(registry string) { r.ahead.WithLabelValues(registry).Inc() }
func (r *PrometheusRecorder) RewriteSkipped(reason string) {
	r.rwSkipped.WithLabelValues(reason).Inc()
}

// WithoutNamespace records reviews without their namespace. kubewebhook's Prometheus recorder
// labels every review's duration with its namespace: at 10,000 namespaces that was 10,000
// histograms (150,000 series, a scrape of tens of megabytes) in the webhook's memory, for a
// figure nobody reads per namespace. The label stays, empty, so queries keep working.
func WithoutNamespace(r kwhwebhook.MetricsRecorder) kwhwebhook.MetricsRecorder {
	return withoutNamespace{r}
}

type withoutNamespace struct{ r kwhwebhook.MetricsRecorder }

func (w withoutNamespace) MeasureValidatingWebhookReviewOp(ctx context.Context, d kwhwebhook.MeasureValidatingOpData) {
	d.ResourceNamespace = ""
	w.r.MeasureValidatingWebhookReviewOp(ctx, d)
}

func (w withoutNamespace) MeasureMutatingWebhookReviewOp(ctx context.Context, d kwhwebhook.MeasureMutatingOpData) {
	d.ResourceNamespace = ""
	w.r.MeasureMutatingWebhookReviewOp(ctx, d)
}
