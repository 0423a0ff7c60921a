// Package registrywatch keeps the Registry objects and the registry table built from them in
// memory, fed by an informer; the webhook and the controller read it (the node agents read the
// node credentials Secret instead).
package registrywatch

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registryclient"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

// Watcher is the registry table, rebuilt whenever a Registry changes.
type Watcher struct {
	informer cache.SharedIndexInformer
	// rebuilt reports when the table handler has seen the first list: the informer's own
	// HasSynced turns true when the store is full, possibly before the handler rebuilt from it.
	rebuilt cache.ResourceEventHandlerRegistration
	table   atomic.Pointer[registrytable.Table]
	log     *slog.Logger
}

// New watches Registry objects through client.
func New(client registryclient.Interface, log *slog.Logger) *Watcher {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.Watch(ctx, o)
		},
	}
	t := &Watcher{
		informer: cache.NewSharedIndexInformer(lw, &v1alpha1.Registry{}, 10*time.Minute, cache.Indexers{}),
		log:      log,
	}
	rebuild := func(any) { t.rebuild() }
	t.rebuilt, _ = t.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    rebuild,
		UpdateFunc: func(_, _ any) { t.rebuild() },
		DeleteFunc: rebuild,
	})
	return t
}

// Run runs the informer until ctx ends.
func (t *Watcher) Run(ctx context.Context) { t.informer.RunWithContext(ctx) }

// HasSynced reports whether the first list is in, and in the table.
func (t *Watcher) HasSynced() bool { return t.rebuilt.HasSynced() }

// Table returns the current table, or nil before the first sync.
func (t *Watcher) Table() *registrytable.Table {
	if !t.HasSynced() {
		return nil
	}
	if tb := t.table.Load(); tb != nil {
		return tb
	}
	t.rebuild() // synced with no registries at all: no event came
	return t.table.Load()
}

// Get returns a registry by name from the cache.
func (t *Watcher) Get(name string) (*v1alpha1.Registry, bool) {
	obj, ok, err := t.informer.GetStore().GetByKey(name)
	if err != nil || !ok {
		return nil, false
	}
	return obj.(*v1alpha1.Registry), true
}

// List returns every cached registry.
func (t *Watcher) List() []*v1alpha1.Registry {
	items := t.informer.GetStore().List()
	out := make([]*v1alpha1.Registry, 0, len(items))
	for _, o := range items {
		out = append(out, o.(*v1alpha1.Registry))
	}
	return out
}

// AddHandler adds an event handler to the registry informer.
func (t *Watcher) AddHandler(h cache.ResourceEventHandler) {
	_, _ = t.informer.AddEventHandler(h)
}

func (t *Watcher) rebuild() {
	items := t.informer.GetStore().List()
	regs := make([]*v1alpha1.Registry, 0, len(items))
	for _, o := range items {
		regs = append(regs, o.(*v1alpha1.Registry))
	}
	tb := registrytable.Build(regs)
	for _, err := range tb.Skipped() {
		t.log.Warn("ignoring invalid registry", "err", err)
	}
	t.table.Store(tb)
}

// String describes the table for logs.
func (t *Watcher) String() string {
	if tb := t.table.Load(); tb != nil {
		return fmt.Sprintf("%d host patterns", tb.Len())
	}
	return "not loaded"
}
