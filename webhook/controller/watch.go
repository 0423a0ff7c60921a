package controller

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/registrywatch"
	"github.com/pullpass/pullpass/pkg/secrets"
	"github.com/pullpass/pullpass/webhook/inject"
	"github.com/pullpass/pullpass/webhook/keeper"
)

// watchForKeeper turns informer events into keeper work: a registry that changed, a source
// secret that changed (its registries), a pull secret that changed or went (its registry), a
// namespace whose annotations or labels changed (everything: it is rare).
func watchForKeeper(k *keeper.Keeper, table *registrywatch.Watcher, sources []cache.SharedIndexInformer, managed, namespaces cache.SharedIndexInformer) {
	byName := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if r, ok := obj.(*v1alpha1.Registry); ok {
			k.Enqueue(r.Name)
			if r.Spec.PullThrough != nil {
				// Pull-through caches decide between themselves which one serves a namespace:
				// a change to one may change every other's PullThrough condition.
				for _, o := range table.List() {
					if o.Spec.PullThrough != nil {
						k.Enqueue(o.Name)
					}
				}
			}
		}
	}
	table.AddHandler(cache.ResourceEventHandlerFuncs{AddFunc: byName, UpdateFunc: func(o, n any) { byName(o); byName(n) }, DeleteFunc: byName})

	bySource := func(obj any) { forSourceOf(table, obj, k.Enqueue) }
	for _, inf := range sources {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: bySource, UpdateFunc: func(_, n any) { bySource(n) }, DeleteFunc: bySource})
	}

	byLabel := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if s, ok := obj.(*corev1.Secret); ok && pullsecret.HasRole(s) {
			k.Enqueue(s.Labels[secrets.LabelRegistry])
		}
	}
	deleted := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if s, ok := obj.(*corev1.Secret); ok && pullsecret.HasRole(s) {
			k.Deleted(s)
		}
	}
	_, _ = managed.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: byLabel, UpdateFunc: func(_, n any) { byLabel(n) }, DeleteFunc: deleted})

	_, _ = namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(o, n any) {
		on, ok1 := o.(*corev1.Namespace)
		nn, ok2 := n.(*corev1.Namespace)
		if ok1 && ok2 && (!equalMaps(on.Annotations, nn.Annotations) || !equalMaps(on.Labels, nn.Labels) || on.DeletionTimestamp != nn.DeletionTimestamp) {
			k.EnqueueAll()
		}
	}})
}

// forSourceOf calls f with the name of each registry that reads the Secret obj as a source.
func forSourceOf(table *registrywatch.Watcher, obj any, f func(registry string)) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	for _, r := range table.List() {
		for _, ref := range r.Spec.Auth.SecretRefs() {
			if ref.Namespace == s.Namespace && ref.Name == s.Name {
				f(r.Name)
			}
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// pullThroughStatus gives pull-through caches their PullThrough condition from the registry
// table and the namespaces pullpass serves.
type pullThroughStatus struct {
	table      *registrywatch.Watcher
	namespaces corelisters.NamespaceLister
	policy     inject.Policy
}

func (p pullThroughStatus) Condition(reg *v1alpha1.Registry) *metav1.Condition {
	t := p.table.Table()
	if reg.Spec.PullThrough == nil || t == nil || t.PullThrough() == nil {
		return nil
	}
	all, err := p.namespaces.List(labels.Everything())
	if err != nil {
		return nil
	}
	served := make([]*corev1.Namespace, 0, len(all))
	for _, ns := range all {
		if p.policy.NamespaceServed(ns) {
			served = append(served, ns)
		}
	}
	return t.PullThrough().Condition(reg.Name, reg.Generation, served)
}
