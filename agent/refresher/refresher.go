// Package refresher keeps the node cache filled with the credentials of every Cluster-scope
// registry, and the grants file (agent/nodegrant) with those of Namespaced registries delivered by
// the node and the namespaces their selectors select now: it resolves them, refreshes them before
// they expire and rewrites each file (atomically) only when something in it changed. A source that
// fails keeps its last good credentials until they expire; a source that is gone (or a registry
// that is no longer served by the node) takes them out at once, and a namespace that loses its
// label leaves the grant at the next sync (a namespace event kicks one).
package refresher

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/agent/nodegrant"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/nodeaccess"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

// Namespaces lists the cached Namespace objects.
type Namespaces interface {
	List() []*corev1.Namespace
}

// Registries lists the registries the node serves (agent/nodecreds: from the node Secret). An
// error says they cannot be listed now, never that there are none: with it come the registries
// last listed (served as sources that cannot be read), or none (the cache keeps what it holds).
type Registries interface {
	List() ([]*v1alpha1.Registry, error)
}

// Resolver gets a registry's credentials (credentials.Resolver).
type Resolver interface {
	Resolve(ctx context.Context, reg *v1alpha1.Registry) (userpass.Credentials, error)
	NextRefresh(name string) time.Time
	Forget(name string)
}

// Sink receives what each sync produced: the legacy docker config writer, in legacy mode.
type Sink interface {
	Write(ctx context.Context, entries []nodecache.Entry) error
}

// Config configures a Refresher.
type Config struct {
	Registries Registries
	Resolver   Resolver
	CachePath  string
	// Namespaces, when set, serves Namespaced registries delivered by the node: their grants
	// are written to nodegrant.Path(CachePath) for the plugin's service account token path.
	// Unset (legacy mode, which cannot tell pods apart), such registries are not served.
	Namespaces Namespaces
	// Sinks get every cache content that was written, Cluster entries and grants alike
	// (optional).
	Sinks []Sink
	// Resync bounds the time between two syncs (default 5 min); events and refresh times make
	// them sooner.
	Resync time.Duration
	// ResolveTimeout bounds one registry's resolution (default 30 s).
	ResolveTimeout time.Duration
	// KeepLastGood bounds how long a registry's last good credentials stay served while its
	// source cannot be read (credentials.Unavailable; default 1 h), counted from the first
	// failure this agent saw. A source that says something else (gone, emptied, moved where
	// the agent may not read it) withdraws them at once.
	KeepLastGood time.Duration
	// Parallelism is how many registries are resolved at once (default 8).
	Parallelism int
	Metrics     Metrics
	// AfterSync, when set, is called by Run after each sync (the agent gives the memory of a
	// burst of syncs back: agent/memrelease).
	AfterSync func()
	Logger    *slog.Logger
	Now       func() time.Time
}

// Refresher fills the cache.
type Refresher struct {
	cfg  Config
	kick chan struct{}
	last []nodecache.Entry // what the cache holds
	// cacheFile is the cache file as last written or read here: a sync that changes nothing
	// checks it is still that file (not removed or edited by hand) without reading it.
	cacheFile os.FileInfo
	// grants is what the grants file holds; grantsWritten whether it was written.
	grants        []nodegrant.Grant
	grantsWritten bool
	// loaded is whether last was read from the cache (once, at the first sync).
	loaded bool
	known  map[string]bool // the Cluster-scope registries of the last sync
	synced atomic.Bool     // a sync has finished
	sunk   bool            // whether the sinks have the current entries
	// failingSince is when each registry's source first could not be read, while it cannot.
	failingSince credentials.FailingSince
}

