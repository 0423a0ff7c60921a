// Package kubeletrestart restarts the kubelet of the agent's node when it runs an older
// credential provider config than the one the agent wrote (the kubelet reads that config only at
// start), so that a new node serves the node path with no one's hands on it.
//
// The sequence, each step behind a narrow interface:
//
//  1. Only when the kubelet runs an older config (ProviderConfig.RestartNeeded: the generation
//     the plugin recorded, or a restart already confirmed, differs from the config written).
//  2. One node at a time across the cluster: a Lease (Lock) is taken first and released after;
//     a holder that dies stops renewing it and it expires, so the other nodes are not blocked.
//  3. Not while the kubelet is starting pods, when that can be told (Busy), waited for with a
//     bound: a restart in the middle of a pull makes the kubelet start that pull again (running
//     containers are not affected by a kubelet restart, only its own work in flight is).
//  4. The config is held (no write) while the restart is judged, the kubelet is restarted
//     through the host's systemd (Systemd), and it must be healthy within a bound: its healthz
//     and the Node Ready (Health). A config the kubelet refuses makes it exit at start, which
//     healthz sees at once; the plugin's own record of the generation follows at the next pull
//     that matches, which may be long after on an idle node, so it is not waited for.
//  5. Healthy: the generation is confirmed. Not: the previous config is put back, the kubelet
//     restarted again, the Node gets a Warning event, a metric and a log say why, and the
//     config's generation is never written again.
//
// The config written is validated as the kubelet validates it before any write (agent/install),
// so step 5 is for what validation cannot see (a kubelet older than the config's features, a
// plugin binary that does not run on the host).
package kubeletrestart

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ProviderConfig is the credential provider config the agent writes (agent/install.Installer).
type ProviderConfig interface {
	// RestartNeededSince: a kubelet started then runs an older entry than the one written.
	RestartNeededSince(kubeletStarted time.Time) bool
	// Hold freezes writes and returns the generation the kubelet will start with.
	Hold(kubeletStarted time.Time) (generation string, restartNeeded bool)
	Confirm(generation string) error
	Rollback(generation string) error
	Release() error
}

// Systemd restarts a unit of the host's systemd and waits for the job to finish, and says
// when the unit last started.
type Systemd interface {
	RestartUnit(ctx context.Context, unit string) error
	ActiveSince(ctx context.Context, unit string) (time.Time, error)
}

// Health tells whether the restarted kubelet is healthy: its healthz, and the Node Ready.
type Health interface {
	KubeletHealthy(ctx context.Context) error
	NodeReady(ctx context.Context) (bool, error)
}

// Lock is held by one node at a time across the cluster.
type Lock interface {
	// Acquire blocks until the lock is held or ctx ends; release gives it back.
	Acquire(ctx context.Context) (release func(context.Context), err error)
}

// Busy counts the pods the kubelet is starting on this node.
type Busy interface {
	StartingPods(ctx context.Context) (int, error)
}

// Recorder records an event on the agent's Node.
type Recorder interface {
	Event(ctx context.Context, eventType, reason, message string)
}

// Results of a restart, the metric's label values.
const (
	ResultSuccess    = "success"     // restarted, healthy with the new config
	ResultRolledBack = "rolled_back" // not healthy with it: the previous config put back
	ResultFailed     = "failed"      // the restart or the rollback failed: see the event and log
)

// Event reasons on the Node.
const (
	ReasonRestarted  = "PullpassKubeletRestarted"
	ReasonRolledBack = "PullpassKubeletConfigRolledBack"
	ReasonFailed     = "PullpassKubeletRestartFailed"
)

