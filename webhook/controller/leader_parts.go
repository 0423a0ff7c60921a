package controller

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/nodedelivery"
	"github.com/pullpass/pullpass/pkg/registryclient"
	"github.com/pullpass/pullpass/webhook/cluster"
	"github.com/pullpass/pullpass/webhook/keeper"
	"github.com/pullpass/pullpass/webhook/nodecreds"
	"github.com/pullpass/pullpass/webhook/pullwatch"
	"github.com/pullpass/pullpass/webhook/verify"
)

// leader builds what the leader runs.
type leader struct {
	o          *Options
	kube       kubernetes.Interface
	registries registryclient.Interface
	metrics    *Metrics
	log        *slog.Logger
}

// parts are the leader's controllers; those the options turn off are nil.
type parts struct {
	keeper    *keeper.Keeper
	verifier  *verify.Verifier
	watcher   *pullwatch.Watcher
	nodeCreds *nodecreds.Writer
	stop      func() // the events recorder's
	// agents is the agent DaemonSet's cache (nil without agents): the keeper judges by it once
	// it has synced, and nothing waits for it.
	agents informers.SharedInformerFactory
}

// build makes the controllers over caches, each fed by the informer events it needs.
func (l *leader) build(c *cluster.Caches) (*parts, error) {
	p := &parts{stop: func() {}}
	policy := l.o.Policy()
	namespaces := c.Namespaces.Lister()
	var err error
	keeperCfg := keeper.Config{
		Client: l.kube, RegistryAPI: l.registries, Registries: c.Table, Desired: c.PullSecrets,
		Managed: c.Managed.Lister(), Namespaces: namespaces,
		Policy: policy, Logger: l.log.With("component", "keeper"), Metrics: l.metrics.Keeper, QueueMetrics: l.metrics.Queues,
		PullThrough:  pullThroughStatus{table: c.Table, namespaces: namespaces, policy: policy},
		NodeDelivery: nodedelivery.Mode(l.o.NodeDelivery),
	}
	var agents *agentCount
	if l.o.AgentDaemonSet != "" {
		a, f := watchAgents(l.kube, l.o.Namespace, l.o.AgentDaemonSet)
		agents, keeperCfg.Agents, p.agents = &a, a, f
	}
	if p.keeper, err = keeper.New(keeperCfg); err != nil {
		return nil, err
	}
	if agents != nil {
		agents.tell(p.keeper)
	}
	watchForKeeper(p.keeper, c.Table, c.Sources, c.Managed.Informer(), c.Namespaces.Informer())
	if l.o.Verify {
		if p.verifier, err = l.newVerifier(c); err != nil {
			return nil, err
		}
	}
	if l.o.WatchPulls {
		if err := l.addWatcher(p, c); err != nil {
			return nil, err
		}
	}
	if l.o.NodeCredentials {
		if p.nodeCreds, err = l.newNodeCreds(c); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// newNodeCreds makes the writer of the node Secret, synced when a Registry or a source changes.
func (l *leader) newNodeCreds(c *cluster.Caches) (*nodecreds.Writer, error) {
	w, err := nodecreds.New(nodecreds.Config{
		Store: nodecreds.Secrets{API: l.kube.CoreV1().Secrets(l.o.Namespace)}, Registries: c.Table, Sources: c.PullSecrets,
		Namespace: l.o.Namespace, Reserved: []string{webhookTLSSecret}, Metrics: l.metrics.NodeCreds,
		Logger: l.log.With("component", "nodecreds"),
	})
	if err != nil {
		return nil, err
	}
	kick := func(any) { w.Kick() }
	c.Table.AddHandler(cache.ResourceEventHandlerFuncs{AddFunc: kick, UpdateFunc: func(_, n any) { kick(n) }, DeleteFunc: kick})
	bySource := func(obj any) { forSourceOf(c.Table, obj, func(string) { w.Kick() }) }
	for _, inf := range c.Sources {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: bySource, UpdateFunc: func(_, n any) { bySource(n) }, DeleteFunc: bySource})
	}
	return w, nil
}

