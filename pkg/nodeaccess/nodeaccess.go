// Package nodeaccess tells which registries the node agents serve. The agents read nothing of
// the registries' sources themselves: the controller's leader writes what they serve into
// pullpass's node Secret (webhook/nodecreds), the one Secret their Role names.
package nodeaccess

import (
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// ServedByNode reports whether the node agents serve a registry (rather than the webhook's
// pull secrets): Cluster scope, or Namespaced delivered by the node.
func ServedByNode(r *v1alpha1.Registry) bool {
	return r.Spec.EffectiveDelivery() == v1alpha1.DeliveryNode && r.DeletionTimestamp == nil
}