// Config configures a Restarter.
type Config struct {
	Provider ProviderConfig
	Systemd  Systemd
	Health   Health
	Lock     Lock
	Busy     Busy // optional: without it, the restart does not wait for pods starting
	Recorder Recorder
	// Unit is the kubelet's systemd unit (default kubelet.service).
	Unit string
	// HealthTimeout bounds the wait for the restarted kubelet (default 2 min).
	HealthTimeout time.Duration
	// BusyTimeout bounds the wait for pods starting (default 2 min); then the restart goes on.
	BusyTimeout time.Duration
	// Poll is how often health and pods starting are looked at (default 2 s).
	Poll       time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Written, when set, reports whether the agent has written its provider config once (its
	// first sync). Before, there is nothing to judge: "no restart needed" would be taken for
	// settled, and the startup taint removed before the kubelet runs the entry written.
	Written func() bool
}

// Restarter restarts the node's kubelet for a new provider config, safely.
type Restarter struct {
	cfg      Config
	restarts *prometheus.CounterVec
	settled  atomic.Bool // the last look found the kubelet running the entry written
}

// Settled reports whether the last look found the kubelet running the entry written (no
// restart needed, or one made and confirmed): what the startup taint waits for.
func (r *Restarter) Settled() bool { return r.settled.Load() }

// New returns a Restarter.
func New(cfg Config) (*Restarter, error) {
	if cfg.Provider == nil || cfg.Systemd == nil || cfg.Health == nil || cfg.Lock == nil || cfg.Recorder == nil {
		return nil, errors.New("invalid configuration: provider config, systemd, health, lock and recorder are required")
	}
	if cfg.Unit == "" {
		cfg.Unit = "kubelet.service"
	}
	if cfg.HealthTimeout == 0 {
		cfg.HealthTimeout = 2 * time.Minute
	}
	if cfg.BusyTimeout == 0 {
		cfg.BusyTimeout = 2 * time.Minute
	}
	if cfg.Poll == 0 {
		cfg.Poll = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	r := &Restarter{cfg: cfg, restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullpass_agent_kubelet_restarts_total",
		Help: "Restarts of this node's kubelet by the agent for a new credential provider config, by result (success, rolled_back: not healthy with it, the previous config put back; failed).",
	}, []string{"result"})}
	for _, res := range []string{ResultSuccess, ResultRolledBack, ResultFailed} {
		r.restarts.WithLabelValues(res)
	}
	if err := cfg.Registerer.Register(r.restarts); err != nil {
		return nil, err
	}
	return r, nil
}