// webhookTLSSecret is the webhook's own Secret in the release namespace, never given to the
// agents whatever a Registry names (the chart's name for it).
const webhookTLSSecret = "pullpass-webhook-tls"

func (l *leader) newVerifier(c *cluster.Caches) (*verify.Verifier, error) {
	login, err := newLogin(l.o)
	if err != nil {
		return nil, err
	}
	v, err := verify.New(verify.Config{
		Registries: c.Table, Credentials: c.PullSecrets, Status: l.registries, Login: login,
		Interval: l.o.VerifyInterval, Workers: l.o.VerifyWorkers, DockerHubHost: l.o.DockerHubHost,
		DockerHubAnonymous: l.o.DockerHubAnonymous, Metrics: l.metrics.Verify, QueueMetrics: l.metrics.Queues, Logger: l.log.With("component", "verifier"),
	})
	if err != nil {
		return nil, err
	}
	watchForVerifier(v, c.Table, c.Sources)
	return v, nil
}

// addWatcher adds the pull watcher and, with the verifier, the recreation of stuck pods and
// what the verifier learns of pods' images.
func (l *leader) addWatcher(p *parts, c *cluster.Caches) error {
	namespaces := c.Namespaces.Lister()
	reaches := registryReaches(l.o.Policy(), namespaces)
	cfg := pullwatch.Config{
		Client: l.kube, Registry: pullwatch.TableRegistry(c.Table.Table, namespaceLabels(namespaces)), Metrics: l.metrics.Pulls,
		Logger: l.log.With("component", "pullwatch"), PodAdded: p.keeper.Needed,
	}
	if p.verifier != nil {
		cfg.Observe = observeImage(p.verifier, c.Table, reaches)
		cfg.SeenImage = cfg.Observe
	}
	var err error
	if p.watcher, err = pullwatch.New(cfg); err != nil {
		return err
	}
	if p.verifier == nil {
		return nil
	}
	stuck, stop, err := newStuckPods(l.kube, p.watcher, namespaces, l.o, l.metrics, l.log.With("component", "stuckpods"))
	if err != nil {
		return err
	}
	p.stop = stop
	p.verifier.SetRecovered(stuck.Recover)
	p.verifier.SetPodImages(p.watcher.Images, reaches)
	return nil
}

// runs are the controllers' Run functions; the pull watcher counts failures that may have begun
// after previousLeaderSeen (the last leader counted those before).
func (p *parts) runs(previousLeaderSeen time.Time) []func(context.Context) {
	out := []func(context.Context){p.keeper.Run}
	if p.watcher != nil {
		out = append(out, func(ctx context.Context) { p.watcher.Run(ctx, previousLeaderSeen) })
	}
	if p.nodeCreds != nil {
		out = append(out, p.nodeCreds.Run)
	}
	if p.verifier != nil {
		out = append(out, p.verifier.Run)
	}
	return out
}

// Metrics are the controller's own metrics, registered together.
type Metrics struct {
	Keeper *keeper.PrometheusMetrics
	Pulls  *pullwatch.Metrics
	Verify *verify.PrometheusMetrics
	// Recreated counts stuck pods deleted for their controller to recreate.
	Recreated *prometheus.CounterVec
	NodeCreds *nodecreds.PrometheusMetrics
	Queues    *QueueMetrics
}

// NewMetrics registers the controller's metrics on reg. Their names are those the webhook served
// when it led: the alerts and the dashboard select them by name.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	var m Metrics
	var err error
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
	if m.NodeCreds, err = nodecreds.NewPrometheusMetrics(reg); err != nil {
		return nil, err
	}
	if m.Queues, err = NewQueueMetrics(reg); err != nil {
		return nil, err
	}
	return &m, nil
}
