package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// PreDelete is the chart's pre-delete hook when the agents restart kubelets (`pullpass-agent
// pre-delete`). helm uninstall deletes the agents' ServiceAccount and RBAC in the same pass as
// their DaemonSet, before the agents have stopped; an agent taking pullpass off its node then
// restarts its kubelet under the Lease and judges it by the Node, which it can no longer read.
// So the hook deletes the DaemonSet first and waits, up to wait, until none of its pods is
// left: each took pullpass off its node (the DaemonSet gone) and restarted its kubelet in turn,
// with its RBAC still there. Then helm deletes the rest. A DaemonSet already gone is nothing to
// do; pods left after wait are logged and left to helm (the hook never blocks an uninstall).
func PreDelete(ctx context.Context, kube kubernetes.Interface, namespace, daemonSet string, wait, poll time.Duration, log *slog.Logger) error {
	api := kube.AppsV1().DaemonSets(namespace)
	ds, err := api.Get(ctx, daemonSet, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		log.Info("the agents' DaemonSet is already gone", "daemonset", daemonSet)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the agents' DaemonSet: %w", err)
	}
	uid := ds.UID
	background := metav1.DeletePropagationBackground
	if err := api.Delete(ctx, daemonSet, metav1.DeleteOptions{PropagationPolicy: &background, Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the agents' DaemonSet: %w", err)
	}
	log.Info("the agents' DaemonSet deleted: waiting for every agent to take pullpass off its node", "daemonset", daemonSet, "wait", wait)
	selector := metav1.FormatLabelSelector(ds.Spec.Selector)
	deadline := time.Now().Add(wait)
	for {
		left, err := podsOf(ctx, kube, namespace, selector, uid)
		switch {
		case err == nil && left == 0:
			log.Info("every agent has stopped")
			return nil
		case time.Now().After(deadline):
			log.Warn("agents still running after the wait: their nodes' kubelets may keep pullpass's plugin until their next restart", "left", left, "err", err)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// podsOf counts the pods a DaemonSet owned (by its UID).
func podsOf(ctx context.Context, kube kubernetes.Interface, namespace, selector string, owner types.UID) (int, error) {
	pods, err := kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pods.Items {
		for _, ref := range p.OwnerReferences {
			if ref.UID == owner {
				n++
				break
			}
		}
	}
	return n, nil
}
