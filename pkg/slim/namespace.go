package slim

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ownPrefix starts every annotation pullpass reads on a namespace (inject, pull-through,
// recreate-stuck-pods).
const ownPrefix = "pullpass.io/"

// ownAnnotations holds one copy of each set of pullpass's annotations namespaces hold.
var ownAnnotations = NewMaps(1024)

// Namespace is the cache.TransformFunc of namespace informers: at 10,000 namespaces each
// replica, the controller and every node agent cache them all. It keeps what pullpass reads: the
// name, identity and deletion timestamp, every label (registries select namespaces by them) and
// pullpass's own annotations; the spec, the status but its phase, others' annotations (a
// kubectl last-applied-configuration is often the largest part) and managedFields go.
func Namespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return DropManagedFields(obj)
	}
	ns.ManagedFields, ns.OwnerReferences, ns.Finalizers = nil, nil, nil
	ns.Spec = corev1.NamespaceSpec{}
	ns.Status = corev1.NamespaceStatus{Phase: phase(ns.Status.Phase)}
	if len(ns.Annotations) > 0 {
		var own map[string]string
		for k, v := range ns.Annotations {
			if strings.HasPrefix(k, ownPrefix) {
				if own == nil {
					own = map[string]string{}
				}
				own[k] = v
			}
		}
		ns.Annotations = ownAnnotations.Intern(own) // {"pullpass.io/inject": "enabled"} in most
	}
	// The API server labels every namespace with its own name: the same string, once.
	if ns.Labels[corev1.LabelMetadataName] == ns.Name {
		ns.Labels[corev1.LabelMetadataName] = ns.Name
	}
	return ns, nil
}

// phase returns the constant of a known phase: not a copy per namespace.
func phase(p corev1.NamespacePhase) corev1.NamespacePhase {
	switch p {
	case corev1.NamespaceActive:
		return corev1.NamespaceActive
	case corev1.NamespaceTerminating:
		return corev1.NamespaceTerminating
	}
	return p
}
