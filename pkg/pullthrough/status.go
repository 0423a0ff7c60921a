package pullthrough

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// Annotations on pods and namespaces.
const (
	// AnnotationOptOut set to "disabled" on a pod or a namespace keeps its images as written;
	// pull secrets are still added.
	AnnotationOptOut = "pullpass.io/pull-through"
	// AnnotationOriginalImages is written on pods whose images were rewritten: a JSON object
	// from container name to the image the pod asked for.
	AnnotationOriginalImages = "pullpass.io/original-images"
	disabled                 = "disabled"
)

// OptedOut reports whether a pod's or a namespace's annotations turn rewriting off.
func OptedOut(annotations map[string]string) bool { return annotations[AnnotationOptOut] == disabled }

// Reasons of the PullThrough condition.
const (
	ReasonActive   = "Active"
	ReasonConflict = "Conflict"
	ReasonChained  = "Chained"
)

// Condition is the PullThrough condition of a Registry: nil when the Registry is no cache in
// this index. namespaces are the namespaces pullpass serves; those that opted out of rewriting
// are not counted.
func (ix *Index) Condition(name string, generation int64, namespaces []*corev1.Namespace) *metav1.Condition {
	cond := &metav1.Condition{Type: v1alpha1.ConditionPullThrough, ObservedGeneration: generation}
	if why := ix.Refused(name); why != "" {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonChained, why
		return cond
	}
	c, ok := ix.Cache(name)
	if !ok {
		return nil
	}
	used, conflicts := 0, 0
	var firstConflict string
	var rival *Cache
	for _, ns := range namespaces {
		if OptedOut(ns.Annotations) || !c.Selects(ns.Labels) {
			continue
		}
		ch := ix.Select(c.Upstream, ns.Labels)
		switch {
		case ch.Cache == c:
			used++
		case ch.Conflict[0] == c || ch.Conflict[1] == c:
			conflicts++
			if firstConflict == "" {
				firstConflict = ns.Name
				rival = ch.Conflict[0]
				if rival == c {
					rival = ch.Conflict[1]
				}
			}
		}
	}
	example := c.Target.Repository("...")
	if conflicts > 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonConflict
		cond.Message = fmt.Sprintf("registry %s is a pull-through cache of %s too, with a namespaceSelector as specific as this one's (%d requirements), "+
			"and both select namespace %s (%d namespaces in all): images of %s there are left as they are. "+
			"Give the cache that should win there a more specific namespaceSelector (more matchLabels or matchExpressions), or make the selectors disjoint",
			rival.Registry.Name, c.Upstream, c.Specificity, firstConflict, conflicts, c.Upstream)
		return cond
	}
	cond.Status, cond.Reason = metav1.ConditionTrue, ReasonActive
	cond.Message = fmt.Sprintf("images of %s are rewritten to %s in %d namespaces", c.Upstream, example, used)
	return cond
}
