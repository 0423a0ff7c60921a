package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kwhhttp "github.com/slok/kubewebhook/v2/pkg/http"
	kwhprometheus "github.com/slok/kubewebhook/v2/pkg/metrics/prometheus"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
	kwhmutating "github.com/slok/kubewebhook/v2/pkg/webhook/mutating"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/webhook/certs"
	"github.com/pullpass/pullpass/webhook/cluster"
	"github.com/pullpass/pullpass/webhook/inject"
)

// NewLogger builds the slog logger the options ask for.
func NewLogger(o *Options) *slog.Logger { return o.Log.Logger() }

type certSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	Ready() bool
	Run(ctx context.Context)
}

// Run runs the webhook until ctx ends, then shuts its servers down gracefully. It only admits:
// keeping pull secrets fresh, verifying registries and watching pulls are the controller's
// (webhook/controller), so every replica is alike and none watches Pods.
func Run(ctx context.Context, o *Options, log *slog.Logger) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("invalid options: %w", err)
	}
	clients, reg, err := cluster.Connect(&o.Options, "pullpass-webhook")
	if err != nil {
		return err
	}
	metrics, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	caches := cluster.NewCaches(clients.Kube, clients.Registries, &o.Options, log)
	mutator, err := inject.New(inject.Config{
		Namespaces:         &cluster.Namespaces{Lister: caches.Namespaces.Lister(), Client: clients.Kube},
		Registries:         caches.Table,
		Secrets:            caches.PullSecrets,
		ClusterWide:        o.ClusterWide,
		ExcludedNamespaces: o.Excluded(),
		Logger:             log.With("component", "inject"),
		Metrics:            metrics.Inject,
		EnsureTimeout:      o.EnsureTimeout,
	})
	if err != nil {
		return err
	}
	handler, err := NewHandler(mutator, reg, log.With("component", "admission"))
	if err != nil {
		return err
	}
	certSrc, err := newCertSource(o, clients.Kube, log.With("component", "certs"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go certSrc.Run(ctx)
	caches.Start(ctx)
	return serveUntilDone(ctx, o, handler, certSrc, caches, reg, log)
}

// newCertSource is the serving certificate: files kept by cert-manager, or self-managed in a
// Secret.
func newCertSource(o *Options, kube kubernetes.Interface, log *slog.Logger) (certSource, error) {
	if o.TLSCertFile != "" {
		f := &certs.Files{CertFile: o.TLSCertFile, KeyFile: o.TLSKeyFile, Logger: log}
		if err := f.Load(); err != nil {
			return nil, fmt.Errorf("loading --tls-cert-file: %w", err)
		}
		return f, nil
	}
	return certs.New(certs.Config{
		Client: kube, Namespace: o.Namespace, SecretName: o.TLSSecretName,
		DNSNames: o.DNSNames(), IPs: o.TLSIPAddresses, WebhookConfigName: o.WebhookConfigName,
		Logger: log,
	})
}

// serveUntilDone serves admissions and the ops endpoints until ctx ends or a server fails, then
// drains and shuts both down.
func serveUntilDone(ctx context.Context, o *Options, handler http.Handler, certSrc certSource, caches *cluster.Caches, reg *prometheus.Registry, log *slog.Logger) error {
	var draining atomic.Bool
	ready := func() error {
		switch {
		case draining.Load():
			return errors.New("shutting down")
		case !caches.Synced():
			return errors.New("informers not synced")
		case !certSrc.Ready():
			return errors.New("no serving certificate")
		}
		return nil
	}
	webhookSrv := cluster.NewServer(o.ListenAddress, handler, log)
	webhookSrv.TLSConfig = &tls.Config{GetCertificate: certSrc.GetCertificate, MinVersion: tls.VersionTLS12}
	opsSrv := cluster.NewServer(o.MetricsAddress, cluster.OpsHandler(reg, ready), log)

	errs := make(chan error, 2)
	go func() { errs <- cluster.Serve("webhook", func() error { return webhookSrv.ListenAndServeTLS("", "") }) }()
	go func() { errs <- cluster.Serve("metrics", opsSrv.ListenAndServe) }()
	log.Info("pullpass webhook started", "listen", o.ListenAddress, "metrics", o.MetricsAddress, "namespace", o.Namespace, "clusterWide", o.ClusterWide)
	if cache.WaitForCacheSync(ctx.Done(), caches.Synced) {
		log.Info("caches synced", "registries", caches.Table.String())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	// Not ready first, and still serving for a while: the endpoints and every kube-proxy catch
	// up before the server stops taking requests, so no admission in flight meets a closed port
	// and is admitted without its pull secrets (the chart's preStop sleep covers pod deletion).
	draining.Store(true)
	log.Info("shutting down", "drain", o.ShutdownDelay)
	if runErr == nil && o.ShutdownDelay > 0 {
		time.Sleep(o.ShutdownDelay)
	}
	sctx, scancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer scancel()
	_ = webhookSrv.Shutdown(sctx)
	_ = opsSrv.Shutdown(sctx)
	return runErr
}

// Metrics are the webhook's own metrics, registered together.
type Metrics struct {
	Inject *inject.PrometheusRecorder
}

// NewMetrics registers the webhook's metrics (besides kubewebhook's, registered by the handler)
// on reg. The controller's are controller.NewMetrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	var m Metrics
	var err error
	if m.Inject, err = inject.NewPrometheusRecorder(reg); err != nil {
		return nil, err
	}
	return &m, nil
}

// MaxReviewBytes bounds an AdmissionReview's body. The API server takes request bodies of at
// most 3 MiB (its MaxRequestBodyBytes), and a review carries the object and, on updates, the old
// object: twice that. It is kubewebhook's own figure (kwhhttp.MaxRequestBodyBytes), which its
// handler enforces with a 400; limitBody makes that a 413, counted and logged.
const MaxReviewBytes = kwhhttp.MaxRequestBodyBytes

// NewHandler serves AdmissionReviews with pullpass's webhook, measured with kubewebhook's
// recorder. log (nil: none) hears of refused requests.
func NewHandler(m *inject.Mutator, reg prometheus.Registerer, log *slog.Logger) (http.Handler, error) {
	return NewHandlerFor(inject.Webhook{Mutator: m}, reg, log)
}

// NewMutatorHandler serves any kubewebhook Mutator through kubewebhook's generic mutating
// webhook, served exactly as NewHandler serves pullpass's (the benchmark's baseline).
func NewMutatorHandler(m kwhmutating.Mutator, reg prometheus.Registerer) (http.Handler, error) {
	wh, err := kwhmutating.NewWebhook(kwhmutating.WebhookConfig{ID: "noop", Obj: &corev1.Pod{}, Mutator: m})
	if err != nil {
		return nil, err
	}
	return NewHandlerFor(wh, reg, nil)
}

// NewHandlerFor serves a kubewebhook Webhook on /mutate, measured, with bodies bounded by
// MaxReviewBytes. log (nil: none) hears of refused requests.
func NewHandlerFor(wh kwhwebhook.Webhook, reg prometheus.Registerer, log *slog.Logger) (http.Handler, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rec, err := kwhprometheus.NewRecorder(kwhprometheus.RecorderConfig{Registry: reg})
	if err != nil {
		return nil, err
	}
	h, err := kwhhttp.HandlerFor(kwhhttp.HandlerConfig{Webhook: kwhwebhook.NewMeasuredWebhook(inject.WithoutNamespace(rec), wh)})
	if err != nil {
		return nil, err
	}
	tooLarge := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pullpass_webhook_requests_too_large_total",
		Help: "Requests to the webhook refused with 413 because their body was larger than an AdmissionReview can be.",
	})
	if err := reg.Register(tooLarge); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/mutate", limitBody(h, MaxReviewBytes, tooLarge, log))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux, nil
}

