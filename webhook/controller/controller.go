package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/webhook/cluster"
)

// NewLogger builds the slog logger the options ask for.
func NewLogger(o *Options) *slog.Logger { return o.Log.Logger() }

// shutdownTimeout bounds the ops server's shutdown.
const shutdownTimeout = 5 * time.Second

// Run serves /metrics, /healthz and /readyz, stands for the Lease and, while it leads, runs the
// controllers. It returns nil when ctx ends, and ErrLeadershipLost when another replica took the
// Lease: the caller exits, and the process restarts.
func Run(ctx context.Context, o *Options, log *slog.Logger) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("invalid options: %w", err)
	}
	clients, reg, err := cluster.Connect(&o.Options, "pullpass-controller")
	if err != nil {
		return err
	}
	metrics, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	var st readiness
	opsSrv := cluster.NewServer(o.MetricsAddress, cluster.OpsHandler(reg, st.ready), log)
	served := make(chan error, 1)
	go func() { served <- cluster.Serve("metrics", opsSrv.ListenAndServe) }()
	log.Info("pullpass controller started", "metrics", o.MetricsAddress, "namespace", o.Namespace, "lease", o.LeaseName)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	elected := make(chan error, 1)
	go func() {
		elected <- newElection(clients.Kube, o, log.With("component", "leader")).run(ctx, func(ctx context.Context, previousLeaderSeen time.Time) error {
			c := &leader{o: o, kube: clients.Kube, registries: clients.Registries, metrics: metrics, log: log}
			return c.run(ctx, previousLeaderSeen, &st)
		})
	}()
	var runErr error
	select {
	case runErr = <-elected:
	case runErr = <-served:
		cancel()
		if err := <-elected; err != nil {
			log.Error("leader election after the metrics server failed", "err", err)
		}
	}
	st.stopping.Store(true)
	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer scancel()
	_ = opsSrv.Shutdown(sctx)
	return runErr
}

// readiness: a replica standing by is ready (it is all it has to do); the leader once its caches
// are synced.
type readiness struct {
	leading, synced, stopping atomic.Bool
}

func (r *readiness) ready() error {
	switch {
	case r.stopping.Load():
		return errors.New("shutting down")
	case r.leading.Load() && !r.synced.Load():
		return errors.New("leading, informers not synced")
	}
	return nil
}

// run is one term of leadership, the process's only one: it builds the caches and the
// controllers, and runs them until ctx ends.
func (l *leader) run(ctx context.Context, previousLeaderSeen time.Time, st *readiness) error {
	st.leading.Store(true)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	caches := cluster.NewCaches(l.kube, l.registries, &l.o.Options, l.log)
	parts, err := l.build(caches)
	if err != nil {
		return err
	}
	defer parts.stop()
	caches.Start(ctx)
	defer caches.Shutdown() // after cancel (deferred later runs first)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), caches.Synced) {
		return nil // ctx ended
	}
	st.synced.Store(true)
	l.log.Info("caches synced", "registries", caches.Table.String())
	var wg sync.WaitGroup
	for _, run := range parts.runs(previousLeaderSeen) {
		wg.Go(func() { run(ctx) })
	}
	wg.Wait()
	return nil
}
