package controller

import (
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/slim"
	"github.com/pullpass/pullpass/webhook/keeper"
)

// agentCount counts the node agents from their DaemonSet's status: the keeper's proxy for the
// nodes that serve registries delivered by the node, readable with get/list/watch on that one
// DaemonSet.
type agentCount struct {
	informer        cache.SharedIndexInformer
	lister          appslisters.DaemonSetLister
	namespace, name string
}

var _ keeper.NodeAgents = agentCount{}

// Agents is not known until the cache has synced: admission never waits for this cache (a
// webhook that may not read the DaemonSet still serves), so the keeper may ask before.
func (a agentCount) Agents() (keeper.AgentCount, bool) {
	if !a.informer.HasSynced() {
		return keeper.AgentCount{}, false
	}
	ds, err := a.lister.DaemonSets(a.namespace).Get(a.name)
	if err != nil {
		return keeper.AgentCount{}, true
	}
	return keeper.AgentCount{Ready: ds.Status.NumberReady, Desired: ds.Status.DesiredNumberScheduled, Found: true}, true
}

// watchAgents watches the agent DaemonSet alone (by name): its count, and the factory to start.
func watchAgents(kube kubernetes.Interface, namespace, name string) (agentCount, informers.SharedInformerFactory) {
	f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(namespace),
		informers.WithTransform(slim.DropManagedFields),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	inf := f.Apps().V1().DaemonSets()
	return agentCount{informer: inf.Informer(), lister: inf.Lister(), namespace: namespace, name: name}, f
}

// tell asks the keeper for every registry when the DaemonSet comes, goes, or its first agent
// becomes ready or its last one stops being: when registries delivered by the node may start or
// stop being served. Other changes of the counts (each pod of a rollout) wait for the keeper's
// resync: a status write for every such registry at each pod would be thousands at a rollout.
func (a agentCount) tell(k *keeper.Keeper) {
	all := func(any) { k.EnqueueAll() }
	_, _ = a.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: all, DeleteFunc: all, UpdateFunc: func(o, n any) {
		od, ok1 := o.(*appsv1.DaemonSet)
		nd, ok2 := n.(*appsv1.DaemonSet)
		if !ok1 || !ok2 || (od.Status.NumberReady > 0) != (nd.Status.NumberReady > 0) {
			k.EnqueueAll()
		}
	}})
}
