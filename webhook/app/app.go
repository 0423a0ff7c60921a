package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	kwhhttp "github.com/slok/kubewebhook/v2/pkg/http"
	kwhprometheus "github.com/slok/kubewebhook/v2/pkg/metrics/prometheus"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
	kwhmutating "github.com/slok/kubewebhook/v2/pkg/webhook/mutating"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/kubeconfig"
	"github.com/pullpass/pullpass/pkg/nodeaccess"
	"github.com/pullpass/pullpass/pkg/nodedelivery"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/registrywatch"
	"github.com/pullpass/pullpass/pkg/secrets"
	"github.com/pullpass/pullpass/pkg/slim"
	"github.com/pullpass/pullpass/webhook/certs"
	"github.com/pullpass/pullpass/webhook/inject"
	"github.com/pullpass/pullpass/webhook/keeper"
	"github.com/pullpass/pullpass/webhook/pullwatch"
	"github.com/pullpass/pullpass/webhook/state"
	"github.com/pullpass/pullpass/webhook/verify"
)

// NewLogger builds the slog logger the options ask for.
func NewLogger(o *Options) *slog.Logger { return o.Log.Logger() }

type certSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	Ready() bool
	Run(ctx context.Context)
}

// Run runs the webhook until ctx ends, then shuts its servers down gracefully.
func Run(ctx context.Context, o *Options, log *slog.Logger) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("invalid options: %w", err)
	}
	clients, err := kubeconfig.NewClients(o.Kubeconfig, "pullpass-webhook", o.KubeAPIQPS, o.KubeAPIBurst)
	if err != nil {
		return err
	}
	kube, regClient := clients.Kube, clients.Registries

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Informers: every namespace; pullpass's own secrets in every namespace; the secrets of the
	// namespaces sources may be in (pullpass's, and those allowed). Nothing else is watched,
	// and no other Secret is ever read. managedFields are dropped: at 10,000 namespaces they
	// are most of what the caches would hold.
	nsFactory := informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Minute, informers.WithTransform(slim.DropManagedFields))
	// Any tenant can label a Secret managed-by pullpass: of those, the cache keeps only what
	// pullpass reads (pullsecret.Slim).
	managedFactory := informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Minute, informers.WithTransform(pullsecret.Slim),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.LabelSelector = secrets.LabelManagedBy + "=" + secrets.ManagedByValue
		}))
	nsInformer := nsFactory.Core().V1().Namespaces()
	managedInformer := managedFactory.Core().V1().Secrets()
	factories := []informers.SharedInformerFactory{nsFactory, managedFactory}
	informersToSync := []cache.SharedIndexInformer{nsInformer.Informer(), managedInformer.Informer()}
	sourceListers := state.SourceListers{}
	var sourceInformers []cache.SharedIndexInformer
	for _, ns := range o.AllSourceNamespaces() {
		f := informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Minute, informers.WithNamespace(ns), informers.WithTransform(slim.DropManagedFields))
		inf := f.Core().V1().Secrets()
		sourceListers[ns] = inf.Lister()
		sourceInformers = append(sourceInformers, inf.Informer())
		factories = append(factories, f)
	}
	informersToSync = append(informersToSync, sourceInformers...)
	table := registrywatch.New(regClient, log.With("component", "registries"))

	metrics, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	excluded := append([]string{o.Namespace}, o.ExcludedNamespaces...)
	pullSecrets := &state.PullSecrets{
		Managed: managedInformer.Lister(), Sources: sourceListers, Client: kube, Log: log.With("component", "pullsecrets"),
		Resolver: &credentials.Resolver{NewECR: ecr.NewAPI, ECREndpoint: o.ECREndpoint},
	}
	var (
		verifier *verify.Verifier
		observer inject.Observer // nil unless verifying
	)
	if o.Verify {
		login, err := newLogin(o)
		if err != nil {
			return err
		}
		verifier, err = verify.New(verify.Config{
			Registries: table, Credentials: pullSecrets, Status: regClient, Login: login,
			Interval: o.VerifyInterval, Workers: o.VerifyWorkers, DockerHubHost: o.DockerHubHost,
			DockerHubAnonymous: o.DockerHubAnonymous, Metrics: metrics.Verify, Logger: log.With("component", "verifier"),
		})
		if err != nil {
			return err
		}
		observer = verifier.Seen()
		watchForVerifier(verifier, table, sourceInformers)
	}
	mutator, err := inject.New(inject.Config{
		Namespaces:         &state.Namespaces{Lister: nsInformer.Lister(), Client: kube},
		Registries:         table,
		Secrets:            pullSecrets,
		ClusterWide:        o.ClusterWide,
		ExcludedNamespaces: excluded,
		Logger:             log.With("component", "inject"),
		Metrics:            metrics.Inject,
		Observer:           observer,
		EnsureTimeout:      o.EnsureTimeout,
	})
	if err != nil {
		return err
	}
	handler, err := NewHandler(mutator, reg, log.With("component", "admission"))
	if err != nil {
		return err
	}
	policy := inject.Policy{ClusterWide: o.ClusterWide, Excluded: setOf(excluded)}
	keeperCfg := keeper.Config{
		Client: kube, RegistryAPI: regClient, Registries: table, Desired: pullSecrets,
		Managed: managedInformer.Lister(), Namespaces: nsInformer.Lister(),
		Policy: policy, Logger: log.With("component", "keeper"), Metrics: metrics.Keeper,
		PullThrough:  pullThroughStatus{table: table, namespaces: nsInformer.Lister(), policy: policy},
		NodeDelivery: nodedelivery.Mode(o.NodeDelivery),
	}
	var agents *agentCount
	if o.AgentDaemonSet != "" {
		a, f := watchAgents(kube, o.Namespace, o.AgentDaemonSet)
		agents, keeperCfg.Agents = &a, a
		factories = append(factories, f)
	}
	keep, err := keeper.New(keeperCfg)
	if err != nil {
		return err
	}
	if agents != nil {
		agents.tell(keep)
	}
	watchForKeeper(keep, table, sourceInformers, managedInformer.Informer(), nsInformer.Informer())

	var certSrc certSource
	if o.TLSCertFile != "" {
		f := &certs.Files{CertFile: o.TLSCertFile, KeyFile: o.TLSKeyFile, Logger: log.With("component", "certs")}
		if err := f.Load(); err != nil {
			return fmt.Errorf("loading --tls-cert-file: %w", err)
		}
		certSrc = f
	} else {
		m, err := certs.New(certs.Config{
			Client: kube, Namespace: o.Namespace, SecretName: o.TLSSecretName,
			DNSNames: o.DNSNames(), IPs: o.TLSIPAddresses, WebhookConfigName: o.WebhookConfigName,
			Logger: log.With("component", "certs"),
		})
		if err != nil {
			return err
		}
		certSrc = m
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go certSrc.Run(ctx)
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	go table.Run(ctx)

	synced := func() bool {
		if !table.HasSynced() {
			return false
		}
		for _, inf := range informersToSync {
			if !inf.HasSynced() {
				return false
			}
		}
		return true
	}
	var draining atomic.Bool
	ready := func() error {
		if draining.Load() {
			return errors.New("shutting down")
		}
		if !synced() {
			return errors.New("informers not synced")
		}
		if !certSrc.Ready() {
			return errors.New("no serving certificate")
		}
		return nil
	}

	webhookSrv := newServer(o.ListenAddress, handler, log)
	webhookSrv.TLSConfig = &tls.Config{GetCertificate: certSrc.GetCertificate, MinVersion: tls.VersionTLS12}
	opsMux := http.NewServeMux()
	opsMux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	opsMux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	opsMux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	opsSrv := newServer(o.MetricsAddress, opsMux, log)

	errs := make(chan error, 2)
	go func() { errs <- serve("webhook", func() error { return webhookSrv.ListenAndServeTLS("", "") }) }()
	go func() { errs <- serve("metrics", opsSrv.ListenAndServe) }()
	log.Info("pullpass webhook started", "listen", o.ListenAddress, "metrics", o.MetricsAddress, "namespace", o.Namespace, "clusterWide", o.ClusterWide)
	cache.WaitForCacheSync(ctx.Done(), synced)
	log.Info("caches synced", "registries", table.String())
	var watcher *pullwatch.Watcher
	if o.WatchPulls {
		cfg := pullwatch.Config{
			Client: kube, Registry: pullwatch.TableRegistry(table.Table, namespaceLabels(nsInformer.Lister())), Metrics: metrics.Pulls,
			Logger: log.With("component", "pullwatch"),
		}
		if verifier != nil {
			cfg.Observe = observeImage(verifier, table, registryReaches(policy, nsInformer.Lister()))
		}
		watcher, err = pullwatch.New(cfg)
		if err != nil {
			return err
		}
		if verifier != nil {
			stuck, stop, err := newStuckPods(kube, watcher, nsInformer.Lister(), o, metrics, log.With("component", "stuckpods"))
			if err != nil {
				return err
			}
			defer stop()
			verifier.SetRecovered(stuck.Recover)
			verifier.SetPodImages(watcher.Images, registryReaches(policy, nsInformer.Lister()))
		}
	}
	var roleKeeper *nodeaccess.RoleKeeper
	if o.AgentSourcesRole != "" {
		roleKeeper, err = nodeaccess.NewRoleKeeper(nodeaccess.RoleKeeperConfig{
			Client: kube, Namespace: o.Namespace, RoleName: o.AgentSourcesRole, Registries: table,
			Reserved: []string{o.TLSSecretName}, Logger: log.With("component", "agentaccess"),
		})
		if err != nil {
			return err
		}
		kick := func(any) { roleKeeper.Kick() }
		table.AddHandler(cache.ResourceEventHandlerFuncs{AddFunc: kick, UpdateFunc: func(_, n any) { kick(n) }, DeleteFunc: kick})
	}
	// The leader keeps pull secrets fresh, grants the node agents their sources and counts pull
	// failures: one replica at a time.
	go runLeader(ctx, kube, o.Namespace, "pullpass-keeper", log.With("component", "leader"), func(ctx context.Context, previousLeaderSeen time.Time) {
		// Each part's term ends before the next term can begin (runLeader waits for this).
		var terms sync.WaitGroup
		if watcher != nil {
			terms.Go(func() { watcher.Run(ctx, previousLeaderSeen) })
		}
		if roleKeeper != nil {
			terms.Go(func() { roleKeeper.Run(ctx, time.Minute) })
		}
		if verifier != nil {
			terms.Go(func() { verifier.Run(ctx) })
		}
		keep.Run(ctx)
		terms.Wait()
	})

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
	Keeper *keeper.PrometheusMetrics
	Pulls  *pullwatch.Metrics
	Verify *verify.PrometheusMetrics
	// Recreated counts stuck pods deleted for their controller to recreate.
	Recreated *prometheus.CounterVec
}

