// Package nodecreds reads what the node agent serves from the node Secret the controller writes
// (pkg/nodesecret, webhook/nodecreds): the node-served registries, their specs and credentials.
// One informer per shard name, each narrowed to its name by a field selector, which is all the
// agents' Role allows; the agent watches no Registry. The node Secret not listed yet, or not
// written yet, or written by an older controller (no format key, entries without specs), is "not
// readable" (the refresher keeps the last good credentials), never "gone": only a registry
// missing from a node Secret that is there takes its credentials off the node.
package nodecreds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	watchapi "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/nodesecret"
)

// Config configures a Reader.
type Config struct {
	Client    kubernetes.Interface
	Namespace string // pullpass's namespace, where the node Secrets are
	// OnChange is called when a node Secret changes, appears or goes.
	OnChange func()
	Logger   *slog.Logger
}

// Reader holds the node Secrets' informers.
type Reader struct {
	cfg    Config
	shards []*shard

	mu       sync.Mutex
	versions [nodesecret.MaxShards]string // the shards' resourceVersions index was built from
	built    bool                         // index was built, from versions
	index    index
	// listable is the last index List could list from (its shards are the informers' own):
	// while the node Secret cannot be read, the registries the node served stay known.
	listable *index
}

type shard struct {
	name     string
	key      string // namespace/name, its key in the informer's store
	informer cache.SharedIndexInformer
	mu       sync.Mutex
	lastErr  error // why the last list or watch failed
}

// index is the node Secrets' entries over the shards that are there, as bytes: each is decoded
// when asked for: a registry's credentials once a sync, all specs for List, and all of
// them once a write of the Secret (the AWS keys, the entries of an older controller). Decoded
// and kept, the entries (their specs, strings, maps) held several times the heap of their
// bytes, on every node (docs/benchmarks.md).
type index struct {
	shards  []*rawShard
	awsKeys map[nodesecret.SourceRef]nodesecret.Entry
	// format: the first shard says its format is this version's (an older controller's writer
	// rewrites a shard's data from its own entries: its write drops the key). noSpec counts
	// entries without a spec all the same: during the first write of this version's controller,
	// shard 0 is rewritten before the others, which still hold the older entries.
	format bool
	noSpec int
}

// entry is a registry's entry, or why it does not decode. An entry moving between shards is
// briefly in two: the first wins.
func (idx index) entry(name string) (nodesecret.Entry, bool, error) {
	for _, s := range idx.shards {
		if v, ok := s.entries[name]; ok {
			e, err := nodesecret.DecodeCredentials(name, v)
			return e, err == nil, err
		}
	}
	return nodesecret.Entry{}, false, nil
}

// rawShard is what the informer of a shard stores: its entries' bytes, as the Secret held them,
// and nothing else of it (no managed fields, no annotations).
type rawShard struct {
	metav1.TypeMeta
	metav1.ObjectMeta // name, namespace and resourceVersion only
	entries           map[string][]byte
	format            string // nodesecret.FormatKey's value
}

// DeepCopyObject makes it a runtime.Object for whatever in client-go asks one of a store's
// objects; a shard is never changed once made, so a shallow copy is a deep one.
func (d *rawShard) DeepCopyObject() runtime.Object {
	c := *d
	return &c
}

// stripShard is the shards' informers' transform.
func stripShard(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil // a tombstone, or a shard stripped already
	}
	d := &rawShard{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion}, entries: s.Data}
	if v, ok := d.entries[nodesecret.FormatKey]; ok {
		d.format = string(v)
		delete(d.entries, nodesecret.FormatKey) // the transform owns the Secret it was given
	}
	return d, nil
}

