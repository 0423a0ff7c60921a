package bench

import (
	"context"
	"math"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/pullpass/pullpass/agent/nodecache"
)

// Latencies summarises, over the registries, the time from each one's creation to the node
// cache holding its credentials (what the plugin answers the kubelet from).
type Latencies struct {
	N             int // registries served
	Missing       int // created and never seen in the cache
	P50, P99, Max time.Duration
}

// serveClock records when each registry was created and when the node cache first held it.
type serveClock struct {
	mu      sync.Mutex
	created map[string]time.Time
	served  map[string]time.Time
}

func newServeClock() *serveClock {
	return &serveClock{created: map[string]time.Time{}, served: map[string]time.Time{}}
}

// Created records a registry's creation: the moment its Registry object was sent to the API.
func (c *serveClock) Created(name string, at time.Time) {
	c.mu.Lock()
	c.created[name] = at
	c.mu.Unlock()
}

// Observe records the registries of a cache seen at at, those not seen before.
func (c *serveClock) Observe(f nodecache.File, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range f.Entries {
		if _, ok := c.served[e.Registry]; !ok {
			c.served[e.Registry] = at
		}
	}
}

// Latencies returns, over the registries created, the time from creation to first served.
func (c *serveClock) Latencies() Latencies {
	c.mu.Lock()
	defer c.mu.Unlock()
	var l Latencies
	ds := make([]time.Duration, 0, len(c.created))
	for name, created := range c.created {
		served, ok := c.served[name]
		if !ok {
			l.Missing++
			continue
		}
		ds = append(ds, max(served.Sub(created), 0))
	}
	if len(ds) == 0 {
		return l
	}
	slices.Sort(ds)
	l.N = len(ds)
	l.P50, l.P99, l.Max = rank(ds, 0.50), rank(ds, 0.99), ds[len(ds)-1]
	return l
}

// rank is the nearest-rank q-quantile of sorted ds.
func rank(ds []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// watchCache reads the node cache at path each time it is replaced (it is written by a rename,
// so a new file), polled every interval, until ctx ends.
func watchCache(ctx context.Context, path string, interval time.Duration, c *serveClock) {
	var last os.FileInfo
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		now := time.Now()
		if fi, err := os.Stat(path); err == nil && (last == nil || !os.SameFile(fi, last) || !fi.ModTime().Equal(last.ModTime())) {
			if f, err := nodecache.Read(path); err == nil {
				c.Observe(f, now)
				last = fi
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
