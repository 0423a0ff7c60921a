package refresher_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/agent/refresher"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/secrets"
)

type registries []*v1alpha1.Registry

func (r *registries) List() ([]*v1alpha1.Registry, error) { return *r, nil }

// listing lists regs, or answers err when it is set (the node Secret not readable).
type listing struct {
	regs *registries
	err  *error
}

func (l listing) List() ([]*v1alpha1.Registry, error) {
	if *l.err != nil {
		return nil, *l.err
	}
	return l.regs.List()
}

// resolver answers from a map: credentials, or an error.
type resolver struct {
	creds     map[string]userpass.Credentials
	errs      map[string]error
	forgotten []string
}

func (f *resolver) Resolve(_ context.Context, reg *v1alpha1.Registry) (userpass.Credentials, error) {
	if err := f.errs[reg.Name]; err != nil {
		return userpass.Credentials{}, err
	}
	return f.creds[reg.Name], nil
}
func (f *resolver) NextRefresh(string) time.Time { return time.Time{} }
func (f *resolver) Forget(name string)           { f.forgotten = append(f.forgotten, name) }

type metrics struct {
	refresher.NopMetrics
	mu      sync.Mutex // Refresh is called from parallel resolutions
	writes  int
	results []string
}

func (m *metrics) CacheWrite(err error) {
	if err == nil {
		m.writes++
	}
}
func (m *metrics) Refresh(_, result string) {
	m.mu.Lock()
	m.results = append(m.results, result)
	m.mu.Unlock()
}

type sink struct{ calls [][]nodecache.Entry }

func (s *sink) Write(_ context.Context, e []nodecache.Entry) error {
	s.calls = append(s.calls, e)
	return nil
}

func registry(name string, scope v1alpha1.Scope, hosts ...string) *v1alpha1.Registry {
	return &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.RegistrySpec{Hosts: hosts, Scope: scope,
			Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: "pullpass", Name: name}}},
	}
}

type fixture struct {
	regs    registries
	listErr error
	res     *resolver
	m       *metrics
	sink    *sink
	now     time.Time
	cache   string
	r       *refresher.Refresher
}

func newFixture(t *testing.T, cache string) *fixture {
	t.Helper()
	f := &fixture{res: &resolver{creds: map[string]userpass.Credentials{}, errs: map[string]error{}}, m: &metrics{}, sink: &sink{},
		now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), cache: cache}
	if f.cache == "" {
		f.cache = filepath.Join(t.TempDir(), "credentials.json")
	}
	r, err := refresher.New(refresher.Config{Registries: listing{&f.regs, &f.listErr}, Resolver: f.res, CachePath: f.cache, Metrics: f.m,
		Sinks: []refresher.Sink{f.sink}, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	return f
}

func (f *fixture) cached(t *testing.T) map[string]nodecache.Entry {
	t.Helper()
	file, err := nodecache.Read(f.cache)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]nodecache.Entry{}
	for _, e := range file.Entries {
		out[e.Registry] = e
	}
	return out
}

func TestOnlyClusterScopeIsCachedAndUnchangedIsNotRewritten(t *testing.T) {
	f := newFixture(t, "")
	f.regs = registries{registry("node", v1alpha1.ScopeCluster, "node.example.com"), registry("ns", v1alpha1.ScopeNamespaced, "ns.example.com"),
		registry("default-scope", "", "d.example.com")}
	for _, n := range []string{"node", "ns", "default-scope"} {
		f.res.creds[n] = userpass.Credentials{Username: "u-" + n, Password: "p-" + n}
	}
	if f.r.Synced() {
		t.Fatal("synced before any sync")
	}
	f.r.Sync(context.Background())
	if !f.r.Synced() {
		t.Fatal("not synced after a sync")
	}
	got := f.cached(t)
	if len(got) != 1 || got["node"].Password != "p-node" || !slices.Equal(got["node"].Hosts, []string{"node.example.com"}) {
		t.Fatalf("cache = %v, want only the Cluster-scope registry", got)
	}
	f.r.Sync(context.Background())
	f.r.Sync(context.Background())
	if f.m.writes != 1 {
		t.Fatalf("%d cache writes for unchanged credentials, want 1", f.m.writes)
	}
	if len(f.sink.calls) != 1 {
		t.Fatalf("sinks called %d times, want once", len(f.sink.calls))
	}
	f.res.creds["node"] = userpass.Credentials{Username: "u-node", Password: "rotated"}
	f.r.Sync(context.Background())
	if got := f.cached(t)["node"].Password; got != "rotated" || f.m.writes != 2 {
		t.Fatalf("after rotation: password %q, %d writes; want the new one, 2 writes", got, f.m.writes)
	}
}

