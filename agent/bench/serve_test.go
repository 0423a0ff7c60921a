package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/pkg/testenv"
)

func TestServeClockLatencies(t *testing.T) {
	c := newServeClock()
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	// 100 registries created a second apart, each served i*10 ms after its creation.
	for i := range 100 {
		c.Created(fmt.Sprintf("r-%d", i), t0.Add(time.Duration(i)*time.Second))
	}
	for i := range 100 {
		at := t0.Add(time.Duration(i)*time.Second + time.Duration(i+1)*10*time.Millisecond)
		c.Observe(nodecache.File{Entries: []nodecache.Entry{{Registry: fmt.Sprintf("r-%d", i)}}}, at)
		// Seen again later: the first sighting counts.
		c.Observe(nodecache.File{Entries: []nodecache.Entry{{Registry: fmt.Sprintf("r-%d", i)}}}, at.Add(time.Hour))
	}
	c.Created("never", t0)
	got := c.Latencies()
	want := Latencies{N: 100, Missing: 1, P50: 500 * time.Millisecond, P99: 990 * time.Millisecond, Max: time.Second}
	if got != want {
		t.Fatalf("Latencies() = %+v, want %+v", got, want)
	}
}

func TestServeClockEmpty(t *testing.T) {
	if got := newServeClock().Latencies(); got != (Latencies{}) {
		t.Fatalf("Latencies() = %+v, want zero", got)
	}
}

func TestRank(t *testing.T) {
	ds := []time.Duration{1, 2, 3, 4}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.25, 1}, {0.5, 2}, {0.51, 3}, {0.99, 4}, {1, 4}} {
		if got := rank(ds, tc.q); got != tc.want {
			t.Errorf("rank(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestWatchCacheSeesEachWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	c := newServeClock()
	c.Created("a", time.Now())
	c.Created("b", time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { watchCache(ctx, path, time.Millisecond, c); close(done) }()
	write := func(names ...string) {
		f := nodecache.File{WrittenAt: time.Now()}
		for _, n := range names {
			f.Entries = append(f.Entries, nodecache.Entry{Registry: n, Hosts: []string{n + ".example.com"}})
		}
		if err := nodecache.Write(path, f); err != nil {
			t.Fatal(err)
		}
	}
	served := func(n int) bool { l := c.Latencies(); return l.N == n }
	write("a")
	waitTest(t, func() bool { return served(1) })
	write("a", "b")
	waitTest(t, func() bool { return served(2) })
	cancel()
	<-done
}

func waitTest(t *testing.T, cond func() bool) {
	t.Helper()
	testenv.Poll(t, 10*time.Second, time.Millisecond, testenv.Until("served", cond))
}

func TestMedianOfReadings(t *testing.T) {
	rss := func(vs ...float64) []Sample {
		out := make([]Sample, len(vs))
		for i, v := range vs {
			out[i].RSS = v
		}
		return out
	}
	of := func(s Sample) float64 { return s.RSS }
	for _, tc := range []struct {
		in   []Sample
		want float64
	}{{rss(3), 3}, {rss(5, 1, 9), 5}, {rss(4, 1, 9, 2), 4}} {
		if got := median(tc.in, of); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
