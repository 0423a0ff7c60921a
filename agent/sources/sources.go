// Package sources watches the Secrets the node agent serves from, one by one: the agent may read
// only those (the controller's leader keeps its Role to exactly those names, see pkg/nodeaccess), so
// it cannot watch its namespace as a whole. A Secret it cannot read yet is "not readable", never
// "gone": only a Secret seen missing by a synced watch takes its credentials off the node.
package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	watchapi "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/credentials"
)

// Config configures a Watcher.
type Config struct {
	Client    kubernetes.Interface
	Namespace string // pullpass's namespace: the only one sources are read from
	// OnChange is called when a watched Secret changes, appears or goes.
	OnChange func()
	// ReadRetry is how often a Secret not readable yet is tried again (default 1 s).
	ReadRetry time.Duration
	Logger    *slog.Logger
}

// Watcher holds one informer per watched Secret name.
type Watcher struct {
	cfg     Config
	mu      sync.Mutex
	ctx     context.Context
	watches map[string]*watch
}

type watch struct {
	name     string
	informer cache.SharedIndexInformer
	stop     context.CancelFunc
	mu       sync.Mutex
	lastErr  error // why the last list or watch failed (RBAC not granted yet, say)
}

// New returns a Watcher; Start gives it the context its watches run in.
func New(cfg Config) (*Watcher, error) {
	if cfg.Client == nil || cfg.Namespace == "" {
		return nil, errors.New("invalid configuration: client and namespace are required")
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func() {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadRetry <= 0 {
		cfg.ReadRetry = time.Second
	}
	return &Watcher{cfg: cfg, watches: map[string]*watch{}}, nil
}

// Start sets the context every watch runs in; Set before Start only records the names.
func (w *Watcher) Start(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ctx = ctx
	for _, wt := range w.watches {
		if wt.stop == nil {
			w.run(wt)
		}
	}
}

// Set watches exactly these Secret names: new ones start, others stop.
func (w *Watcher) Set(names []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, wt := range w.watches {
		if !slices.Contains(names, name) {
			if wt.stop != nil {
				wt.stop()
			}
			delete(w.watches, name)
		}
	}
	for _, name := range names {
		if _, ok := w.watches[name]; ok {
			continue
		}
		wt := w.newWatch(name)
		w.watches[name] = wt
		if w.ctx != nil {
			w.run(wt)
		}
	}
}

func (w *Watcher) newWatch(name string) *watch {
	api := w.cfg.Client.CoreV1().Secrets(w.cfg.Namespace)
	lw := OneByName(name, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, o) }, api.Watch)
	wt := &watch{name: name, informer: cache.NewSharedIndexInformer(lw, &corev1.Secret{}, 10*time.Minute, cache.Indexers{})}
	changed := func(any) { w.cfg.OnChange() }
	_, _ = wt.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    changed,
		UpdateFunc: func(_, n any) { changed(n) },
		DeleteFunc: changed,
	})
	_ = wt.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		wt.setErr(err)
		w.cfg.Logger.Warn("cannot watch a source secret yet", "secret", w.cfg.Namespace+"/"+name, "err", err)
	})
	return wt
}

func (wt *watch) setErr(err error) {
	wt.mu.Lock()
	wt.lastErr = err
	wt.mu.Unlock()
}

// run starts a watch; w.mu is held.
//
// Until the Secret can be read (the leader grants it a moment after the Registry appears), a
// plain read is tried every second: an informer whose list is refused backs off for up to 30 s,
// which would hold back the first credentials of a new registry that long.
func (w *Watcher) run(wt *watch) {
	ctx, cancel := context.WithCancel(w.ctx)
	wt.stop = cancel
	go func() {
		api := w.cfg.Client.CoreV1().Secrets(w.cfg.Namespace)
		for {
			_, err := api.Get(ctx, wt.name, metav1.GetOptions{})
			if err == nil || apierrors.IsNotFound(err) {
				break
			}
			wt.setErr(err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(w.cfg.ReadRetry):
			}
		}
		wt.informer.RunWithContext(ctx)
	}()
}

// WaitForSync waits until every watch has listed once, or ctx ends; it reports which have not.
func (w *Watcher) WaitForSync(ctx context.Context) []string {
	for {
		pending := w.pending()
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return pending
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (w *Watcher) pending() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for name, wt := range w.watches {
		if !wt.informer.HasSynced() {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// NotReadableError says a source Secret cannot be read yet: not watched, or its watch has not
// listed it (its Role does not name it yet). The last good credentials stay meanwhile.
type NotReadableError struct {
	Namespace, Name string
	Err             error
}

func (e *NotReadableError) Error() string {
	msg := fmt.Sprintf("source secret %s/%s is not readable by the node agent yet", e.Namespace, e.Name)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}
func (e *NotReadableError) Unwrap() error { return e.Err }

// Unavailable: a source not readable yet is no word from the source (credentials.Unavailable).
func (e *NotReadableError) Unavailable() bool { return true }

// Secret implements credentials.SecretGetter.
func (w *Watcher) Secret(_ context.Context, namespace, name string) (*corev1.Secret, error) {
	if namespace != w.cfg.Namespace {
		return nil, &credentials.NamespaceNotAllowedError{Namespace: namespace, Allowed: []string{w.cfg.Namespace}}
	}
	w.mu.Lock()
	wt, ok := w.watches[name]
	w.mu.Unlock()
	if !ok {
		return nil, &NotReadableError{Namespace: namespace, Name: name, Err: errors.New("not watched")}
	}
	if !wt.informer.HasSynced() {
		wt.mu.Lock()
		err := wt.lastErr
		wt.mu.Unlock()
		return nil, &NotReadableError{Namespace: namespace, Name: name, Err: err}
	}
	obj, exists, err := wt.informer.GetStore().GetByKey(namespace + "/" + name)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, notFound(namespace, name)
	}
	return obj.(*corev1.Secret), nil
}

func notFound(namespace, name string) error {
	return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, namespace+"/"+name)
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
