package nodetaint_test

import (
	"context"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/agent/nodetaint"
	"github.com/pullpass/pullpass/pkg/testenv"
)

var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

// The startup taint stays while the node does not serve, and only it goes once the node serves:
// other taints and the rest of the Node are left as they were.
func TestStartupTaintRemovedOnceTheNodeServes(t *testing.T) {
	env := controlPlane.Env(t)
	other := corev1.Taint{Key: "example.com/gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}
	_, err := env.Kube.CoreV1().Nodes().Create(t.Context(), &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "tainted", Labels: map[string]string{"a": "b"}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{other, {Key: nodetaint.Key, Effect: corev1.TaintEffectNoSchedule},
			{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoExecute}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Kube.CoreV1().Nodes().Delete(context.Background(), "tainted", metav1.DeleteOptions{}) })
	var serving atomic.Bool
	var looks atomic.Int32
	r, err := nodetaint.New(nodetaint.Config{Kube: env.Kube, Node: "tainted", Serving: func() bool { looks.Add(1); return serving.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Run(t.Context(), 10*time.Millisecond); close(done) }()
	// Looked at, not serving: the taint stays.
	testenv.Eventually(t, 10*time.Second, func() error {
		if looks.Load() < 3 {
			return context.DeadlineExceeded
		}
		return nil
	})
	n, err := env.Kube.CoreV1().Nodes().Get(t.Context(), "tainted", metav1.GetOptions{})
	if err != nil || !slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == nodetaint.Key }) {
		t.Fatalf("the taint went before the node served: %v, %v", n.Spec.Taints, err)
	}
	want := slices.DeleteFunc(slices.Clone(n.Spec.Taints), func(t corev1.Taint) bool { return t.Key == nodetaint.Key })
	serving.Store(true)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the remover did not finish once the node served")
	}
	n, err = env.Kube.CoreV1().Nodes().Get(t.Context(), "tainted", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(n.Spec.Taints, want, func(a, b corev1.Taint) bool { return a.MatchTaint(&b) }) || n.Spec.Taints[0] != other || n.Labels["a"] != "b" {
		t.Fatalf("after removal: taints %v, labels %v", n.Spec.Taints, n.Labels)
	}
	// No taint: done at once, nothing written.
	rv := n.ResourceVersion
	if ok, err := r.Remove(t.Context()); !ok || err != nil {
		t.Fatalf("Remove without the taint: %v, %v", ok, err)
	}
	if n, _ := env.Kube.CoreV1().Nodes().Get(t.Context(), "tainted", metav1.GetOptions{}); n.ResourceVersion != rv {
		t.Fatal("the Node was written with no taint to remove")
	}
}
