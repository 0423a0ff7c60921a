package app

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pullpass/pullpass/pkg/testenv"
)

func agentDaemonSet() (*appsv1.DaemonSet, []*corev1.Pod) {
	sel := map[string]string{"app.kubernetes.io/component": "agent"}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "pullpass-agent", Namespace: "pullpass", UID: types.UID("ds-uid")},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: sel}}}
	owned := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID}}
	return ds, []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "agent-a", Namespace: "pullpass", Labels: sel, OwnerReferences: owned}},
		{ObjectMeta: metav1.ObjectMeta{Name: "agent-b", Namespace: "pullpass", Labels: sel, OwnerReferences: owned}},
	}
}

// The hook deletes the DaemonSet and returns only once its pods are gone (the garbage collector
// deletes them; the agents take pullpass off their nodes meanwhile, their RBAC still there).
func TestPreDeleteDeletesTheDaemonSetAndWaitsForItsPods(t *testing.T) {
	ds, pods := agentDaemonSet()
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "not-owned", Namespace: "pullpass", Labels: ds.Spec.Selector.MatchLabels}}
	kube := fake.NewClientset(ds, pods[0], pods[1], other)
	done := make(chan error, 1)
	go func() {
		done <- PreDelete(t.Context(), kube, "pullpass", ds.Name, time.Minute, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	}()
	testenv.Poll(t, 10*time.Second, 10*time.Millisecond, func() error {
		_, err := kube.AppsV1().DaemonSets("pullpass").Get(t.Context(), ds.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("the DaemonSet was not deleted: %w", err)
	})
	// One agent still stopping: the hook waits.
	if err := kube.CoreV1().Pods("pullpass").Delete(t.Context(), pods[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the hook returned (%v) while an agent was still running", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := kube.CoreV1().Pods("pullpass").Delete(t.Context(), pods[1].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hook did not return once every agent was gone")
	}
}

// A DaemonSet already gone is nothing to do; agents that outlive the wait do not block the
// uninstall.
func TestPreDeleteNeverBlocksTheUninstall(t *testing.T) {
	if err := PreDelete(t.Context(), fake.NewClientset(), "pullpass", "pullpass-agent", time.Minute, time.Millisecond, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("no DaemonSet: %v", err)
	}
	ds, pods := agentDaemonSet()
	kube := fake.NewClientset(ds, pods[0])
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := PreDelete(ctx, kube, "pullpass", ds.Name, 50*time.Millisecond, 10*time.Millisecond, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("an agent left after the wait: %v, want no error", err)
	}
}
