package kubeletrestart_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/agent/kubeletrestart"
	"github.com/pullpass/pullpass/pkg/testenv"
)

var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

// Two nodes' agents restarting over and over against a real API server: the Lease never has
// two holders at once.
func TestLeaseOneNodeAtATime(t *testing.T) {
	env := controlPlane.Env(t)
	ns := env.Namespace(t, nil)
	var holding, rounds atomic.Int32
	var wg sync.WaitGroup
	for _, node := range []string{"node-a", "node-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := &kubeletrestart.LeaseLock{Kube: env.Kube, Namespace: ns, Identity: node, Duration: 30 * time.Second, Retry: 10 * time.Millisecond}
			for range 10 {
				release, err := l.Acquire(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				if n := holding.Add(1); n != 1 {
					t.Errorf("%s holds the lease with %d holders", node, n)
				}
				// The "restart": API calls, so the other agent has every chance to try.
				for range 3 {
					if _, err := env.Kube.CoordinationV1().Leases(ns).Get(t.Context(), "pullpass-kubelet-restart", metav1.GetOptions{}); err != nil {
						t.Error(err)
					}
				}
				holding.Add(-1)
				rounds.Add(1)
				release(t.Context())
			}
		}()
	}
	wg.Wait()
	if rounds.Load() != 20 {
		t.Fatalf("%d rounds, want 20", rounds.Load())
	}
}

// A holder that dies (stops renewing, never releases) blocks the others only until the Lease
// expires.
func TestLeaseOfADeadHolderExpires(t *testing.T) {
	env := controlPlane.Env(t)
	ns := env.Namespace(t, nil)
	dying, die := context.WithCancel(t.Context())
	a := &kubeletrestart.LeaseLock{Kube: env.Kube, Namespace: ns, Identity: "node-a", Duration: 2 * time.Second, Retry: 50 * time.Millisecond}
	if _, err := a.Acquire(dying); err != nil {
		t.Fatal(err)
	}
	die() // node-a's agent is gone: no renewal, no release

	b := &kubeletrestart.LeaseLock{Kube: env.Kube, Namespace: ns, Identity: "node-b", Duration: 2 * time.Second, Retry: 50 * time.Millisecond}
	// While node-a's Lease is fresh, node-b waits.
	short, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := b.Acquire(short); err == nil {
		t.Fatal("node-b took a Lease node-a holds")
	}
	ctx, cancel2 := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel2()
	release, err := b.Acquire(ctx)
	if err != nil {
		t.Fatalf("node-b never took the expired Lease: %v", err)
	}
	release(t.Context())
	lease, err := env.Kube.CoordinationV1().Leases(ns).Get(t.Context(), "pullpass-kubelet-restart", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity != nil {
		t.Fatalf("after release: %v, %v", lease, err)
	}
}

// The Kubernetes side of the sequence against a real API server: Node Ready, the pods the
// kubelet is starting on this node only, and a Node event in the agent's namespace.
func TestNodeReadyPodsStartingAndEvents(t *testing.T) {
	env := controlPlane.Env(t)
	ns := env.Namespace(t, nil)
	name := "restart-node-" + ns
	node, err := env.Kube.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Kube.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	h := kubeletrestart.KubeletHealth{Kube: env.Kube, Node: name}
	if ready, err := h.NodeReady(t.Context()); err != nil || ready {
		t.Fatalf("a Node with no Ready condition: ready %v, %v", ready, err)
	}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := env.Kube.CoreV1().Nodes().UpdateStatus(t.Context(), node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ready, err := h.NodeReady(t.Context()); err != nil || !ready {
		t.Fatalf("a Ready Node: ready %v, %v", ready, err)
	}

	pod := func(podName, nodeName string, waiting string) {
		t.Helper()
		p, err := env.Kube.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: podName},
			Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "x"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if waiting != "" {
			p.Status = corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "c",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}}}}
			if _, err := env.Kube.CoreV1().Pods(ns).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	pod("creating", name, "ContainerCreating")
	pod("backing-off", name, "ImagePullBackOff") // a restart does not disturb a back-off
	pod("elsewhere", "other-node", "ContainerCreating")
	busy := kubeletrestart.StartingPods{Kube: env.Kube, Node: name}
	testenv.Eventually(t, 10*time.Second, func() error {
		n, err := busy.StartingPods(t.Context())
		if err != nil || n != 1 {
			return fmt.Errorf("starting pods %d (%w), want 1", n, err)
		}
		return nil
	})

	kubeletrestart.NodeEvents{Kube: env.Kube, Node: name}.Event(t.Context(), "Warning", kubeletrestart.ReasonRolledBack, "why")
	evs, err := env.Kube.CoreV1().Events("").List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + name})
	if err != nil || len(evs.Items) != 1 || evs.Items[0].Reason != kubeletrestart.ReasonRolledBack || evs.Items[0].InvolvedObject.UID != node.UID {
		t.Fatalf("events of the Node %v, %v", evs, err)
	}
}
