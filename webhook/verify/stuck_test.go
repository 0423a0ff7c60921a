package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/pullpass/pullpass/pkg/pullfailure"
	"github.com/pullpass/pullpass/webhook/pullwatch"
)

func stuckPod(ns, name string, owned bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name)}}
	if owned {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app-1", UID: "rs", Controller: &yes}}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}
	return p
}

func TestStuckPodsRecreatedOnlyWhereAsked(t *testing.T) {
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	before := at.Add(-time.Minute)
	namespaces := []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "on", Annotations: map[string]string{RecreateAnnotation: "enabled"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "off", Annotations: map[string]string{RecreateAnnotation: "disabled"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	}
	pods := []*corev1.Pod{
		stuckPod("on", "owned", true), stuckPod("on", "bare", false), stuckPod("on", "notfound", true),
		stuckPod("on", "later", true), stuckPod("on", "other-registry", true),
		stuckPod("off", "owned", true), stuckPod("plain", "owned", true),
	}
	episodes := []pullwatch.Episode{
		{Namespace: "on", Pod: "owned", Registry: "r", Reason: pullfailure.Auth, Since: before},
		{Namespace: "on", Pod: "bare", Registry: "r", Reason: pullfailure.Auth, Since: before},
		{Namespace: "on", Pod: "notfound", Registry: "r", Reason: pullfailure.NotFound, Since: before},
		{Namespace: "on", Pod: "later", Registry: "r", Reason: pullfailure.Auth, Since: at.Add(time.Second)},
		{Namespace: "on", Pod: "other-registry", Registry: "q", Reason: pullfailure.Auth, Since: before},
		{Namespace: "off", Pod: "owned", Registry: "r", Reason: pullfailure.Auth, Since: before},
		{Namespace: "plain", Pod: "owned", Registry: "r", Reason: pullfailure.Auth, Since: before},
	}
	for _, defaultOn := range []bool{false, true} {
		client := fake.NewClientset()
		idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
		for _, ns := range namespaces {
			_ = idx.Add(ns)
		}
		for _, p := range pods {
			if _, err := client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		rec := record.NewFakeRecorder(10)
		s, err := NewStuckPods(StuckPodsConfig{Client: client, Failing: func() []pullwatch.Episode { return episodes },
			Namespaces: corelisters.NewNamespaceLister(idx), Default: defaultOn, Recorder: rec})
		if err != nil {
			t.Fatal(err)
		}
		s.Recover(context.Background(), "r", at)
		want := map[string]bool{"on/owned": true}
		if defaultOn {
			want["plain/owned"] = true
		}
		for _, p := range pods {
			_, err := client.CoreV1().Pods(p.Namespace).Get(context.Background(), p.Name, metav1.GetOptions{})
			gone := err != nil
			if gone != want[p.Namespace+"/"+p.Name] {
				t.Errorf("default %v: pod %s/%s deleted = %v, want %v", defaultOn, p.Namespace, p.Name, gone, want[p.Namespace+"/"+p.Name])
			}
		}
		close(rec.Events)
		n := 0
		for ev := range rec.Events {
			n++
			if !strings.Contains(ev, EventReason) || !strings.Contains(ev, "ReplicaSet app-1") || !strings.Contains(ev, "registry r") {
				t.Errorf("event %q", ev)
			}
		}
		if n != len(want) {
			t.Errorf("default %v: %d events, want %d (one per pod deleted)", defaultOn, n, len(want))
		}
	}
}
