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
	"github.com/pullpass/pullpass/agent/memrelease"
	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/agent/nodecreds"
	"github.com/pullpass/pullpass/agent/nodegrant"
	"github.com/pullpass/pullpass/agent/nodetaint"
	"github.com/pullpass/pullpass/agent/provider/token"
	"github.com/pullpass/pullpass/agent/refresher"
	"github.com/pullpass/pullpass/agent/rolecreds"
	"github.com/pullpass/pullpass/agent/satoken"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/kubeconfig"
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
	a := &nodeAgent{o: o, log: log, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, build := range []func() error{a.watch, a.tokenMode, a.sinks, a.nodeWork, a.refresher} {
		if err := build(); err != nil {
			return err
		}
	}
	return a.run(ctx)
}

// nodeAgent is one agent's parts, built in Run's order; those the options turn off are nil.
type nodeAgent struct {
	o   *Options
	log *slog.Logger
	reg *prometheus.Registry

	kube      kubernetes.Interface
	nodeCreds *nodecreds.Reader // the registries the node serves, with their credentials
	daemonSet *selfWatch        // the agent's own DaemonSet: is pullpass being uninstalled?

	// Token mode: namespace labels (which namespaces a registry's selector selects) and the
	// issuer's keys (which tokens are the cluster's) reach the node.
	nsInformer cache.SharedIndexInformer
	namespaces refresher.Namespaces
	keys       *issuer.Keeper
	tokens     *install.Tokens
	roles      *rolecreds.Server

	installer *install.Installer
	sinkList  []refresher.Sink
	metrics   *refresher.PrometheusMetrics
	restarter *kubeletrestart.Restarter
	ref       *refresher.Refresher
	memory    *memrelease.Releaser // gives the memory of a burst of syncs or scrapes back to the OS
}

// watch makes the informers: the node Secret the controller writes what nodes serve into (by
// name: the only Secret the agent may read; the agent watches no Registry), and the agent's own
// DaemonSet.
func (a *nodeAgent) watch() error {
	clients, err := kubeconfig.NewClients(a.o.Kubeconfig, "pullpass-agent", a.o.KubeAPIQPS, a.o.KubeAPIBurst)
	if err != nil {
		return err
	}
	a.kube = clients.Kube
	a.nodeCreds, err = nodecreds.New(nodecreds.Config{
		Client: a.kube, Namespace: a.o.Namespace, Logger: a.log.With("component", "nodecreds"),
		OnChange: func() { a.ref.Kick() },
	})
	if err != nil {
		return err
	}
	if a.o.DaemonSetName != "" {
		a.daemonSet = watchDaemonSet(a.kube, a.o.Namespace, a.o.DaemonSetName)
	}
	return nil
}

// tokenMode makes what serving Namespaced registries per service account needs.
func (a *nodeAgent) tokenMode() error {
	if !a.o.ServiceAccountTokens {
		return nil
	}
	o := a.o
	// Every namespace, on every node: only what pullpass reads of each (slim.Namespace).
	a.nsInformer = informers.NewSharedInformerFactoryWithOptions(a.kube, 10*time.Minute, informers.WithTransform(slim.Namespace)).
		Core().V1().Namespaces().Informer()
	a.namespaces = namespaceList{a.nsInformer}
	var err error
	a.keys, err = issuer.New(issuer.Config{API: restGetter{a.kube}, Path: satoken.KeysPath(o.CachePath), Node: o.NodeName, Logger: a.log.With("component", "issuer")})
	if err != nil {
		return err
	}
	a.tokens = &install.Tokens{Audience: o.TokenAudience, CacheDuration: o.TokenCacheTime}
	// Service accounts' own ECR roles: the plugin brings the pod's token over the socket.
	a.roles, err = rolecreds.New(rolecreds.Config{CachePath: o.CachePath, Audience: o.TokenAudience,
		NewSTS: rolecreds.NewSTSClient(o.ECREndpoint), NewECR: ecr.NewAPI, Endpoint: o.ECREndpoint,
		Registerer: a.reg, Logger: a.log.With("component", "roles")})
	return err
}

