package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/agent/install"
	"github.com/pullpass/pullpass/agent/legacy"
	"github.com/pullpass/pullpass/agent/refresher"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/kubeconfig"
	"github.com/pullpass/pullpass/pkg/nodecache"
	"github.com/pullpass/pullpass/pkg/registrywatch"
)

// NewLogger builds the slog logger the options ask for.
func NewLogger(o *Options) *slog.Logger { return o.Log.Logger() }

// Run runs the agent until ctx ends.
func Run(ctx context.Context, o *Options, log *slog.Logger) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("invalid options: %w", err)
	}
	if o.NodeName != "" {
		log = log.With("node", o.NodeName)
	}
	// The cache directory is the agent's only: 0700 even when a hostPath volume made it.
	if err := os.MkdirAll(filepath.Dir(o.CachePath), 0o700); err != nil {
		return fmt.Errorf("cache directory: %w", err)
	}
	if err := os.Chmod(filepath.Dir(o.CachePath), 0o700); err != nil {
		return fmt.Errorf("cache directory: %w", err)
	}
	clients, err := kubeconfig.NewClients(o.Kubeconfig, "pullpass-agent", 0, 0)
	if err != nil {
		return err
	}
	kube, regClient := clients.Kube, clients.Registries

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Informers: Registry objects, and the secrets of pullpass's namespace (the sources).
	registries := registrywatch.New(regClient, log.With("component", "registries"))
	sourceFactory := informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Minute, informers.WithNamespace(o.Namespace))
	sources := sourceFactory.Core().V1().Secrets()

	var sinks []refresher.Sink
	var installer *install.Installer
	switch o.Mode {
	case ModeProvider:
		installer, err = install.New(install.Config{
			PluginSource: o.PluginSource, BinDir: o.ProviderBinDir, ConfigPath: o.ProviderConfig,
			CachePath: o.CachePath, CacheDuration: o.PluginCacheTime, MatchImages: o.MatchImages,
			Logger: log.With("component", "install"),
		})
		if err != nil {
			return err
		}
		if err := installer.InstallPlugin(); err != nil {
			return err
		}
		sinks = append(sinks, installer)
	case ModeLegacy:
		w, err := legacy.New(legacy.Config{
			Path: o.KubeletDockerConfig, OwnedPath: filepath.Join(filepath.Dir(o.CachePath), "legacy-owned.json"),
			Logger: log.With("component", "legacy"),
		})
		if err != nil {
			return err
		}
		sinks = append(sinks, w)
	}

	var restartNeeded func() bool
	if installer != nil {
		restartNeeded = installer.RestartNeeded
	}
	metrics, err := RegisterMetrics(reg, o.CachePath, restartNeeded)
	if err != nil {
		return err
	}
	ref, err := refresher.New(refresher.Config{
		Registries: registries,
		Resolver: &credentials.Resolver{
			Secrets: &secretGetter{lister: sources.Lister(), namespace: o.Namespace},
			NewECR:  ecr.NewAPI, ECREndpoint: o.ECREndpoint,
		},
		CachePath: o.CachePath,
		Sinks:     sinks,
		Metrics:   metrics,
		Logger:    log.With("component", "refresher"),
	})
	if err != nil {
		return err
	}
	kick := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { ref.Kick() },
		UpdateFunc: func(_, _ any) { ref.Kick() },
		DeleteFunc: func(any) { ref.Kick() },
	}
	registries.AddHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kick.AddFunc,
		UpdateFunc: func(old, cur any) {
			if refresher.SpecChanged(old, cur) {
				ref.Kick()
			}
		},
		DeleteFunc: kick.DeleteFunc,
	})
	_, _ = sources.Informer().AddEventHandler(kick)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sourceFactory.Start(ctx.Done())
	go registries.Run(ctx)

	opsMux := http.NewServeMux()
	opsMux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	opsMux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	opsMux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ref.Synced() {
			http.Error(w, "the first sync has not finished", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	opsSrv := &http.Server{Addr: o.MetricsAddress, Handler: opsMux, ReadHeaderTimeout: 5 * time.Second}
	errs := make(chan error, 1)
	go func() {
		if err := opsSrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("metrics server: %w", err)
		}
	}()
	log.Info("pullpass agent started", "mode", o.Mode, "cache", o.CachePath, "metrics", o.MetricsAddress, "namespace", o.Namespace)

	if !cache.WaitForCacheSync(ctx.Done(), registries.HasSynced, sources.Informer().HasSynced) {
		return ctx.Err()
	}
	go ref.Run(ctx) // its first sync makes the agent ready

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	sctx, scancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer scancel()
	_ = opsSrv.Shutdown(sctx)
	if o.DaemonSetName != "" {
		if gone, why := uninstalling(kube, o.Namespace, o.DaemonSetName); gone {
			log.Info("pullpass is being uninstalled: removing its credentials and config from the node", "why", why)
			return errors.Join(runErr, Uninstall(o, log, true))
		}
	}
	log.Info("shutting down; the node keeps serving the cache as written")
	return runErr
}