func TestFailingSourceKeepsLastGoodUntilExpiry(t *testing.T) {
	f := newFixture(t, "")
	f.regs = registries{registry("ecr", v1alpha1.ScopeCluster, "123.dkr.ecr.eu-west-1.amazonaws.com")}
	expires := f.now.Add(time.Hour)
	f.res.creds["ecr"] = userpass.Credentials{Username: "AWS", Password: "token-1", ExpiresAt: expires}
	f.r.Sync(context.Background())

	f.res.errs["ecr"] = &ecr.Error{Reason: ecr.ReasonThrottled, Err: errors.New("rate exceeded")}
	f.now = f.now.Add(30 * time.Minute)
	next := f.r.Sync(context.Background())
	if got := f.cached(t)["ecr"]; got.Password != "token-1" {
		t.Fatalf("a failing source dropped its last good token: %v", got)
	}
	if next.After(expires) {
		t.Fatalf("next sync at %v, after the token's expiry %v (when it must be dropped)", next, expires)
	}
	// A restarted agent serves the last good token too.
	g := newFixture(t, f.cache)
	g.now, g.regs, g.res.errs["ecr"] = f.now, f.regs, f.res.errs["ecr"]
	g.r.Sync(context.Background())
	if got := g.cached(t)["ecr"]; got.Password != "token-1" {
		t.Fatalf("a restarted agent dropped the last good token: %v", got)
	}

	f.now = expires.Add(time.Second)
	f.r.Sync(context.Background())
	if got, ok := f.cached(t)["ecr"]; ok {
		t.Fatalf("an expired token is still cached: %v", got)
	}
	if !slices.Contains(f.m.results, refresher.ResultError) {
		t.Fatalf("results %v: the failure was not counted", f.m.results)
	}
}

func TestStaleTokenIsServedAndCounted(t *testing.T) {
	f := newFixture(t, "")
	f.regs = registries{registry("ecr", v1alpha1.ScopeCluster, "123.dkr.ecr.eu-west-1.amazonaws.com")}
	f.res.creds["ecr"] = userpass.Credentials{Username: "AWS", Password: "token-1", ExpiresAt: f.now.Add(time.Hour)}
	f.r.Sync(context.Background())
	// The resolver itself returns the last good token with a StaleError.
	f.res.errs["ecr"] = nil
	stale := &staleResolver{resolver: f.res}
	r, _ := refresher.New(refresher.Config{Registries: listing{&f.regs, &f.listErr}, Resolver: stale, CachePath: f.cache, Metrics: f.m, Now: func() time.Time { return f.now }})
	r.Sync(context.Background())
	if got := f.cached(t)["ecr"]; got.Password != "token-1" {
		t.Fatalf("stale token not served: %v", got)
	}
	if f.m.results[len(f.m.results)-1] != refresher.ResultStale {
		t.Fatalf("results %v, want the last one stale", f.m.results)
	}
}

type staleResolver struct{ *resolver }

func (s *staleResolver) Resolve(ctx context.Context, reg *v1alpha1.Registry) (userpass.Credentials, error) {
	c, _ := s.resolver.Resolve(ctx, reg)
	return c, &credentials.StaleError{Err: errors.New("throttled")}
}