// sinks makes where the node cache goes: the plugin and its provider config, or the kubelet's
// own docker config (legacy).
func (a *nodeAgent) sinks() error {
	o := a.o
	switch o.Mode {
	case ModeProvider:
		var err error
		a.installer, err = install.New(install.Config{
			PluginSource: o.PluginSource, TokenPluginSource: o.TokenPluginSource, BinDir: o.ProviderBinDir, ConfigPath: o.ProviderConfig,
			CachePath: o.CachePath, CacheDuration: o.PluginCacheTime, MatchImages: o.MatchImages,
			Tokens: a.tokens, FaultUnvalidated: o.FaultUnvalidatedConfig, Logger: a.log.With("component", "install"),
		})
		if err != nil {
			return err
		}
		if err := a.installer.InstallPlugin(); err != nil {
			return err
		}
		a.sinkList = append(a.sinkList, a.installer)
	case ModeLegacy:
		w, err := legacy.New(legacy.Config{
			Path: o.KubeletDockerConfig, OwnedPath: filepath.Join(filepath.Dir(o.CachePath), "legacy-owned.json"),
			Logger: a.log.With("component", "legacy"),
		})
		if err != nil {
			return err
		}
		a.sinkList = append(a.sinkList, w)
	}
	return nil
}

// nodeWork makes the metrics and, when asked, the kubelet restarter.
func (a *nodeAgent) nodeWork() error {
	var restartNeeded func() bool
	if a.installer != nil {
		restartNeeded = a.installer.RestartNeeded
	}
	var err error
	if a.metrics, err = RegisterMetrics(a.reg, a.o.CachePath, restartNeeded); err != nil {
		return err
	}
	if a.o.RestartKubelet && a.installer != nil {
		// Judged after the first sync only, which writes the config (the refresher is made next).
		written := func() bool { return a.ref != nil && a.ref.Synced() }
		a.restarter, err = newRestarter(a.o, a.kube, a.installer, written, a.reg, a.log.With("component", "kubelet-restart"))
	}
	return err
}

// refresher makes the refresher and what wakes it.
func (a *nodeAgent) refresher() error {
	var err error
	a.memory = memrelease.New(memrelease.Config{})
	a.ref, err = refresher.New(refresher.Config{
		Registries: a.nodeCreds,
		Resolver:   nodecreds.NewResolver(a.nodeCreds, ecr.NewAPI, a.o.ECREndpoint),
		CachePath:  a.o.CachePath,
		Namespaces: a.namespaces,
		Sinks:      a.sinkList,
		Metrics:    a.metrics,
		AfterSync:  a.memory.Done,
		Logger:     a.log.With("component", "refresher"),
	})
	if err != nil {
		return err
	}
	if a.nsInformer != nil {
		// A namespace's labels decide which grants it is in: a change reaches the node at once.
		kick := func(any) { a.ref.Kick() }
		_, _ = a.nsInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: kick, UpdateFunc: func(o, n any) {
			on, nn := o.(*corev1.Namespace), n.(*corev1.Namespace)
			// Its labels changed, or it started terminating (not each update while it does).
			if !labels.Equals(on.Labels, nn.Labels) || (on.DeletionTimestamp == nil && nn.DeletionTimestamp != nil) {
				a.ref.Kick()
			}
		}, DeleteFunc: kick})
	}
	return nil
}

