package cli

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/nodedelivery"
)

// checkServed refuses, before anything is written, a Registry that nothing in the cluster would
// serve (a Namespaced registry delivered by the node while the agents are not in token mode; a
// Cluster-scope one with no agents), as the chart's ConfigMap says what the agents serve. The
// Served condition would say it too, but only once the pods' pull secrets are gone. With force
// it only warns. A cluster whose chart has no such ConfigMap, or that the user may not read, is
// not checked: the Served condition still tells.
func checkServed(ctx context.Context, o *options, c *Clients, reg *v1alpha1.Registry, force bool) error {
	if reg.Spec.EffectiveDelivery() != v1alpha1.DeliveryNode {
		return nil // pull secrets need nothing of the nodes
	}
	cm, err := c.Kube.CoreV1().ConfigMaps(o.namespace).Get(ctx, nodedelivery.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		why := err.Error()
		if apierrors.IsNotFound(err) {
			why = "the chart did not write it (a release older than this CLI, or another --pullpass-namespace)"
		}
		fmt.Fprintf(o.streams.ErrOut, "warning: cannot tell whether the node agents serve registry %s: ConfigMap %s/%s: %s; its Served condition will tell\n",
			reg.Name, o.namespace, nodedelivery.ConfigMapName, why)
		return nil
	}
	mode, err := nodedelivery.Parse(cm.Data[nodedelivery.ConfigMapKey])
	if err != nil {
		return fmt.Errorf("ConfigMap %s/%s: %w", o.namespace, nodedelivery.ConfigMapName, err)
	}
	reason, msg := nodedelivery.Check(reg.Spec, mode)
	switch {
	case reason == "":
		return nil
	case force:
		fmt.Fprintf(o.streams.ErrOut, "warning: nothing will serve registry %s (%s): %s\n", reg.Name, reason, msg)
		return nil
	}
	return badInput("nothing would serve registry %s (%s): %s. Nothing was changed; --force applies it anyway", reg.Name, reason, msg)
}