// New returns a Refresher.
func New(cfg Config) (*Refresher, error) {
	if cfg.Registries == nil || cfg.Resolver == nil || cfg.CachePath == "" {
		return nil, errors.New("invalid configuration: registries, resolver and cache path are required")
	}
	if cfg.Resync == 0 {
		cfg.Resync = 5 * time.Minute
	}
	if cfg.ResolveTimeout == 0 {
		cfg.ResolveTimeout = 30 * time.Second
	}
	if cfg.KeepLastGood == 0 {
		cfg.KeepLastGood = time.Hour
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = 8
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Refresher{cfg: cfg, kick: make(chan struct{}, 1)}, nil
}

// Synced reports whether a sync has finished (the agent's readiness).
func (r *Refresher) Synced() bool { return r.synced.Load() }

// Kick asks for a sync soon (a registry or a source changed). It never blocks.
func (r *Refresher) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run syncs at start, on every Kick, when a credential is due for refresh or expires, and at
// least every Resync, until ctx ends.
func (r *Refresher) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-timer.C:
		}
		next := r.Sync(ctx)
		if r.cfg.AfterSync != nil {
			r.cfg.AfterSync()
		}
		wait := max(next.Sub(r.cfg.Now()), time.Second) // a floor: a token due "now" is not fetched in a loop
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// Sync resolves every Cluster-scope registry, writes the cache if it changed and returns when
// the next sync is due.
func (r *Refresher) Sync(ctx context.Context) time.Time {
	defer r.synced.Store(true)
	now := r.cfg.Now()
	if !r.loaded {
		r.loaded, r.known = true, map[string]bool{}
		if n, err := nodecache.CleanTemp(r.cfg.CachePath); err != nil {
			r.cfg.Logger.Warn("cleaning temp files beside the cache", "err", err)
		} else if n > 0 {
			r.cfg.Logger.Info("removed temp files a stopped writer left", "count", n)
		}
		// A restarted agent starts from what it wrote: a source failing now keeps its
		// last good credentials.
		if f, err := nodecache.Read(r.cfg.CachePath); err == nil {
			r.last = f.Entries
			r.cacheFile = r.statCache()
		} else if !errors.Is(err, nodecache.ErrNoCache) {
			r.cfg.Logger.Warn("the cache could not be read; it will be rewritten", "err", err)
		}
		// The grants too: their hosts stay in the kubelet's config while nothing can be listed.
		if r.cfg.Namespaces != nil {
			if f, err := nodegrant.Read(nodegrant.Path(r.cfg.CachePath)); err == nil {
				r.grants = f.Grants
			}
		}
	}
	previous := make(map[string]int, len(r.last)) // index in r.last
	for i, e := range r.last {
		previous[e.Registry] = i
	}
	listed, err := r.cfg.Registries.List()
	from := SyncListed
	defer func() { r.cfg.Metrics.Synced(from) }() // after the files and the metrics (record)
	switch {
	case err != nil && listed == nil:
		from = SyncHeld
		return r.hold(ctx, now, err)
	case err != nil:
		// Each resolution says "not readable" too: the last good credentials stay, bounded.
		from = SyncLastListed
		r.cfg.Logger.Warn("the registries cannot be listed; serving those last listed", "registries", len(listed), "err", err)
	}
	next := now.Add(r.cfg.Resync)
	var entries []nodecache.Entry
	served := map[string]bool{}
	var regs []*v1alpha1.Registry
	for _, reg := range listed {
		if !nodeaccess.ServedByNode(reg) {
			continue
		}
		if perNamespace(reg) && r.cfg.Namespaces == nil {
			r.cfg.Logger.Debug("not serving a Namespaced registry: this mode cannot tell pods apart", "registry", reg.Name)
			continue
		}
		if err := registrytable.Validate(reg); err != nil {
			r.cfg.Logger.Warn("ignoring invalid registry", "registry", reg.Name, "err", err)
			continue
		}
		served[reg.Name] = true
		regs = append(regs, reg)
	}
	// Resolved by Parallelism workers: one slow source (an ECR endpoint timing out) does not
	// hold up the others. Workers, not a goroutine per registry: at 1,000 registries those were
	// a fifth of a sync's CPU, growing their stacks.
	results := make([]nodecache.Entry, len(regs))
	oks := make([]bool, len(regs))
	var taken atomic.Int64
	var wg sync.WaitGroup
	for range min(r.cfg.Parallelism, len(regs)) {
		wg.Go(func() {
			for n := int(taken.Add(1) - 1); n < len(regs); n = int(taken.Add(1) - 1) {
				var prev nodecache.Entry
				if i, ok := previous[regs[n].Name]; ok {
					prev = r.last[i]
				}
				results[n], oks[n] = r.resolve(ctx, regs[n], prev, now)
			}
		})
	}
	wg.Wait()
	var grants []nodegrant.Grant
	var namespaces []*corev1.Namespace
	if r.cfg.Namespaces != nil {
		namespaces = r.cfg.Namespaces.List()
	}
	for n, reg := range regs {
		if perNamespace(reg) {
			if g, ok := grant(reg, results[n], oks[n], namespaces); ok {
				grants = append(grants, g)
			}
		}
		if e := results[n]; oks[n] {
			if !perNamespace(reg) {
				entries = append(entries, e)
			}
			if !e.ExpiresAt.IsZero() && e.ExpiresAt.Before(next) {
				next = e.ExpiresAt // drop it when it expires
			}
		}
		if t := r.cfg.Resolver.NextRefresh(reg.Name); !t.IsZero() && t.Before(next) {
			next = t
		}
	}
	for name := range previous {
		r.known[name] = true
	}
	for name := range r.known {
		if !served[name] {
			r.cfg.Resolver.Forget(name)
			r.cfg.Metrics.Forget(name)
			r.cfg.Logger.Info("registry no longer served by the node", "registry", name)
		}
	}
	r.known = served
	r.failingSince.Forget(func(name string) bool { return served[name] })
	sort.Slice(entries, func(i, j int) bool { return entries[i].Registry < entries[j].Registry })
	sort.Slice(grants, func(i, j int) bool { return grants[i].Registry < grants[j].Registry })
	// The metrics say what the files hold, once they hold it.
	defer r.record(regs)
	grantsChanged, err := r.writeGrants(grants, now)
	if err != nil {
		r.cfg.Metrics.CacheWrite(err)
		r.cfg.Logger.Error("writing the grants file", "path", nodegrant.Path(r.cfg.CachePath), "err", err)
		return now.Add(5 * time.Second)
	}
	return r.commit(ctx, entries, now, next, grantsChanged)
}