// New returns a Reader; Run runs it.
func New(cfg Config) (*Reader, error) {
	if cfg.Client == nil || cfg.Namespace == "" {
		return nil, errors.New("invalid configuration: client and namespace are required")
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func() {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Reader{cfg: cfg}
	api := cfg.Client.CoreV1().Secrets(cfg.Namespace)
	list := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, o) }
	watch := func(ctx context.Context, o metav1.ListOptions) (watchapi.Interface, error) {
		w, err := api.Watch(ctx, o)
		if err != nil {
			return nil, err
		}
		return releaseAfterLargeRewrite(w, largeShard), nil
	}
	for _, name := range nodesecret.ShardNames() {
		s := &shard{name: name, key: cfg.Namespace + "/" + name, informer: cache.NewSharedIndexInformer(OneByName(name, list, watch), &corev1.Secret{}, 10*time.Minute, cache.Indexers{})}
		_ = s.informer.SetTransform(stripShard)
		changed := func(any) { cfg.OnChange() }
		_, _ = s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: changed, DeleteFunc: changed, UpdateFunc: func(o, n any) {
			if rewritten(o, n) {
				changed(n)
			}
		}})
		_ = s.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			s.setErr(err)
			cfg.Logger.Warn("cannot watch the node secret", "secret", cfg.Namespace+"/"+name, "err", err)
		})
		r.shards = append(r.shards, s)
	}
	return r, nil
}

// rewritten tells an update of a shard from the informer's resync (every 10 minutes), which
// is no change: a sync for it would decode every entry on every node for nothing (the
// refresher resyncs on its own clock). An object without a resourceVersion counts as changed.
func rewritten(old, updated any) bool {
	o, n := resourceVersion(old), resourceVersion(updated)
	return o == "" || o != n
}

// resourceVersion is an informer object's resourceVersion ("" if it has none).
func resourceVersion(obj any) string {
	if m, err := meta.Accessor(obj); err == nil {
		return m.GetResourceVersion()
	}
	return ""
}

func (s *shard) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// Run runs the informers until ctx ends; it returns at once.
func (r *Reader) Run(ctx context.Context) {
	for _, s := range r.shards {
		go s.informer.RunWithContext(ctx)
	}
}

// HasSynced reports whether every shard has been listed once.
func (r *Reader) HasSynced() bool {
	for _, s := range r.shards {
		if !s.informer.HasSynced() {
			return false
		}
	}
	return true
}

// NotReadableError says the node Secret cannot be read yet: not listed yet (the API server
// unreachable, the Role missing), or not written yet by the controller. The last good
// credentials stay meanwhile.
type NotReadableError struct {
	Namespace, Name string
	Err             error
}

func (e *NotReadableError) Error() string {
	msg := fmt.Sprintf("node secret %s/%s is not readable yet", e.Namespace, e.Name)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}
func (e *NotReadableError) Unwrap() error { return e.Err }

// Unavailable: no word from the controller yet is no word from the source (credentials.Unavailable).
func (e *NotReadableError) Unavailable() bool { return true }

// ErrNoEntry says the node Secret holds nothing for a registry: its source is gone, emptied or
// not one nodes are served from (the controller's log and the Registry's status say which).
var ErrNoEntry = errors.New("the node secret holds no credentials for it: its source is gone, empty, or not one the nodes are served from")

