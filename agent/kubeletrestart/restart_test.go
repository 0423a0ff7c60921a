package kubeletrestart_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullpass/pullpass/agent/kubeletrestart"
)

// node fakes every interface of the sequence and records what happened, in order.
type node struct {
	mu         sync.Mutex
	log        []string
	need       bool
	gen        string
	healthyOn  func(restart int) bool // whether the kubelet comes back healthy after restart n (1-based)
	restarts   int
	starting   []int // pods starting, one value per look (the last repeats)
	restartErr error
}

func (n *node) add(s string) { n.mu.Lock(); n.log = append(n.log, s); n.mu.Unlock() }

func (n *node) RestartNeededSince(time.Time) bool { return n.need }
func (n *node) Hold(time.Time) (string, bool) {
	n.add("hold")
	return n.gen, n.need
}
func (n *node) Confirm(g string) error  { n.add("confirm " + g); n.need = false; return nil }
func (n *node) Rollback(g string) error { n.add("rollback " + g); n.need = false; return nil }
func (n *node) Release() error          { n.add("release"); return nil }

func (n *node) RestartUnit(_ context.Context, unit string) error {
	n.restarts++
	n.add("restart " + unit)
	return n.restartErr
}
func (n *node) ActiveSince(context.Context, string) (time.Time, error) {
	return time.Unix(int64(n.restarts), 0), nil
}

func (n *node) KubeletHealthy(context.Context) error {
	if !n.healthyOn(n.restarts) {
		return errors.New("connection refused")
	}
	return nil
}
func (n *node) NodeReady(context.Context) (bool, error) { return n.healthyOn(n.restarts), nil }

func (n *node) Acquire(context.Context) (func(context.Context), error) {
	n.add("lock")
	return func(context.Context) { n.add("unlock") }, nil
}

func (n *node) StartingPods(context.Context) (int, error) {
	v := n.starting[0]
	if len(n.starting) > 1 {
		n.starting = n.starting[1:]
	}
	n.add("pods starting: " + string(rune('0'+v)))
	return v, nil
}

func (n *node) Event(_ context.Context, typ, reason, msg string) {
	n.add("event " + typ + " " + reason + ": " + msg)
}