// commit writes the cache when entries changed (or it is not there) and hands them to the sinks
// when it did, when they do not have them yet, or when resink says so (the grants changed).
func (r *Refresher) commit(ctx context.Context, entries []nodecache.Entry, now, next time.Time, resink bool) time.Time {
	if r.written() && slices.EqualFunc(entries, r.last, equalEntry) {
		if !r.sunk || resink {
			return r.sink(ctx, entries, next)
		}
		return next
	}
	if err := nodecache.Write(r.cfg.CachePath, nodecache.File{Entries: entries, WrittenAt: now}); err != nil {
		r.cfg.Metrics.CacheWrite(err)
		r.cfg.Logger.Error("writing the credential cache", "path", r.cfg.CachePath, "err", err)
		return now.Add(5 * time.Second)
	}
	r.cfg.Metrics.CacheWrite(nil)
	r.last, r.cacheFile = entries, r.statCache()
	r.cfg.Logger.Info("credential cache written", "path", r.cfg.CachePath, "registries", names(entries))
	return r.sink(ctx, entries, next)
}

// hold keeps what the cache and the grants file hold while the registries cannot be listed and
// never were since the agent started (a restarted agent before the node Secret is readable, a
// controller not elected yet): each entry, and each grant's credentials, while valid and within
// KeepLastGood of the first failure, as a source that cannot be read. A grant's namespaces stay
// as they were until the registries are listed.
func (r *Refresher) hold(ctx context.Context, now time.Time, why error) time.Time {
	next := now.Add(r.cfg.Resync)
	kept := func(registry string, expiresAt time.Time) bool {
		_, until, ok := r.keepLastGood(registry, expiresAt, now)
		if ok {
			next = earliest(next, until, expiresAt)
		}
		return ok
	}
	var entries []nodecache.Entry
	for _, e := range r.last {
		if !kept(e.Registry, e.ExpiresAt) {
			r.cfg.Logger.Error("no credentials for registry: the registries cannot be listed", "registry", e.Registry, "err", why)
			r.cfg.Metrics.Served(e.Registry, false, time.Time{})
			continue
		}
		entries = append(entries, e)
	}
	var grants []nodegrant.Grant
	for _, g := range r.grants {
		if g.Password != "" && !kept(g.Registry, g.ExpiresAt) {
			g.Username, g.Password, g.ExpiresAt = "", "", time.Time{}
			r.cfg.Metrics.Served(g.Registry, false, time.Time{})
		}
		if g.Password != "" || g.ECR != nil {
			grants = append(grants, g)
		}
	}
	if len(r.last) > 0 || len(r.grants) > 0 {
		r.cfg.Logger.Warn("the registries cannot be listed; serving the last good credentials", "registries", len(entries)+len(grants), "err", why)
	}
	grantsChanged, err := r.writeGrants(grants, now)
	if err != nil {
		r.cfg.Metrics.CacheWrite(err)
		r.cfg.Logger.Error("writing the grants file", "path", nodegrant.Path(r.cfg.CachePath), "err", err)
		return now.Add(5 * time.Second)
	}
	next = r.commit(ctx, entries, now, next, grantsChanged)
	r.cfg.Metrics.Entries(len(r.last))
	return next
}