// current returns the node Secrets' entries as they are now.
func (r *Reader) current() (index, error) {
	// Arrays, not slices: current runs for every registry of every sync.
	var versions [nodesecret.MaxShards]string
	var objs [nodesecret.MaxShards]*rawShard
	for i, s := range r.shards {
		if !s.informer.HasSynced() {
			s.mu.Lock()
			err := s.lastErr
			s.mu.Unlock()
			return index{}, &NotReadableError{Namespace: r.cfg.Namespace, Name: s.name, Err: err}
		}
		obj, exists, err := s.informer.GetStore().GetByKey(s.key)
		if err != nil {
			return index{}, &NotReadableError{Namespace: r.cfg.Namespace, Name: s.name, Err: err}
		}
		if !exists {
			if i == 0 {
				return index{}, &NotReadableError{Namespace: r.cfg.Namespace, Name: s.name, Err: errors.New("not written by the controller yet")}
			}
			continue
		}
		objs[i] = obj.(*rawShard)
		versions[i] = objs[i].ResourceVersion
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.built && r.versions == versions {
		return r.index, nil
	}
	idx := index{awsKeys: map[nodesecret.SourceRef]nodesecret.Entry{}, format: objs[0].format == nodesecret.FormatVersion}
	for _, s := range objs {
		if s == nil {
			continue
		}
		idx.shards = append(idx.shards, s)
		for name, v := range s.entries {
			e, err := nodesecret.Decode(name, v)
			if err != nil {
				continue // Entry says why
			}
			if e.Spec == nil {
				idx.noSpec++
			}
			// An entry moving between shards is briefly in two: the first wins, as in entry.
			if _, seen := idx.awsKeys[e.Source]; e.AWS != nil && !seen {
				idx.awsKeys[e.Source] = e
			}
		}
	}
	r.versions, r.index, r.built = versions, idx, true
	return idx, nil
}

// List returns the registries the node serves, as the node Secret says: each one's name,
// generation and spec. The node Secret not listed yet, not written yet, or written by an older
// controller is not readable (see NotReadableError): List then returns that error with the
// registries of the last node Secret it could list, if any, so that a node keeps serving them
// as sources that cannot be read (each for KeepLastGood).
func (r *Reader) List() ([]*v1alpha1.Registry, error) {
	idx, err := r.current()
	if err == nil && (!idx.format || idx.noSpec > 0) {
		err = &NotReadableError{Namespace: r.cfg.Namespace, Name: nodesecret.Name,
			Err: errors.New("written by an older controller, without the registries' specs: waiting for this version's")}
	}
	r.mu.Lock()
	if err == nil {
		r.listable = &idx
	}
	last := r.listable
	r.mu.Unlock()
	if err != nil {
		if last == nil {
			return nil, err
		}
		return last.registries(), err
	}
	return idx.registries(), nil
}

// registries are the index's registries, decoded at each call (a sync's), not kept. An entry
// moving between shards is briefly in two: listed once. One that does not decode is left out
// (the controller wrote it: it never does).
func (idx *index) registries() []*v1alpha1.Registry {
	var regs []*v1alpha1.Registry
	seen := map[string]bool{}
	for _, s := range idx.shards {
		for name, v := range s.entries {
			if seen[name] {
				continue
			}
			seen[name] = true
			if spec, generation, err := nodesecret.DecodeSpec(name, v); err == nil && spec != nil {
				regs = append(regs, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: generation}, Spec: *spec})
			}
		}
	}
	slices.SortFunc(regs, func(a, b *v1alpha1.Registry) int { return strings.Compare(a.Name, b.Name) })
	return regs
}

// Entry returns a registry's entry. An entry written for another source than the registry names
// now, or for another generation of it (other hosts), is not readable yet: the controller has not
// caught up with the change.
func (r *Reader) Entry(reg *v1alpha1.Registry) (nodesecret.Entry, error) {
	idx, err := r.current()
	if err != nil {
		return nodesecret.Entry{}, err
	}
	e, ok, err := idx.entry(reg.Name)
	if err != nil {
		return nodesecret.Entry{}, err
	}
	if !ok || !e.HasCredentials() {
		return nodesecret.Entry{}, ErrNoEntry
	}
	if refs := reg.Spec.Auth.SecretRefs(); len(refs) != 1 || refs[0].Namespace != e.Source.Namespace || refs[0].Name != e.Source.Name {
		return nodesecret.Entry{}, &NotReadableError{Namespace: r.cfg.Namespace, Name: nodesecret.Name, Err: errors.New("its entry is of another source: the controller has not written the new one yet")}
	}
	if e.Generation != 0 && reg.Generation != 0 && e.Generation != reg.Generation {
		return nodesecret.Entry{}, &NotReadableError{Namespace: r.cfg.Namespace, Name: nodesecret.Name,
			Err: fmt.Errorf("its entry is of generation %d of the Registry, not %d: the controller has not caught up yet", e.Generation, reg.Generation)}
	}
	return e, nil
}

// Secret implements credentials.SecretGetter for the AWS keys of ECR registries: a Secret made of
// the entry of that source.
func (r *Reader) Secret(_ context.Context, namespace, name string) (*corev1.Secret, error) {
	if namespace != r.cfg.Namespace {
		return nil, &credentials.NamespaceNotAllowedError{Namespace: namespace, Allowed: []string{r.cfg.Namespace}}
	}
	idx, err := r.current()
	if err != nil {
		return nil, err
	}
	e, ok := idx.awsKeys[nodesecret.SourceRef{Namespace: namespace, Name: name}]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, namespace+"/"+name)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, ResourceVersion: e.Version},
		Data: map[string][]byte{"aws_access_key_id": []byte(e.AWS.AccessKeyID), "aws_secret_access_key": []byte(e.AWS.SecretAccessKey),
			"aws_session_token": []byte(e.AWS.SessionToken)}}, nil
}