// Uninstall removes what the agent put on the node: the plugin's config entry (and, unless
// keepPlugin, its binary: a running kubelet still executes it until restarted), pullpass's entries
// of the kubelet's docker config, and the cache with every credential in it.
func Uninstall(o *Options, log *slog.Logger, keepPlugin bool) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("invalid options: %w", err)
	}
	var errs []error
	if o.ProviderConfig != "" && o.ProviderBinDir != "" {
		in, err := install.New(install.Config{BinDir: o.ProviderBinDir, ConfigPath: o.ProviderConfig, CachePath: o.CachePath})
		if err == nil {
			if keepPlugin {
				err = in.RemoveEntry()
			} else {
				err = in.Remove()
			}
		}
		errs = append(errs, err)
	}
	owned := filepath.Join(filepath.Dir(o.CachePath), "legacy-owned.json")
	if _, err := os.Stat(owned); err == nil {
		w, err := legacy.New(legacy.Config{Path: o.KubeletDockerConfig, OwnedPath: owned})
		if err == nil {
			err = w.Remove(context.Background())
		}
		errs = append(errs, err)
	}
	for _, f := range []string{o.CachePath, nodecache.GenerationPath(o.CachePath),
		nodecache.RequestsPath(o.CachePath, nodecache.RequestHit), nodecache.RequestsPath(o.CachePath, nodecache.RequestMiss),
		nodecache.RequestsPath(o.CachePath, nodecache.RequestError)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	log.Info("pullpass removed from this node", "cacheDir", filepath.Dir(o.CachePath), "pluginKept", keepPlugin, "err", err)
	return err
}

// uninstalling reports whether the agent stops because pullpass is being uninstalled: its
// DaemonSet is gone or going, or (helm deletes the agent's RBAC and ServiceAccount in the same
// breath) the API server no longer lets it look.
func uninstalling(kube kubernetes.Interface, namespace, name string) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := kube.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, "the DaemonSet is gone"
	case apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err):
		return true, "the agent's access was revoked"
	case err != nil:
		return false, ""
	case ds.DeletionTimestamp != nil:
		return true, "the DaemonSet is being deleted"
	}
	return false, ""
}

// RegisterMetrics registers the agent's metrics on reg: the refresher's, and in provider mode
// (restartNeeded set) what the plugin recorded beside the cache, read at scrape.
func RegisterMetrics(reg prometheus.Registerer, cachePath string, restartNeeded func() bool) (*refresher.PrometheusMetrics, error) {
	m, err := refresher.NewPrometheusMetrics(reg)
	if err != nil || restartNeeded == nil {
		return m, err
	}
	requests := prometheus.NewDesc("pullpass_agent_plugin_requests_total",
		"Requests the kubelet made to the credential provider plugin on this node, by result (hit: credentials served, miss: no Cluster-scope registry matched, error).",
		[]string{"result"}, nil)
	if err := reg.Register(collectorFunc{desc: requests, collect: func(ch chan<- prometheus.Metric) {
		for _, r := range []string{nodecache.RequestHit, nodecache.RequestMiss, nodecache.RequestError} {
			ch <- prometheus.MustNewConstMetric(requests, prometheus.CounterValue, nodecache.CountRequests(cachePath, r), r)
		}
	}}); err != nil {
		return nil, err
	}
	return m, reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pullpass_agent_kubelet_restart_required",
		Help: "1 when the kubelet on this node runs an older credential provider config than the agent wrote: restart it to serve hosts new to the config (those with ports).",
	}, func() float64 {
		if restartNeeded() {
			return 1
		}
		return 0
	}))
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// secretGetter reads sources from the informer of pullpass's namespace only: that is all the
// agent may read (its RBAC), and a node agent making API calls per registry would not scale.
type secretGetter struct {
	lister    corelisters.SecretLister
	namespace string
}

func (g *secretGetter) Secret(_ context.Context, namespace, name string) (*corev1.Secret, error) {
	if namespace != g.namespace {
		return nil, fmt.Errorf("the node agent reads sources in namespace %s only; move %s/%s there for a Cluster-scope registry", g.namespace, namespace, name)
	}
	return g.lister.Secrets(namespace).Get(name)
}