// earliest is the earliest of t and the non-zero times of others.
func earliest(t time.Time, others ...time.Time) time.Time {
	for _, o := range others {
		if !o.IsZero() && o.Before(t) {
			t = o
		}
	}
	return t
}

// record sets the served metrics from what the files hold.
func (r *Refresher) record(regs []*v1alpha1.Registry) {
	expiresAt := make(map[string]time.Time, len(r.last)+len(r.grants)) // of each registry in a file
	for _, e := range r.last {
		expiresAt[e.Registry] = e.ExpiresAt
	}
	for _, g := range r.grants {
		if g.Password != "" || g.ECR != nil {
			expiresAt[g.Registry] = g.ExpiresAt
		}
	}
	for _, reg := range regs {
		at, ok := expiresAt[reg.Name]
		r.cfg.Metrics.Served(reg.Name, ok, at)
	}
	r.cfg.Metrics.Entries(len(r.last))
}

// sink hands the entries (and the grants' hosts) to the sinks: after every write, and once at
// start.
func (r *Refresher) sink(ctx context.Context, entries []nodecache.Entry, next time.Time) time.Time {
	r.sunk = false
	all := slices.Clone(entries)
	for _, g := range r.grants {
		all = append(all, nodecache.Entry{Registry: g.Registry, Hosts: g.Hosts})
	}
	for _, s := range r.cfg.Sinks {
		if err := s.Write(ctx, all); err != nil {
			r.cfg.Logger.Error("writing credentials", "err", err)
			return r.cfg.Now().Add(5 * time.Second)
		}
	}
	r.sunk = true
	return next
}

// writeGrants writes the grants file when it changed (or is not there), and says whether it did.
// With no Namespaces lister there is no grants file.
func (r *Refresher) writeGrants(grants []nodegrant.Grant, now time.Time) (bool, error) {
	if r.cfg.Namespaces == nil {
		return false, nil
	}
	path := nodegrant.Path(r.cfg.CachePath)
	if r.grantsWritten && slices.EqualFunc(grants, r.grants, equalGrant) {
		if _, err := os.Stat(path); err == nil {
			return false, nil
		}
	}
	if err := nodegrant.Write(path, nodegrant.File{Grants: grants, WrittenAt: now}); err != nil {
		return false, err
	}
	r.grants, r.grantsWritten = grants, true
	r.cfg.Logger.Info("grants file written", "path", path, "registries", grantNames(grants))
	return true, nil
}