func newRestarter(t *testing.T, n *node, reg *prometheus.Registry) *kubeletrestart.Restarter {
	t.Helper()
	r, err := kubeletrestart.New(kubeletrestart.Config{Provider: n, Systemd: n, Health: n, Lock: n, Busy: n, Recorder: n,
		HealthTimeout: 200 * time.Millisecond, BusyTimeout: time.Minute, Poll: time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func restarts(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pullpass_agent_kubelet_restarts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no pullpass_agent_kubelet_restarts_total{result=%q}", result)
	return 0
}

// The whole sequence in order: the lease, pods starting waited out, the config held, one
// restart, healthy, confirmed, an event, the lease given back.
func TestRestartWhenTheKubeletRunsAnOlderConfig(t *testing.T) {
	n := &node{need: true, gen: "g2", healthyOn: func(int) bool { return true }, starting: []int{2, 1, 0}}
	reg := prometheus.NewRegistry()
	res, err := newRestarter(t, n, reg).Once(t.Context())
	if err != nil || res != kubeletrestart.ResultSuccess {
		t.Fatalf("Once: %q, %v", res, err)
	}
	want := []string{"lock", "pods starting: 2", "pods starting: 1", "pods starting: 0", "hold", "restart kubelet.service",
		"confirm g2", "event Normal PullpassKubeletRestarted: pullpass restarted the kubelet for credential provider config g2", "unlock"}
	if !slices.Equal(n.log, want) {
		t.Fatalf("sequence\n got %q\nwant %q", n.log, want)
	}
	if got := restarts(t, reg, kubeletrestart.ResultSuccess); got != 1 {
		t.Fatalf("restarts{success} = %v", got)
	}
	// Nothing more to do: no lock, no restart.
	n.log = nil
	if res, err := newRestarter(t, n, prometheus.NewRegistry()).Once(t.Context()); res != "" || err != nil || len(n.log) != 0 {
		t.Fatalf("second Once: %q, %v, %q", res, err, n.log)
	}
}

// Before the agent has written its config, a look finds no restart needed but the node is not
// settled: the startup taint must stay until a look after the write (a node whose disk kept the
// plugin's record of the same entry, while its kubelet started without it).
func TestNotSettledBeforeTheConfigIsWritten(t *testing.T) {
	n := &node{gen: "g", healthyOn: func(int) bool { return true }, starting: []int{0}}
	written := false
	r, err := kubeletrestart.New(kubeletrestart.Config{Provider: n, Systemd: n, Health: n, Lock: n, Busy: n, Recorder: n,
		Poll: time.Millisecond, Written: func() bool { return written }})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := r.Once(t.Context()); res != "" || err != nil || r.Settled() || len(n.log) != 0 {
		t.Fatalf("before the write: %q, %v, settled %v, %q", res, err, r.Settled(), n.log)
	}
	written, n.need = true, true
	if res, err := r.Once(t.Context()); res != kubeletrestart.ResultSuccess || err != nil || !r.Settled() {
		t.Fatalf("after the write: %q, %v, settled %v", res, err, r.Settled())
	}
}

// A kubelet that does not come back healthy: the previous config back, a second restart, a
// Warning event saying why, the metric; the generation is the installer's to remember.
func TestRollbackWhenTheKubeletDoesNotComeBack(t *testing.T) {
	n := &node{need: true, gen: "bad", healthyOn: func(r int) bool { return r != 1 }, starting: []int{0}}
	reg := prometheus.NewRegistry()
	res, err := newRestarter(t, n, reg).Once(t.Context())
	if err != nil || res != kubeletrestart.ResultRolledBack {
		t.Fatalf("Once: %q, %v", res, err)
	}
	want := []string{"lock", "pods starting: 0", "hold", "restart kubelet.service", "rollback bad", "restart kubelet.service"}
	if !slices.Equal(n.log[:len(want)], want) {
		t.Fatalf("sequence\n got %q\nwant %q...", n.log, want)
	}
	ev := n.log[len(want)]
	if !strings.HasPrefix(ev, "event Warning PullpassKubeletConfigRolledBack:") || !strings.Contains(ev, "connection refused") {
		t.Fatalf("event %q: want a Warning naming why", ev)
	}
	if n.log[len(n.log)-1] != "unlock" {
		t.Fatalf("the lease was not given back: %q", n.log)
	}
	if got := restarts(t, reg, kubeletrestart.ResultRolledBack); got != 1 {
		t.Fatalf("restarts{rolled_back} = %v", got)
	}
	if got := restarts(t, reg, kubeletrestart.ResultSuccess); got != 0 {
		t.Fatalf("restarts{success} = %v", got)
	}
}

// Not healthy even with the previous config: failed, said, the lease given back.
func TestFailedWhenNeitherConfigComesBack(t *testing.T) {
	n := &node{need: true, gen: "g", healthyOn: func(int) bool { return false }, starting: []int{0}}
	reg := prometheus.NewRegistry()
	res, err := newRestarter(t, n, reg).Once(t.Context())
	if err == nil || res != kubeletrestart.ResultFailed {
		t.Fatalf("Once: %q, %v", res, err)
	}
	if !slices.ContainsFunc(n.log, func(s string) bool { return strings.HasPrefix(s, "event Warning PullpassKubeletRestartFailed:") }) ||
		n.log[len(n.log)-1] != "unlock" {
		t.Fatalf("sequence %q", n.log)
	}
	if got := restarts(t, reg, kubeletrestart.ResultFailed); got != 1 {
		t.Fatalf("restarts{failed} = %v", got)
	}
}

// Pods that keep starting delay the restart only within its bound.
func TestPodsStartingDelayWithinABound(t *testing.T) {
	n := &node{need: true, gen: "g", healthyOn: func(int) bool { return true }, starting: []int{3}}
	r, err := kubeletrestart.New(kubeletrestart.Config{Provider: n, Systemd: n, Health: n, Lock: n, Busy: n, Recorder: n,
		BusyTimeout: 20 * time.Millisecond, Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := r.Once(t.Context()); err != nil || res != kubeletrestart.ResultSuccess {
		t.Fatalf("Once: %q, %v", res, err)
	}
}

// Uninstall: a config the kubelet would refuse once pullpass's entry is out (no provider left)
// is not restarted into; otherwise one restart under the lease.
func TestRestartAfterRemoval(t *testing.T) {
	n := &node{healthyOn: func(int) bool { return true }, starting: []int{0}}
	r := newRestarter(t, n, prometheus.NewRegistry())
	if _, err := r.RestartAfterRemoval(t.Context(), func() error { return errors.New("no provider left") }); err == nil || n.restarts != 0 {
		t.Fatalf("restarted into a refused config: %v, %d restarts", err, n.restarts)
	}
	res, err := r.RestartAfterRemoval(t.Context(), func() error { return nil })
	want := []string{"lock", "pods starting: 0", "restart kubelet.service",
		"event Normal PullpassKubeletRestarted: pullpass restarted the kubelet after removing its credential provider entry (uninstall)", "unlock"}
	if err != nil || res != kubeletrestart.ResultSuccess || !slices.Equal(n.log, want) {
		t.Fatalf("%q, %v\n got %q\nwant %q", res, err, n.log, want)
	}
}

// brokenNode's kubelet never comes back, whatever its config: the rollback does not help.
type brokenNode struct{ node }

func (b *brokenNode) Rollback(g string) error { b.add("rollback " + g); return nil }

// A kubelet sick for another reason is not restarted in a loop: after each failure the agent
// waits longer (a minute, then doubling). In a synctest bubble, so the minutes are fake.
func TestFailuresBackOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &brokenNode{node{need: true, gen: "g", healthyOn: func(int) bool { return false }, starting: []int{0}}}
		r, err := kubeletrestart.New(kubeletrestart.Config{Provider: b, Systemd: b, Health: b, Lock: b, Busy: b, Recorder: b,
			HealthTimeout: time.Second, Poll: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
		defer cancel()
		r.Run(ctx, 10*time.Second)
		// Attempts at about 0, 1, 3 and 7 minutes, two restarts each (the config, then the
		// previous one); every 10 s it would have been about 60.
		if b.restarts < 2 || b.restarts > 8 {
			t.Fatalf("%d restarts of a broken kubelet in 10 minutes, want at most 8", b.restarts)
		}
	})
}
