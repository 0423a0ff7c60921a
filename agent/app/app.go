package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/agent/install"
	"github.com/pullpass/pullpass/agent/issuer"
	"github.com/pullpass/pullpass/agent/kubeletrestart"
	"github.com/pullpass/pullpass/agent/legacy"
	"github.com/pullpass/pullpass/agent/nodetaint"
	"github.com/pullpass/pullpass/agent/provider/token"
	"github.com/pullpass/pullpass/agent/refresher"
	"github.com/pullpass/pullpass/agent/rolecreds"
	"github.com/pullpass/pullpass/agent/sources"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/kubeconfig"
	"github.com/pullpass/pullpass/pkg/nodeaccess"
	"github.com/pullpass/pullpass/pkg/nodecache"
	"github.com/pullpass/pullpass/pkg/nodegrant"
	"github.com/pullpass/pullpass/pkg/registrywatch"
	"github.com/pullpass/pullpass/pkg/satoken"
	"github.com/pullpass/pullpass/pkg/slim"
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
	clients, err := kubeconfig.NewClients(o.Kubeconfig, "pullpass-agent", o.KubeAPIQPS, o.KubeAPIBurst)
	if err != nil {
		return err
	}
	kube, regClient := clients.Kube, clients.Registries

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Informers: Registry objects, each source Secret the node serves from (by name: that is
	// all the agent may read), and the agent's own DaemonSet (is pullpass being uninstalled?).
	registries := registrywatch.New(regClient, log.With("component", "registries"))
	var ref *refresher.Refresher
	srcs, err := sources.New(sources.Config{
		Client: kube, Namespace: o.Namespace, Logger: log.With("component", "sources"),
		OnChange: func() { ref.Kick() },
	})
	if err != nil {
		return err
	}
	var daemonSet *selfWatch
	if o.DaemonSetName != "" {
		daemonSet = watchDaemonSet(kube, o.Namespace, o.DaemonSetName)
	}

	// Token mode: namespace labels (which namespaces a registry's selector selects) and the
	// issuer's keys (which tokens are the cluster's) reach the node.
	var nsInformer cache.SharedIndexInformer
	var namespaces refresher.Namespaces
	var keys *issuer.Keeper
	var tokens *install.Tokens
	if o.ServiceAccountTokens {
		// Every namespace, on every node: managedFields dropped, they are most of each object.
		nsInformer = informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Minute, informers.WithTransform(slim.DropManagedFields)).
			Core().V1().Namespaces().Informer()
		namespaces = namespaceList{nsInformer}
		keys, err = issuer.New(issuer.Config{API: restGetter{kube}, Path: satoken.KeysPath(o.CachePath), Node: o.NodeName, Logger: log.With("component", "issuer")})
		if err != nil {
			return err
		}
		tokens = &install.Tokens{Audience: o.TokenAudience, CacheDuration: o.TokenCacheTime}
	}

	var sinks []refresher.Sink
	var installer *install.Installer
	switch o.Mode {
	case ModeProvider:
		installer, err = install.New(install.Config{
			PluginSource: o.PluginSource, TokenPluginSource: o.TokenPluginSource, BinDir: o.ProviderBinDir, ConfigPath: o.ProviderConfig,
			CachePath: o.CachePath, CacheDuration: o.PluginCacheTime, MatchImages: o.MatchImages,
			Tokens: tokens, FaultUnvalidated: o.FaultUnvalidatedConfig, Logger: log.With("component", "install"),
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
	var restarter *kubeletrestart.Restarter
	if o.RestartKubelet && installer != nil {
		restarter, err = newRestarter(o, kube, installer, reg, log.With("component", "kubelet-restart"))
		if err != nil {
			return err
		}
	}
	var roles *rolecreds.Server
	if o.ServiceAccountTokens {
		// Service accounts' own ECR roles: the plugin brings the pod's token over the socket.
		roles, err = rolecreds.New(rolecreds.Config{CachePath: o.CachePath, Audience: o.TokenAudience,
			NewSTS: rolecreds.NewSTSClient(o.ECREndpoint), NewECR: ecr.NewAPI, Endpoint: o.ECREndpoint,
			Registerer: reg, Logger: log.With("component", "roles")})
		if err != nil {
			return err
		}
	}
	ref, err = refresher.New(refresher.Config{
		Registries: registries,
		Resolver: &credentials.Resolver{
			Secrets: srcs,
			NewECR:  ecr.NewAPI, ECREndpoint: o.ECREndpoint,
		},
		CachePath:  o.CachePath,
		Namespaces: namespaces,
		Sinks:      sinks,
		Metrics:    metrics,
		Logger:     log.With("component", "refresher"),
	})
	if err != nil {
		return err
	}
	// A registry changed: watch the sources the node now serves from, then sync.
	changed := func(any) {
		srcs.Set(nodeaccess.SourceSecrets(registries.List(), o.Namespace))
		ref.Kick()
	}
	registries.AddHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: changed,
		// Not on a status update: the keeper writes the status of every registry it resyncs.
		UpdateFunc: func(old, cur any) {
			if refresher.SpecChanged(old, cur) {
				changed(cur)
			}
		},
		DeleteFunc: changed,
	})
	if nsInformer != nil {
		// A namespace's labels decide which grants it is in: a change reaches the node at once.
		kick := func(any) { ref.Kick() }
		_, _ = nsInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: kick, UpdateFunc: func(o, n any) {
			on, nn := o.(*corev1.Namespace), n.(*corev1.Namespace)
			// Its labels changed, or it started terminating (not each update while it does).
			if !labels.Equals(on.Labels, nn.Labels) || (on.DeletionTimestamp == nil && nn.DeletionTimestamp != nil) {
				ref.Kick()
			}
		}, DeleteFunc: kick})
	}

	runCtx, stopRunning := context.WithCancel(ctx)
	defer stopRunning()
	srcs.Start(runCtx)
	go registries.Run(runCtx)
	if nsInformer != nil {
		go nsInformer.RunWithContext(runCtx)
		go keys.Run(runCtx)
	}
	if daemonSet != nil {
		go daemonSet.run(runCtx)
	}

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
	errs := make(chan error, 2)
	if roles != nil {
		go func() {
			if err := roles.Serve(runCtx); err != nil {
				errs <- err
			}
		}()
	}
	go func() {
		if err := opsSrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("metrics server: %w", err)
		}
	}()
	log.Info("pullpass agent started", "mode", o.Mode, "cache", o.CachePath, "metrics", o.MetricsAddress, "namespace", o.Namespace)

	synced := []cache.InformerSynced{registries.HasSynced}
	if nsInformer != nil {
		synced = append(synced, nsInformer.HasSynced)
	}
	if !cache.WaitForCacheSync(runCtx.Done(), synced...) {
		return ctx.Err()
	}
	srcs.Set(nodeaccess.SourceSecrets(registries.List(), o.Namespace))
	// Sources not readable within a few seconds keep their last good credentials in the cache
	// (the refresher never takes "not readable" for "gone"); the watches go on trying.
	syncCtx, syncDone := context.WithTimeout(runCtx, o.SourceSyncTimeout)
	if pending := srcs.WaitForSync(syncCtx); len(pending) > 0 {
		log.Warn("some source secrets are not readable yet; serving what the cache holds for them", "secrets", pending)
	}
	syncDone()
	refreshed := make(chan struct{})
	go func() { ref.Run(runCtx); close(refreshed) }() // its first sync makes the agent ready
	var nodeWork sync.WaitGroup
	if restarter != nil {
		nodeWork.Go(func() { restarter.Run(runCtx, 10*time.Second) })
	}
	if o.RemoveStartupTaint {
		taint, err := nodetaint.New(nodetaint.Config{Kube: kube, Node: o.NodeName, Logger: log.With("component", "startup-taint"),
			Serving: func() bool {
				return ref.Synced() && (installer == nil || installer.Serves()) && (restarter == nil || restarter.Settled())
			}})
		if err != nil {
			return err
		}
		nodeWork.Go(func() { taint.Run(runCtx, 5*time.Second) })
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	// Stop the refresher and wait for it: a sync under way must not write the cache back after
	// an uninstall removed it.
	stopRunning()
	<-refreshed
	nodeWork.Wait() // a restart under way ends (its hold released) before any uninstall
	sctx, scancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer scancel()
	_ = opsSrv.Shutdown(sctx)
	if daemonSet != nil {
		gone, why := daemonSet.uninstalling(sctx, kube)
		if gone {
			log.Info("pullpass is being uninstalled: removing its credentials and config from the node", "why", why)
			err := Uninstall(o, log, true)
			if restarter != nil && err == nil {
				err = restartAfterUninstall(o, restarter, installer, log)
			}
			return errors.Join(runErr, err)
		}
		if why != "" {
			log.Warn("could not tell whether pullpass is being uninstalled", "why", why)
		}
	}
	log.Info("shutting down; the node keeps serving the cache as written")
	return runErr
}

