// Package memrelease gives the node agent's memory back to the OS once a burst of work (a sync,
// a scrape of its metrics) is over.
// At rest the agent allocates almost nothing, so the Go runtime's own pace (a forced collection
// every 2 minutes, a background scavenger) took up to 4 minutes to return what a sync at 1,000
// registries had made the heap grow to: its RSS at rest depended on when the last sync had
// run (docs/benchmarks.md). A release, a collection and the return of the free pages, costs a
// millisecond or two of CPU at the agent's heap size.
package memrelease

import (
	"net/http"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Config configures a Releaser.
type Config struct {
	// Above is how much the process must have allocated since the last release for a release
	// to be worth it (default 1 MiB: a sync at about 300 registries; an idle agent's syncs never
	// reach it).
	Above uint64
	// Quiet is how long after the last Done a release waits (default 10 s): a burst of syncs
	// (registries created one after another) ends with one release, not one a sync. Work that
	// never pauses for Quiet is released from at least every MaxWait (default 1 min, never
	// under Quiet).
	Quiet, MaxWait time.Duration
	// Free releases (default debug.FreeOSMemory), Allocated says how many bytes the process
	// has allocated since it started (default runtime/metrics' /gc/heap/allocs:bytes): tests
	// replace them.
	Free      func()
	Allocated func() uint64
}

// Releaser releases memory Quiet after the last of a burst of work.
type Releaser struct {
	cfg   Config
	timer *time.Timer

	mu       sync.Mutex
	pending  bool      // a release is due when timer fires
	stopped  bool      // no release any more (the agent is stopping)
	since    time.Time // the first Done the pending release is for
	released uint64    // Allocated at the last release
}

// New returns a Releaser.
func New(cfg Config) *Releaser {
	if cfg.Above == 0 {
		cfg.Above = 1 << 20
	}
	if cfg.Quiet == 0 {
		cfg.Quiet = 10 * time.Second
	}
	if cfg.MaxWait < cfg.Quiet {
		cfg.MaxWait = max(time.Minute, cfg.Quiet)
	}
	if cfg.Free == nil {
		cfg.Free = debug.FreeOSMemory
	}
	if cfg.Allocated == nil {
		cfg.Allocated = allocated
	}
	r := &Releaser{cfg: cfg, released: cfg.Allocated()}
	r.timer = time.AfterFunc(time.Hour, r.release)
	r.timer.Stop()
	return r
}

// Done says a unit of work (a sync) has ended: if the process allocated Above since the last
// release, a release comes Quiet from now, unless more work is done before.
func (r *Releaser) Done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.stopped:
		return
	case !r.pending && r.cfg.Allocated()-r.released < r.cfg.Above:
		return
	case !r.pending:
		r.pending, r.since = true, time.Now()
	case time.Since(r.since) >= r.cfg.MaxWait-r.cfg.Quiet:
		return // the timer fires MaxWait at most after the first Done
	}
	r.timer.Reset(r.cfg.Quiet)
}

// After serves h, then says Done: a scrape of the agent's metrics at 1,000 registries allocates
// 1.6 MiB (2,000 series), as much as half a sync, every scrape interval.
func (r *Releaser) After(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.ServeHTTP(w, req)
		r.Done()
	})
}

func (r *Releaser) release() {
	r.mu.Lock()
	due := r.pending && !r.stopped
	if due {
		// Counted before Free: what work done meanwhile allocates is for the next release.
		r.pending, r.released = false, r.cfg.Allocated()
	}
	r.mu.Unlock()
	if due {
		r.cfg.Free()
	}
}

// Stop cancels a release to come, and any after it.
func (r *Releaser) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending, r.stopped = false, true
	r.timer.Stop()
}

func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