// run starts everything, serves until ctx ends or a server fails, then stops in order.
func (a *nodeAgent) run(ctx context.Context) error {
	runCtx, stopRunning := context.WithCancel(ctx)
	defer stopRunning()
	a.nodeCreds.Run(runCtx)
	if a.nsInformer != nil {
		go a.nsInformer.RunWithContext(runCtx)
		go a.keys.Run(runCtx)
	}
	if a.daemonSet != nil {
		go a.daemonSet.run(runCtx)
	}
	opsSrv, errs := a.serve(runCtx)
	a.log.Info("pullpass agent started", "mode", a.o.Mode, "cache", a.o.CachePath, "metrics", a.o.MetricsAddress, "namespace", a.o.Namespace)
	refreshed, nodeWork, err := a.startWork(ctx, runCtx)
	if err != nil {
		return err
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
	sctx, scancel := context.WithTimeout(context.Background(), a.o.ShutdownTimeout)
	defer scancel()
	_ = opsSrv.Shutdown(sctx)
	return errors.Join(runErr, a.uninstallIfGoing(sctx))
}

// serve starts the ops server (/metrics, /healthz, /readyz) and, in token mode, the roles socket;
// their failures arrive on the channel.
func (a *nodeAgent) serve(ctx context.Context) (*http.Server, <-chan error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", a.memory.After(promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg})))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ref.Synced() {
			http.Error(w, "the first sync has not finished", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Addr: a.o.MetricsAddress, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errs := make(chan error, 2)
	if a.roles != nil {
		go func() {
			if err := a.roles.Serve(ctx); err != nil {
				errs <- err
			}
		}()
	}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("metrics server: %w", err)
		}
	}()
	return srv, errs
}

// startWork waits for the informers, gives the node Secret a few seconds, then runs the refresher
// (its first sync makes the agent ready) and the node's own work: kubelet restarts, the startup
// taint. refreshed closes when the refresher has stopped.
func (a *nodeAgent) startWork(ctx, runCtx context.Context) (refreshed chan struct{}, work *sync.WaitGroup, _ error) {
	if a.nsInformer != nil && !cache.WaitForCacheSync(runCtx.Done(), a.nsInformer.HasSynced) {
		return nil, nil, ctx.Err()
	}
	// A node Secret not readable within a few seconds keeps the last good credentials in the
	// cache (the refresher never takes "not readable" for "gone"); its watch goes on trying.
	syncCtx, syncDone := context.WithTimeout(runCtx, a.o.SourceSyncTimeout)
	if !cache.WaitForCacheSync(syncCtx.Done(), a.nodeCreds.HasSynced) && runCtx.Err() == nil {
		a.log.Warn("the node secret is not readable yet; serving what the cache holds")
	}
	syncDone()
	refreshed = make(chan struct{})
	go func() { a.ref.Run(runCtx); a.memory.Stop(); close(refreshed) }()
	work = &sync.WaitGroup{}
	if a.restarter != nil {
		work.Go(func() { a.restarter.Run(runCtx, 10*time.Second) })
	}
	if a.o.RemoveStartupTaint {
		taint, err := nodetaint.New(nodetaint.Config{Kube: a.kube, Node: a.o.NodeName, Logger: a.log.With("component", "startup-taint"),
			Serving: func() bool {
				return a.ref.Synced() && (a.installer == nil || a.installer.Serves()) && (a.restarter == nil || a.restarter.Settled())
			}})
		if err != nil {
			return nil, nil, err
		}
		work.Go(func() { taint.Run(runCtx, 5*time.Second) })
	}
	return refreshed, work, nil
}

// uninstallIfGoing takes pullpass off the node when its DaemonSet is being deleted.
func (a *nodeAgent) uninstallIfGoing(ctx context.Context) error {
	if a.daemonSet == nil {
		a.log.Info("shutting down; the node keeps serving the cache as written")
		return nil
	}
	gone, why := a.daemonSet.uninstalling(ctx, a.kube)
	if !gone {
		if why != "" {
			a.log.Warn("could not tell whether pullpass is being uninstalled", "why", why)
		}
		a.log.Info("shutting down; the node keeps serving the cache as written")
		return nil
	}
	a.log.Info("pullpass is being uninstalled: removing its credentials and config from the node", "why", why)
	err := Uninstall(a.o, a.log, true)
	if a.restarter != nil && err == nil {
		err = restartAfterUninstall(a.o, a.restarter, a.installer, a.log)
	}
	return err
}

// newRestarter builds the kubelet restarter of the node: the host's systemd over D-Bus, the
// kubelet's healthz on the host network, the Lease in pullpass's namespace.
func newRestarter(o *Options, kube kubernetes.Interface, installer *install.Installer, written func() bool, reg prometheus.Registerer, log *slog.Logger) (*kubeletrestart.Restarter, error) {
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
		Written:       written,
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