func TestGoneSourceAndGoneRegistryAreDroppedAtOnce(t *testing.T) {
	f := newFixture(t, "")
	f.regs = registries{registry("a", v1alpha1.ScopeCluster, "a.example.com"), registry("b", v1alpha1.ScopeCluster, "b.example.com")}
	f.res.creds["a"] = userpass.Credentials{Username: "u", Password: "a"}
	f.res.creds["b"] = userpass.Credentials{Username: "u", Password: "b"}
	f.r.Sync(context.Background())
	if len(f.cached(t)) != 2 {
		t.Fatalf("cache %v, want both", f.cached(t))
	}
	f.res.errs["a"] = apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, "a")
	f.regs = f.regs[:1] // b deleted
	f.r.Sync(context.Background())
	if got := f.cached(t); len(got) != 0 {
		t.Fatalf("cache %v, want empty: a's source is gone, b is gone", got)
	}
	if !slices.Contains(f.res.forgotten, "b") {
		t.Fatalf("the removed registry's token was not forgotten: %v", f.res.forgotten)
	}
	// A source that cannot be read now (not NotFound) keeps static credentials.
	f.res.errs["a"] = nil
	f.r.Sync(context.Background())
	f.res.errs["a"] = fmt.Errorf("registry a: source secret pullpass/a: %w", apierrors.NewServiceUnavailable("etcd leader changed"))
	f.r.Sync(context.Background())
	if got := f.cached(t)["a"]; got.Password != "a" {
		t.Fatalf("a transient error dropped static credentials: %v", got)
	}
}

// An administrator withdraws a leaked credential by changing its source (issue #24): emptied,
// malformed, moved to a namespace pullpass may not read, pointed at one of pullpass's own
// Secrets. The node stops serving it at the next sync, and so does a restarted agent.
func TestSourceThatSaysSomethingElseWithdrawsCredentials(t *testing.T) {
	for name, err := range map[string]error{
		"emptied":   errors.New(`registry a: source secret pullpass/a has no "password"`),
		"moved":     &credentials.NamespaceNotAllowedError{Namespace: "elsewhere", Allowed: []string{"pullpass"}},
		"forbidden": apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "a", errors.New("no")),
		"own":       fmt.Errorf("registry a: %w", secrets.ErrNotASource),
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, "")
			f.regs = registries{registry("a", v1alpha1.ScopeCluster, "a.example.com")}
			f.res.creds["a"] = userpass.Credentials{Username: "u", Password: "leaked"}
			f.r.Sync(context.Background())
			f.res.errs["a"] = err
			f.r.Sync(context.Background())
			if got, ok := f.cached(t)["a"]; ok {
				t.Fatalf("still served after the source changed (%v): %v", err, got)
			}
			g := newFixture(t, f.cache)
			g.regs, g.res.errs["a"] = f.regs, err
			g.r.Sync(context.Background())
			if got, ok := g.cached(t)["a"]; ok {
				t.Fatalf("a restarted agent serves it again: %v", got)
			}
		})
	}
}

// A source that cannot be read keeps static credentials for KeepLastGood, counted from the
// first failure, then no longer.
func TestUnreadableSourceKeepsStaticCredentialsForABoundedTime(t *testing.T) {
	f := newFixture(t, "")
	f.regs = registries{registry("a", v1alpha1.ScopeCluster, "a.example.com")}
	f.res.creds["a"] = userpass.Credentials{Username: "u", Password: "p"}
	f.r.Sync(context.Background())
	f.res.errs["a"] = context.DeadlineExceeded
	f.r.Sync(context.Background())
	f.now = f.now.Add(59 * time.Minute)
	f.r.Sync(context.Background())
	if got := f.cached(t)["a"]; got.Password != "p" {
		t.Fatalf("dropped within the hour: %v", got)
	}
	f.now = f.now.Add(2 * time.Minute)
	f.r.Sync(context.Background())
	if got, ok := f.cached(t)["a"]; ok {
		t.Fatalf("still served an hour after its source became unreadable: %v", got)
	}
}

func TestScopeChangeTakesCredentialsOff(t *testing.T) {
	f := newFixture(t, "")
	r := registry("a", v1alpha1.ScopeCluster, "a.example.com")
	f.regs = registries{r}
	f.res.creds["a"] = userpass.Credentials{Username: "u", Password: "a"}
	f.r.Sync(context.Background())
	r2 := r.DeepCopy()
	r2.Spec.Scope = v1alpha1.ScopeNamespaced
	f.regs = registries{r2}
	f.r.Sync(context.Background())
	if got := f.cached(t); len(got) != 0 {
		t.Fatalf("cache %v after the registry became Namespaced, want empty", got)
	}
}

