package slim

import "github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"

// NodeRegistry is the cache.TransformFunc of the node agent's Registry informer: every node
// caches every Registry. It keeps what the agent reads (the name, identity, generation and
// deletion timestamp, the labels and the spec) and drops what it never reads: the status (the
// controller's conditions, rewritten at each resync), the annotations (a kubectl
// last-applied-configuration is a second copy of the spec), the owner references and the
// managedFields (an entry per writer, the keeper's status writes among them).
func NodeRegistry(obj any) (any, error) {
	r, ok := obj.(*v1alpha1.Registry)
	if !ok {
		return DropManagedFields(obj)
	}
	r.ManagedFields, r.OwnerReferences, r.Annotations = nil, nil, nil
	r.Status = v1alpha1.RegistryStatus{}
	return r, nil
}