// limitBody bounds a request's body to limit bytes: a larger one is refused with 413, counted
// and logged (never its content: it may hold anything). A declared length is refused before
// anything is read; otherwise h reads through the limit, and whatever h answers to a body found
// too large becomes the 413. One allocation a request: the review's hot path has a budget.
func limitBody(h http.Handler, limit int64, tooLarge prometheus.Counter, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := &limitedReview{ResponseWriter: w, body: r.Body, left: limit, limit: limit, counter: tooLarge, log: log, r: r}
		if r.ContentLength > limit {
			l.over = true
			l.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = l
		h.ServeHTTP(l, r)
	})
}

var errBodyTooLarge = errors.New("request body too large")

// limitedReview is both the limited body and the response writer that turns h's answer to a body
// found too large into the 413.
type limitedReview struct {
	http.ResponseWriter
	body        io.ReadCloser
	left, limit int64
	over        bool // the body holds more than limit
	refused     bool // the 413 is written: h's own answer is dropped
	counter     prometheus.Counter
	log         *slog.Logger
	r           *http.Request
}

func (l *limitedReview) Read(p []byte) (int, error) {
	if l.over {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1] // one byte past the limit tells a body of exactly limit bytes from more
	}
	n, err := l.body.Read(p)
	if l.left -= int64(n); l.left < 0 {
		l.over = true
		return n + int(l.left), errBodyTooLarge
	}
	return n, err
}

func (l *limitedReview) Close() error { return l.body.Close() }

func (l *limitedReview) WriteHeader(code int) {
	switch {
	case l.refused:
	case l.over:
		l.refused = true
		l.counter.Inc()
		l.log.Warn("request body too large, refused", "remote", l.r.RemoteAddr, "contentLength", l.r.ContentLength, "limit", l.limit)
		h := l.Header()
		h.Del("Content-Length")
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		l.ResponseWriter.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = fmt.Fprintf(l.ResponseWriter, "request body too large: an AdmissionReview is at most %d bytes\n", l.limit)
	default:
		l.ResponseWriter.WriteHeader(code)
	}
}

func (l *limitedReview) Write(b []byte) (int, error) {
	if l.over {
		l.WriteHeader(http.StatusRequestEntityTooLarge)
	}
	if l.refused {
		return len(b), nil
	}
	return l.ResponseWriter.Write(b)
}