// NewMetrics registers the webhook's metrics (besides kubewebhook's, registered by the handler)
// on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	var m Metrics
	var err error
	if m.Inject, err = inject.NewPrometheusRecorder(reg); err != nil {
		return nil, err
	}
	if m.Keeper, err = keeper.NewPrometheusMetrics(reg); err != nil {
		return nil, err
	}
	if m.Pulls, err = pullwatch.NewMetrics(reg); err != nil {
		return nil, err
	}
	if m.Verify, err = verify.NewPrometheusMetrics(reg); err != nil {
		return nil, err
	}
	if m.Recreated, err = verify.NewDeletedCounter(reg); err != nil {
		return nil, err
	}
	return &m, nil
}

func serve(name string, f func() error) error {
	if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s server: %w", name, err)
	}
	return nil
}

// serverTimeouts bound every connection: any pod can reach the webhook's port, and a client that
// sends slowly, or never reads, must not hold a goroutine and its buffers for ever. The API
// server waits at most 30 s for a webhook (timeoutSeconds' maximum), so a request that takes
// longer is answered to no one. Tests shorten them.
var serverTimeouts = struct{ readHeader, read, write, idle time.Duration }{
	readHeader: 5 * time.Second, read: 15 * time.Second, write: 35 * time.Second, idle: 2 * time.Minute,
}

// newServer is an http.Server with serverTimeouts, logging its errors through log.
func newServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: serverTimeouts.readHeader,
		ReadTimeout:       serverTimeouts.read,
		WriteTimeout:      serverTimeouts.write,
		IdleTimeout:       serverTimeouts.idle,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
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

// namespaceLabels reads a namespace's labels from the informer's cache (nil when not cached).
func namespaceLabels(l corev1listers.NamespaceLister) func(string) map[string]string {
	return func(name string) map[string]string {
		if ns, err := l.Get(name); err == nil {
			return ns.Labels
		}
		return nil
	}
}