// Run restarts the kubelet whenever it runs an older config, looking every interval, until
// ctx ends. After a failure (the kubelet not healthy even with the previous config, or the
// Lease out of reach) it waits longer each time, from a minute up to half an hour: a node whose
// kubelet is sick for another reason must not be restarted in a loop.
func (r *Restarter) Run(ctx context.Context, interval time.Duration) {
	wait := interval
	for {
		res, err := r.Once(ctx)
		if err != nil && ctx.Err() == nil {
			r.cfg.Logger.Error("restarting the kubelet", "err", err)
		}
		if res == ResultFailed || (err != nil && res == "") {
			wait = min(max(2*wait, time.Minute), 30*time.Minute)
		} else {
			wait = interval
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Once restarts the kubelet if it runs an older config, and returns the result ("" when no
// restart was needed).
func (r *Restarter) Once(ctx context.Context) (string, error) {
	if r.cfg.Written != nil && !r.cfg.Written() {
		return "", nil
	}
	started, err := r.cfg.Systemd.ActiveSince(ctx, r.cfg.Unit)
	if err != nil {
		return "", fmt.Errorf("asking systemd when %s started: %w", r.cfg.Unit, err)
	}
	if !r.cfg.Provider.RestartNeededSince(started) {
		r.settled.Store(true)
		return "", nil
	}
	r.settled.Store(false)
	release, err := r.cfg.Lock.Acquire(ctx)
	if err != nil {
		return "", fmt.Errorf("taking the kubelet restart lease: %w", err)
	}
	// Released with a context of its own: the next node should not wait for the lease to
	// expire because this agent is stopping.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		release(rctx)
	}()
	r.waitIdle(ctx)
	// Asked again: another restart (a person's) may have come meanwhile.
	if started, err = r.cfg.Systemd.ActiveSince(ctx, r.cfg.Unit); err != nil {
		return "", fmt.Errorf("asking systemd when %s started: %w", r.cfg.Unit, err)
	}
	gen, need := r.cfg.Provider.Hold(started)
	if !need {
		return "", nil
	}
	log := r.cfg.Logger.With("generation", gen, "unit", r.cfg.Unit)
	log.Info("restarting the kubelet: it runs an older credential provider config than the one written")
	err = r.restartAndWait(ctx)
	if err == nil {
		r.restarts.WithLabelValues(ResultSuccess).Inc()
		cerr := r.cfg.Provider.Confirm(gen)
		r.settled.Store(cerr == nil)
		r.cfg.Recorder.Event(ctx, "Normal", ReasonRestarted, fmt.Sprintf("pullpass restarted the kubelet for credential provider config %s", gen))
		log.Info("the kubelet restarted and is healthy with the new credential provider config")
		return ResultSuccess, cerr
	}
	if ctx.Err() != nil {
		// Stopping: the hold ends; the next agent judges the kubelet from the start.
		return "", errors.Join(err, r.cfg.Provider.Release())
	}
	why := err.Error()
	log.Error("the kubelet is not healthy after its restart: putting the previous credential provider config back", "err", err)
	if rerr := r.cfg.Provider.Rollback(gen); rerr != nil {
		return r.failed(ctx, fmt.Sprintf("the kubelet was not healthy with credential provider config %s (%s), and it could not be put back: %v", gen, why, rerr))
	}
	if rerr := r.restartAndWait(ctx); rerr != nil {
		return r.failed(ctx, fmt.Sprintf("the kubelet was not healthy with credential provider config %s (%s), nor after it was put back: %v", gen, why, rerr))
	}
	r.restarts.WithLabelValues(ResultRolledBack).Inc()
	msg := fmt.Sprintf("the kubelet was not healthy with credential provider config %s (%s): the previous config is back and this one will not be written again", gen, why)
	r.cfg.Recorder.Event(ctx, "Warning", ReasonRolledBack, msg)
	log.Warn(msg)
	return ResultRolledBack, nil
}

// RestartAfterRemoval restarts the kubelet once pullpass's entry is out of its config (an
// uninstall), under the same rules: the config as it is now must be one the kubelet accepts
// (validate; a config left with no provider at all is refused, and the kubelet is left running
// until its flags change), one node at a time, not while pods start, healthy within the bound.
// There is nothing to roll back to: a failure is an event, the metric and the error.
func (r *Restarter) RestartAfterRemoval(ctx context.Context, validate func() error) (string, error) {
	if err := validate(); err != nil {
		return "", fmt.Errorf("not restarting the kubelet: %w", err)
	}
	release, err := r.cfg.Lock.Acquire(ctx)
	if err != nil {
		return "", fmt.Errorf("taking the kubelet restart lease: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		release(rctx)
	}()
	r.waitIdle(ctx)
	if err := r.restartAndWait(ctx); err != nil {
		return r.failed(ctx, fmt.Sprintf("the kubelet was not healthy after pullpass's entry was removed from its config: %v", err))
	}
	r.restarts.WithLabelValues(ResultSuccess).Inc()
	r.cfg.Recorder.Event(ctx, "Normal", ReasonRestarted, "pullpass restarted the kubelet after removing its credential provider entry (uninstall)")
	return ResultSuccess, nil
}

func (r *Restarter) failed(ctx context.Context, msg string) (string, error) {
	r.restarts.WithLabelValues(ResultFailed).Inc()
	r.cfg.Recorder.Event(ctx, "Warning", ReasonFailed, msg)
	return ResultFailed, errors.New(msg)
}

// restartAndWait restarts the kubelet and waits for it to be healthy, within the bound.
func (r *Restarter) restartAndWait(ctx context.Context) error {
	if err := r.cfg.Systemd.RestartUnit(ctx, r.cfg.Unit); err != nil {
		return fmt.Errorf("systemd could not restart %s: %w", r.cfg.Unit, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.HealthTimeout)
	defer cancel()
	var last error
	for {
		last = r.healthy(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy within %s: %w", r.cfg.HealthTimeout, last)
		case <-time.After(r.cfg.Poll):
		}
	}
}

func (r *Restarter) healthy(ctx context.Context) error {
	if err := r.cfg.Health.KubeletHealthy(ctx); err != nil {
		return fmt.Errorf("kubelet healthz: %w", err)
	}
	ready, err := r.cfg.Health.NodeReady(ctx)
	if err != nil {
		return fmt.Errorf("reading the Node: %w", err)
	}
	if !ready {
		return errors.New("the Node is not Ready")
	}
	return nil
}

// waitIdle waits, within the bound, until the kubelet starts no pod.
func (r *Restarter) waitIdle(ctx context.Context) {
	if r.cfg.Busy == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.BusyTimeout)
	defer cancel()
	for {
		n, err := r.cfg.Busy.StartingPods(ctx)
		if err == nil && n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			r.cfg.Logger.Info("pods are still starting on this node: restarting the kubelet all the same", "starting", n, "waited", r.cfg.BusyTimeout)
			return
		case <-time.After(r.cfg.Poll):
		}
	}
}