// newRestarter builds the kubelet restarter of the node: the host's systemd over D-Bus, the
// kubelet's healthz on the host network, the Lease in pullpass's namespace.
func newRestarter(o *Options, kube kubernetes.Interface, installer *install.Installer, reg prometheus.Registerer, log *slog.Logger) (*kubeletrestart.Restarter, error) {
	return kubeletrestart.New(kubeletrestart.Config{
		Provider: installer,
		Systemd:  kubeletrestart.SystemdBus{},
		Health:   kubeletrestart.KubeletHealth{URL: o.KubeletHealthzURL, Kube: kube, Node: o.NodeName},
		Lock: &kubeletrestart.LeaseLock{Kube: kube, Namespace: o.Namespace, Name: o.RestartLease, Identity: o.NodeName,
			Duration: o.RestartLeaseDuration},
		Busy:          kubeletrestart.StartingPods{Kube: kube, Node: o.NodeName},
		Recorder:      kubeletrestart.NodeEvents{Kube: kube, Node: o.NodeName, Logger: log},
		Unit:          o.KubeletUnit,
		HealthTimeout: o.KubeletHealthTimeout,
		BusyTimeout:   o.RestartWait,
		Registerer:    reg,
		Logger:        log,
	})
}

// restartAfterUninstall restarts the kubelet once pullpass's entry is out of its config, so it
// stops running the plugin, then takes the plugin binaries out too. The chart gives the agent
// the termination grace this needs; past it, the kubelet keeps running the (answerless) plugin
// until its next restart.
func restartAfterUninstall(o *Options, restarter *kubeletrestart.Restarter, installer *install.Installer, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.RestartLeaseDuration+o.RestartWait+o.KubeletHealthTimeout)
	defer cancel()
	if _, err := restarter.RestartAfterRemoval(ctx, installer.ValidateOnDisk); err != nil {
		log.Warn("the kubelet was not restarted after the uninstall: it runs pullpass's plugin, which answers no credentials, until its next restart", "err", err)
		return nil
	}
	log.Info("the kubelet restarted without pullpass's entry: removing the plugin binaries")
	return installer.Remove()
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
	for _, f := range []string{o.CachePath, nodegrant.Path(o.CachePath), satoken.KeysPath(o.CachePath), token.SocketPath(o.CachePath), nodecache.GenerationPath(o.CachePath), install.RejectedPath(o.CachePath),
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

// namespaceList lists the namespace informer's objects.
type namespaceList struct{ informer cache.SharedIndexInformer }

func (n namespaceList) List() []*corev1.Namespace {
	objs := n.informer.GetStore().List()
	out := make([]*corev1.Namespace, 0, len(objs))
	for _, o := range objs {
		if ns, ok := o.(*corev1.Namespace); ok {
			out = append(out, ns)
		}
	}
	return out
}

// restGetter reads API server paths with the agent's client.
type restGetter struct{ kube kubernetes.Interface }

func (g restGetter) Get(ctx context.Context, path string) ([]byte, error) {
	return g.kube.CoreV1().RESTClient().Get().AbsPath(path).DoRaw(ctx)
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
