// Package slim trims objects before informers cache them: at 10,000 namespaces the webhook holds
// 50,000 pull secrets, and the managedFields of each (server-side apply bookkeeping, which
// pullpass never reads) were about a sixth of its heap.
package slim

import "k8s.io/apimachinery/pkg/api/meta"

// DropManagedFields is a cache.TransformFunc that drops an object's managedFields. Anything
// without object metadata (a tombstone) passes as it is.
func DropManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil && m.GetManagedFields() != nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