// perNamespace reports whether a node-served registry is given to some namespaces only.
func perNamespace(reg *v1alpha1.Registry) bool {
	return reg.Spec.EffectiveScope() == v1alpha1.ScopeNamespaced
}

// grant is a Namespaced registry's grant: its credentials (if resolved) and the namespaces its
// selector selects among namespaces. An ECR registry is granted without credentials of the
// node's own, for service accounts that bring a role; any other needs credentials.
func grant(reg *v1alpha1.Registry, e nodecache.Entry, resolved bool, namespaces []*corev1.Namespace) (nodegrant.Grant, bool) {
	g := nodegrant.Grant{Registry: reg.Name, Hosts: cacheHosts(reg)}
	if resolved {
		g.Username, g.Password, g.ExpiresAt = e.Username, e.Password, e.ExpiresAt
	}
	if src := reg.Spec.Auth.ECR; src != nil {
		region := src.Region
		if region == "" {
			region = ecrRegion(reg)
		}
		g.ECR = &nodegrant.ECR{Region: region}
	}
	if !resolved && g.ECR == nil {
		return nodegrant.Grant{}, false
	}
	if sa := reg.Spec.ServiceAccounts; sa != nil {
		g.ServiceAccounts = &nodegrant.ServiceAccounts{Names: slices.Sorted(slices.Values(sa.Names)), Annotated: sa.Annotated}
	}
	if reg.Spec.NamespaceSelector == nil {
		g.AllNamespaces = true
		return g, true
	}
	sel, err := metav1.LabelSelectorAsSelector(reg.Spec.NamespaceSelector)
	if err != nil {
		return g, true // an invalid selector selects nothing (Validate refused it already)
	}
	g.Namespaces = []string{}
	for _, ns := range namespaces {
		if ns.DeletionTimestamp == nil && sel.Matches(labels.Set(ns.Labels)) {
			g.Namespaces = append(g.Namespaces, ns.Name)
		}
	}
	slices.Sort(g.Namespaces)
	return g, true
}

// ecrRegion is the region of a registry's first ECR host (as the resolver reads it).
func ecrRegion(reg *v1alpha1.Registry) string {
	for _, h := range cacheHosts(reg) {
		host, _, _ := strings.Cut(h, "/")
		if eh, err := ecr.ParseHost(host); err == nil {
			return eh.Region
		}
	}
	return ""
}

func equalGrant(a, b nodegrant.Grant) bool {
	return a.Registry == b.Registry && slices.Equal(a.Hosts, b.Hosts) && a.Username == b.Username &&
		a.Password == b.Password && a.ExpiresAt.Equal(b.ExpiresAt) && a.AllNamespaces == b.AllNamespaces &&
		slices.Equal(a.Namespaces, b.Namespaces) && reflect.DeepEqual(a.ServiceAccounts, b.ServiceAccounts) &&
		reflect.DeepEqual(a.ECR, b.ECR)
}

func grantNames(grants []nodegrant.Grant) []string {
	out := make([]string, len(grants))
	for i, g := range grants {
		out[i] = g.Registry
	}
	return out
}

// written reports whether the cache file is still the one last written or read here: not
// removed, replaced or edited by hand (its inode, size, modification and status change times).
func (r *Refresher) written() bool {
	now := r.statCache()
	return now != nil && r.cacheFile != nil && os.SameFile(now, r.cacheFile) &&
		now.Size() == r.cacheFile.Size() && now.ModTime().Equal(r.cacheFile.ModTime()) &&
		changeTime(now) == changeTime(r.cacheFile)
}