// The node cache holds canonical host patterns: the plugin answers the kubelet with them as keys
// and the installer writes them as matchImages, so Docker Hub written as its legacy URL is served
// under docker.io, the key the kubelet matches Docker Hub images with.
func TestCacheHoldsCanonicalHosts(t *testing.T) {
	f := newFixture(t, "")
	f.regs = registries{registry("hub", v1alpha1.ScopeCluster, "https://index.docker.io/v1/", "registry-1.docker.io", "https://localhost:5443/")}
	f.res.creds["hub"] = userpass.Credentials{Username: "u", Password: "p"}
	f.r.Sync(context.Background())
	if got := f.cached(t)["hub"].Hosts; !slices.Equal(got, []string{"docker.io", "localhost:5443"}) {
		t.Fatalf("cached hosts %v, want [docker.io localhost:5443]", got)
	}
}

// While the registries cannot be listed (the node Secret not readable), the cache keeps what it
// holds: each entry until it expires, and at most KeepLastGood (1 h) from the first failure;
// the grants file is not touched. Listed again, the registries are served as they are.
func TestUnlistableRegistriesKeepTheCacheForABoundedTime(t *testing.T) {
	f := newFixture(t, "")
	f.regs = registries{registry("a", v1alpha1.ScopeCluster, "a.example.com"), registry("b", v1alpha1.ScopeCluster, "b.example.com")}
	f.res.creds["a"] = userpass.Credentials{Username: "u", Password: "pa"}
	f.res.creds["b"] = userpass.Credentials{Username: "u", Password: "pb", ExpiresAt: f.now.Add(30 * time.Minute)}
	f.r.Sync(context.Background())
	f.listErr = errors.New("node secret pullpass/pullpass-node-credentials is not readable yet")
	steps := []struct {
		after time.Duration
		want  []string
	}{{0, []string{"a", "b"}}, {29 * time.Minute, []string{"a", "b"}}, {time.Minute, []string{"a"}}, {29 * time.Minute, []string{"a"}}, {time.Minute, nil}}
	for _, step := range steps {
		f.now = f.now.Add(step.after)
		next := f.r.Sync(context.Background())
		if got := slices.Sorted(maps.Keys(f.cached(t))); !slices.Equal(got, step.want) {
			t.Fatalf("at %s the cache holds %v, want %v", f.now.Format(time.TimeOnly), got, step.want)
		}
		if len(step.want) > 0 && next.After(f.now.Add(30*time.Minute)) {
			t.Errorf("at %s the next sync is at %s: past what the cache holds expires", f.now.Format(time.TimeOnly), next.Format(time.TimeOnly))
		}
	}
	f.listErr = nil
	f.res.creds["b"] = userpass.Credentials{Username: "u", Password: "pb2"}
	f.r.Sync(context.Background())
	if got := f.cached(t); got["a"].Password != "pa" || got["b"].Password != "pb2" {
		t.Fatalf("listed again the cache holds %v, want a and b as resolved", got)
	}
}

// An agent that restarts while the registries cannot be listed serves what it wrote before,
// and is ready: a node keeps pulling while the controller is not elected yet.
func TestRestartWithUnlistableRegistriesServesTheCache(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "credentials.json")
	before := newFixture(t, cache)
	before.regs = registries{registry("a", v1alpha1.ScopeCluster, "a.example.com")}
	before.res.creds["a"] = userpass.Credentials{Username: "u", Password: "pa"}
	before.r.Sync(context.Background())

	f := newFixture(t, cache)
	f.listErr = errors.New("node secret pullpass/pullpass-node-credentials is not readable yet")
	f.r.Sync(context.Background())
	if got := f.cached(t)["a"]; got.Password != "pa" || !f.r.Synced() {
		t.Fatalf("after a restart the cache holds %v (synced %t), want a's last good credentials", got, f.r.Synced())
	}
	if len(f.sink.calls) != 1 || len(f.sink.calls[0]) != 1 || f.sink.calls[0][0].Registry != "a" {
		t.Fatalf("sinks got %v, want a's entry once", f.sink.calls)
	}
}