// Resolver resolves node-served registries from the node Secret: static credentials as the
// controller resolved them; ECR tokens fetched here, with the entry's keys or the node's own
// identity (they never leave the node).
type Resolver struct {
	entries *Reader
	ecr     *credentials.Resolver
}

// NewResolver returns a Resolver over r.
func NewResolver(r *Reader, newECR credentials.ECRFactory, ecrEndpoint string) *Resolver {
	return &Resolver{entries: r, ecr: &credentials.Resolver{Secrets: r, NewECR: newECR, ECREndpoint: ecrEndpoint}}
}

// Resolve returns a registry's credentials.
func (x *Resolver) Resolve(ctx context.Context, reg *v1alpha1.Registry) (userpass.Credentials, error) {
	if reg.Spec.Auth.ECR != nil {
		return x.ecr.Resolve(ctx, reg)
	}
	e, err := x.entries.Entry(reg)
	if err != nil {
		return userpass.Credentials{}, fmt.Errorf("registry %s: %w", reg.Name, err)
	}
	return userpass.Credentials{Username: e.Username, Password: e.Password, Version: e.Version}, nil
}

// NextRefresh returns when an ECR registry's token is due (zero: only on a change).
func (x *Resolver) NextRefresh(name string) time.Time { return x.ecr.NextRefresh(name) }

// Forget drops what is cached for a registry no longer served.
func (x *Resolver) Forget(name string) { x.ecr.Forget(name) }

// largeShard is the size of a shard's data past which its watch is released after a rewrite.
const largeShard = 64 << 10

// releaseAfterLargeRewrite ends a watch once it has delivered a rewrite of a shard of at least
// large bytes, and the informer's reflector watches again from that event's resourceVersion (no
// list), on a new stream. Why: a watch stream's decoder keeps a buffer as large as the largest
// event it decoded (client-go never shrinks it) for the watch's life, 5 to 10 minutes, after
// which it would go anyway: at 1,000 registries, another 0.6 MiB held on every node besides the
// shard itself. The cost, one watch request per node and rewrite, is small beside the rewrite
// each node receives. Only Modified events: a watch-list's initial events (Added) must reach the
// bookmark that ends them on the same stream, and a shard is created once.
func releaseAfterLargeRewrite(inner watchapi.Interface, large int) watchapi.Interface {
	w := &releasingWatch{inner: inner, out: make(chan watchapi.Event), stop: make(chan struct{})}
	go w.run(large)
	return w
}

type releasingWatch struct {
	inner watchapi.Interface
	out   chan watchapi.Event
	stop  chan struct{}
	once  sync.Once
}

func (w *releasingWatch) run(large int) {
	defer close(w.out)
	defer w.inner.Stop()
	for {
		select {
		case <-w.stop:
			return
		case ev, ok := <-w.inner.ResultChan():
			if !ok {
				return
			}
			// Sized before it is delivered: the informer's transform then owns the Secret.
			s, isSecret := ev.Object.(*corev1.Secret)
			release := isSecret && ev.Type == watchapi.Modified && dataSize(s) >= large
			select {
			case w.out <- ev:
			case <-w.stop:
				return
			}
			if release {
				return
			}
		}
	}
}

func (w *releasingWatch) Stop()                             { w.once.Do(func() { close(w.stop) }) }
func (w *releasingWatch) ResultChan() <-chan watchapi.Event { return w.out }

func dataSize(s *corev1.Secret) int {
	n := 0
	for k, v := range s.Data {
		n += len(k) + len(v)
	}
	return n
}

// OneByName lists and watches the one object of this name: a list or watch narrowed to one name
// is what a Role with resourceNames allows.
func OneByName(name string, list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watch func(context.Context, metav1.ListOptions) (watchapi.Interface, error)) *cache.ListWatch {
	byName := fields.OneTermEqualSelector("metadata.name", name).String()
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			return list(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watchapi.Interface, error) {
			o.FieldSelector = byName
			return watch(ctx, o)
		},
	}
}