// statCache is the cache file's FileInfo, nil if it is not there.
func (r *Refresher) statCache() os.FileInfo {
	fi, err := os.Stat(r.cfg.CachePath)
	if err != nil {
		return nil
	}
	return fi
}

// resolve gets one registry's entry. On failure it keeps the previous entry while that is still
// valid, except when the source is gone.
func (r *Refresher) resolve(ctx context.Context, reg *v1alpha1.Registry, prev nodecache.Entry, now time.Time) (nodecache.Entry, bool) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ResolveTimeout)
	defer cancel()
	c, err := r.cfg.Resolver.Resolve(ctx, reg)
	var stale *credentials.StaleError
	switch {
	case err == nil:
		r.cfg.Metrics.Refresh(reg.Name, ResultSuccess)
	case errors.As(err, &stale):
		r.cfg.Metrics.Refresh(reg.Name, ResultStale)
		r.cfg.Logger.Warn("refresh failing; serving the last good token until it expires", "registry", reg.Name, "expiresAt", c.ExpiresAt, "err", err)
	default:
		r.cfg.Metrics.Refresh(reg.Name, ResultError)
		if !credentials.Unavailable(err) {
			// The source says something else now: what it said before is withdrawn.
			r.failingSince.Record(reg.Name, time.Time{})
			if prev.Registry != "" {
				r.cfg.Logger.Warn("source no longer gives credentials; withdrawing the last ones", "registry", reg.Name, "err", err)
			} else {
				r.cfg.Logger.Error("no credentials for registry", "registry", reg.Name, "err", err)
			}
			return nodecache.Entry{}, false
		}
		since, until, keep := r.keepLastGood(reg.Name, prev.ExpiresAt, now)
		if keep && prev.Registry != "" {
			prev.Hosts = cacheHosts(reg)
			r.cfg.Logger.Warn("source unavailable; serving the last good credentials", "registry", reg.Name, "expiresAt", prev.ExpiresAt,
				"failingSince", since, "until", until, "err", err)
			return prev, true
		}
		r.cfg.Logger.Error("no credentials for registry", "registry", reg.Name, "failingSince", since, "err", err)
		return nodecache.Entry{}, false
	}
	r.failingSince.Record(reg.Name, time.Time{})
	return nodecache.Entry{Registry: reg.Name, Hosts: cacheHosts(reg), Username: c.Username, Password: c.Password, ExpiresAt: c.ExpiresAt}, true
}

// keepLastGood records that a registry's source cannot be read now, and says whether its last good
// credentials (expiring at expiresAt; zero: never) are still served: while they are valid and
// within KeepLastGood of the first failure, until then. The one rule of resolve and hold.
func (r *Refresher) keepLastGood(registry string, expiresAt, now time.Time) (since, until time.Time, ok bool) {
	since = r.failingSince.Record(registry, now)
	until = since.Add(r.cfg.KeepLastGood)
	return since, until, now.Before(until) && (expiresAt.IsZero() || expiresAt.After(now))
}

// cacheHosts are a registry's host patterns in their canonical form ("https://index.docker.io/v1/"
// is docker.io): the plugin answers the kubelet with them as keys, the installer writes them as
// matchImages and the legacy writer as config.json keys, all read by the kubelet as they are.
func cacheHosts(reg *v1alpha1.Registry) []string {
	out := make([]string, 0, len(reg.Spec.Hosts))
	for _, h := range reg.Spec.Hosts {
		if c, err := match.Canonical(h); err == nil {
			h = c
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

func equalEntry(a, b nodecache.Entry) bool {
	return a.Registry == b.Registry && slices.Equal(a.Hosts, b.Hosts) && a.Username == b.Username &&
		a.Password == b.Password && a.ExpiresAt.Equal(b.ExpiresAt)
}

func names(entries []nodecache.Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Registry
	}
	return out
}