// A sync that changes nothing does not read the cache back (at 1,000 registries that was a
// tenth of its allocations), yet a cache removed, replaced or edited by hand is written again.
func TestCacheChangedByHandIsWrittenAgain(t *testing.T) {
	f := newFixture(t, "")
	f.regs = registries{registry("node", v1alpha1.ScopeCluster, "node.example.com")}
	f.res.creds["node"] = userpass.Credentials{Username: "u", Password: "p"}
	f.r.Sync(context.Background())
	// sameSize is the cache with its password changed to another of the same length.
	sameSize := func() []byte {
		b, err := os.ReadFile(f.cache)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Replace(b, []byte(`"password":"p"`), []byte(`"password":"x"`), 1)
	}
	for _, change := range []struct {
		what string
		do   func() error
	}{
		{"removed", func() error { return os.Remove(f.cache) }},
		{"edited in place", func() error { return os.WriteFile(f.cache, []byte(`{"version":1,"entries":[]}`), 0o600) }},
		{"replaced", func() error {
			tmp := f.cache + ".by-hand"
			if err := os.WriteFile(tmp, []byte(`{"version":1,"entries":[]}`), 0o600); err != nil {
				return err
			}
			return os.Rename(tmp, f.cache)
		}},
		{"edited in place, same size", func() error { return os.WriteFile(f.cache, sameSize(), 0o600) }},
		{"replaced, same size", func() error {
			tmp := f.cache + ".by-hand"
			if err := os.WriteFile(tmp, sameSize(), 0o600); err != nil {
				return err
			}
			return os.Rename(tmp, f.cache)
		}},
		{"edited in place, same size, modification time set back", func() error {
			fi, err := os.Stat(f.cache)
			if err != nil {
				return err
			}
			if err := os.WriteFile(f.cache, sameSize(), 0o600); err != nil {
				return err
			}
			return os.Chtimes(f.cache, fi.ModTime(), fi.ModTime())
		}},
	} {
		writes := f.m.writes
		if err := change.do(); err != nil {
			t.Fatal(err)
		}
		f.r.Sync(context.Background())
		if got := f.cached(t)["node"]; got.Password != "p" || f.m.writes != writes+1 {
			t.Fatalf("cache %s: entry %v after a sync, %d writes; want it written again", change.what, got, f.m.writes-writes)
		}
	}
	writes := f.m.writes
	f.r.Sync(context.Background())
	if f.m.writes != writes {
		t.Fatal("an unchanged cache was written again")
	}
}

// blockingResolver resolves "slow" only once released, and counts the resolutions at once.
type blockingResolver struct {
	resolver
	release       chan struct{}
	mu            sync.Mutex
	running, most int
	done          chan string
}

func (b *blockingResolver) Resolve(ctx context.Context, reg *v1alpha1.Registry) (userpass.Credentials, error) {
	b.mu.Lock()
	b.running++
	b.most = max(b.most, b.running)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.running--
		b.mu.Unlock()
		b.done <- reg.Name
	}()
	if reg.Name == "slow" {
		<-b.release
	}
	return userpass.Credentials{Username: "u", Password: "p-" + reg.Name}, nil
}

func TestSlowSourceDoesNotHoldUpTheOthers(t *testing.T) {
	const n, parallelism = 12, 3
	res := &blockingResolver{release: make(chan struct{}), done: make(chan string, n)}
	regs := registries{registry("slow", v1alpha1.ScopeCluster, "slow.example.com")}
	for i := range n - 1 {
		name := fmt.Sprintf("r%02d", i)
		regs = append(regs, registry(name, v1alpha1.ScopeCluster, name+".example.com"))
	}
	r, err := refresher.New(refresher.Config{Registries: &regs, Resolver: res, CachePath: filepath.Join(t.TempDir(), "c.json"), Parallelism: parallelism})
	if err != nil {
		t.Fatal(err)
	}
	synced := make(chan struct{})
	go func() { r.Sync(context.Background()); close(synced) }()
	deadline := time.After(time.Minute) // a pool that waited for the slow one would hang here
	for range n - 1 {                   // every other registry resolves while the slow one hangs
		select {
		case name := <-res.done:
			if name == "slow" {
				t.Fatal("the slow source was resolved before its release")
			}
		case <-deadline:
			close(res.release)
			t.Fatal("the other registries were not resolved while the slow source hung")
		}
	}
	close(res.release)
	<-synced
	if res.most > parallelism {
		t.Fatalf("%d resolutions at once, want at most %d", res.most, parallelism)
	}
	if len(res.done) != 1 {
		t.Fatalf("%d resolutions left after the sync, want the slow one", len(res.done))
	}
}
