// Package nodetaint removes the startup taint pullpass.io/agent-not-ready:NoSchedule from the
// agent's Node once the node serves the node path, so that no workload pod lands on a new node
// before its pulls of Cluster-scope registries can work (as Cilium's agent-not-ready taint keeps
// pods off a node until its agent is ready). Node provisioners add the taint at creation
// (Karpenter's startupTaints, EKS managed node groups' taints); the agent never adds it.
package nodetaint

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Key is the startup taint's key; its effect is NoSchedule.
const Key = "pullpass.io/agent-not-ready"

// Config configures a Remover.
type Config struct {
	Kube kubernetes.Interface
	Node string
	// Serving reports whether the node serves the node path: the agent's first sync done and
	// the kubelet running the provider config written.
	Serving func() bool
	Logger  *slog.Logger
}

// Remover removes the startup taint once the node serves.
type Remover struct{ cfg Config }

// New returns a Remover.
func New(cfg Config) (*Remover, error) {
	if cfg.Kube == nil || cfg.Node == "" || cfg.Serving == nil {
		return nil, fmt.Errorf("invalid configuration: kube client, node name and serving are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Remover{cfg: cfg}, nil
}

// Run looks every interval until the taint is gone (or was never there), or ctx ends.
func (r *Remover) Run(ctx context.Context, interval time.Duration) {
	for {
		if r.cfg.Serving() {
			done, err := r.Remove(ctx)
			if err != nil && ctx.Err() == nil {
				r.cfg.Logger.Warn("could not remove the startup taint", "taint", Key, "err", err)
			}
			if done {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// Remove takes the taint off the Node, if it is there, and reports whether the Node is now
// without it. A JSON patch that tests the taint at its index before removing it: a Node changed
// meanwhile fails the test and is read again, and nothing but the taint is ever written (the
// ValidatingAdmissionPolicy of the chart lets the agent do nothing else).
func (r *Remover) Remove(ctx context.Context) (bool, error) {
	nodes := r.cfg.Kube.CoreV1().Nodes()
	for range 5 {
		n, err := nodes.Get(ctx, r.cfg.Node, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		i := index(n.Spec.Taints)
		if i < 0 {
			return true, nil
		}
		at := fmt.Sprintf("/spec/taints/%d", i)
		patch, err := json.Marshal([]map[string]any{
			{"op": "test", "path": at, "value": n.Spec.Taints[i]},
			{"op": "remove", "path": at},
		})
		if err != nil {
			return false, err
		}
		_, err = nodes.Patch(ctx, r.cfg.Node, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "pullpass-agent"})
		if err == nil {
			r.cfg.Logger.Info("the node serves the node path: startup taint removed", "taint", Key)
			return true, nil
		}
		if !apierrors.IsInvalid(err) && !apierrors.IsConflict(err) && !apierrors.IsBadRequest(err) {
			return false, err
		}
	}
	return false, fmt.Errorf("the Node kept changing while the taint %s was removed", Key)
}

func index(taints []corev1.Taint) int {
	for i, t := range taints {
		if t.Key == Key {
			return i
		}
	}
	return -1
}
