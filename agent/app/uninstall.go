package app

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/agent/nodecreds"
)

// selfWatch watches the agent's own DaemonSet, so that at shutdown the agent knows whether
// pullpass is being uninstalled (clean the node) or the agent is only being replaced (an update,
// a drain: keep serving the cache). Helm deletes the DaemonSet before the agent's RBAC, so the
// watch sees the deletion while the agent may still look; a refusal from the API server (401,
// 403) proves nothing and never wipes a node.
type selfWatch struct {
	namespace, name string
	informer        cache.SharedIndexInformer

	mu      sync.Mutex
	deleted bool // the watch saw the DaemonSet going or gone
}

func watchDaemonSet(kube kubernetes.Interface, namespace, name string) *selfWatch {
	api := kube.AppsV1().DaemonSets(namespace)
	lw := nodecreds.OneByName(name, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, o) }, api.Watch)
	w := &selfWatch{namespace: namespace, name: name,
		informer: cache.NewSharedIndexInformer(lw, &appsv1.DaemonSet{}, 0, cache.Indexers{})}
	_, _ = w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { w.observe(o, false) },
		UpdateFunc: func(_, n any) { w.observe(n, false) },
		DeleteFunc: func(o any) { w.observe(o, true) },
	})
	return w
}

func (w *selfWatch) run(ctx context.Context) { w.informer.RunWithContext(ctx) }

func (w *selfWatch) observe(obj any, gone bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, gone = d.Obj, true
	}
	ds, ok := obj.(*appsv1.DaemonSet)
	if !ok || ds.Name != w.name {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if gone || ds.DeletionTimestamp != nil {
		w.deleted = true
	}
}

// uninstalling reports whether the agent stops because its DaemonSet is gone or going: seen so
// by the watch, or found so by one last read. Anything else, errors included, is "no".
func (w *selfWatch) uninstalling(ctx context.Context, kube kubernetes.Interface) (bool, string) {
	w.mu.Lock()
	deleted := w.deleted
	w.mu.Unlock()
	if deleted {
		return true, "the DaemonSet was deleted"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ds, err := kube.AppsV1().DaemonSets(w.namespace).Get(ctx, w.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, "the DaemonSet is gone"
	case err != nil:
		return false, fmt.Sprintf("cannot tell (%v): keeping the node's credentials", err)
	case ds.DeletionTimestamp != nil:
		return true, "the DaemonSet is being deleted"
	}
	return false, ""
}
