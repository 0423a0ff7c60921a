package memrelease

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// process is a process's allocation counter and its releases.
type process struct{ allocated, freed atomic.Uint64 }

func (p *process) releaser() *Releaser {
	return New(Config{Above: 1000, Quiet: 10 * time.Second, Free: func() { p.freed.Add(1) }, Allocated: p.allocated.Load})
}

func TestReleaseComesQuietAfterTheLastOfABurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p process
		r := p.releaser()
		for range 5 { // a burst: a sync every 3 s, each allocating
			p.allocated.Add(800)
			r.Done()
			time.Sleep(3 * time.Second)
			synctest.Wait()
			if n := p.freed.Load(); n != 0 {
				t.Fatalf("released %d times during the burst", n)
			}
		}
		time.Sleep(7 * time.Second) // 10 s after the last Done
		synctest.Wait()
		if n := p.freed.Load(); n != 1 {
			t.Fatalf("released %d times after the burst, want once", n)
		}
		r.Done() // nothing allocated since
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := p.freed.Load(); n != 1 {
			t.Fatalf("released %d times with nothing allocated since the last release, want still once", n)
		}
	})
}

func TestLittleWorkIsNotReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p process
		r := p.releaser()
		p.allocated.Add(999)
		r.Done()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := p.freed.Load(); n != 0 {
			t.Fatalf("released %d times below Above", n)
		}
		p.allocated.Add(1) // now Above since the start
		r.Done()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := p.freed.Load(); n != 1 {
			t.Fatalf("released %d times at Above, want once", n)
		}
	})
}

func TestStopCancelsTheReleaseToCome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p process
		r := p.releaser()
		p.allocated.Add(5000)
		r.Done()
		r.Stop()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := p.freed.Load(); n != 0 {
			t.Fatalf("released %d times after Stop", n)
		}
		// Work after Stop (a scrape while the agent shuts down) brings no release.
		p.allocated.Add(5000)
		r.Done()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := p.freed.Load(); n != 0 {
			t.Fatalf("released %d times for work after Stop", n)
		}
	})
}

// The default counter is the runtime's: it sees what is allocated.
func TestDefaultCounterSeesAllocations(t *testing.T) {
	before := allocated()
	kept := make([][]byte, 0, 64)
	for range 64 {
		kept = append(kept, make([]byte, 64<<10))
	}
	if got := allocated() - before; got < 4<<20 {
		t.Fatalf("the counter grew by %d bytes after 4 MiB were allocated", got)
	}
	if len(kept) != 64 {
		t.Fatal("allocations lost")
	}
}

func TestWorkThatNeverPausesIsReleasedEveryMaxWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p process
		r := p.releaser() // Quiet 10 s, MaxWait 1 min
		start := time.Now()
		var at []time.Duration
		for range 100 { // a sync every 3 s for 5 minutes, each allocating
			p.allocated.Add(2000)
			r.Done()
			time.Sleep(3 * time.Second)
			synctest.Wait()
			if n := int(p.freed.Load()); n > len(at) {
				at = append(at, time.Since(start).Round(time.Second))
			}
		}
		if len(at) < 4 || len(at) > 6 {
			t.Fatalf("released at %v in 5 minutes of work, want about once a minute", at)
		}
		for i := 1; i < len(at); i++ {
			if d := at[i] - at[i-1]; d > time.Minute+3*time.Second {
				t.Fatalf("released at %v: %v between two releases, want at most a minute", at, d)
			}
		}
	})
}

func TestAScrapeIsWorkToo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p process
		r := p.releaser()
		h := r.After(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			p.allocated.Add(5000) // the exposition's garbage
			_, _ = w.Write([]byte("metrics"))
		}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if w.Body.String() != "metrics" {
			t.Fatalf("served %q", w.Body.String())
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := p.freed.Load(); n != 1 {
			t.Fatalf("released %d times after a scrape, want once", n)
		}
	})
}
