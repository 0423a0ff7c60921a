package pullwatch

import (
	"reflect"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// A pod's record holds what the watcher reads of it, in the order of its statuses, and costs a
// fraction of the Pod it replaces.
func TestRecordPodKeepsWhatTheWatcherReads(t *testing.T) {
	created := metav1.Now()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u1", ResourceVersion: "9", CreationTimestamp: created,
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a": "b"}},
		Spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pullpass-ghcr"}},
			Containers: []corev1.Container{{Name: "app", Image: "ghcr.io/shop/web:1"}}},
		Status: corev1.PodStatus{
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", Image: "ghcr.io/shop/init:1",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "ghcr.io/shop/web:1",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "401 Unauthorized"}}}},
			EphemeralContainerStatuses: []corev1.ContainerStatus{{Name: "debug", Image: "busybox",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}},
		},
	}
	out, err := recordPod(p)
	if err != nil {
		t.Fatal(err)
	}
	want := &podRecord{
		ObjectMeta:  metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u1", ResourceVersion: "9", CreationTimestamp: created},
		PullSecrets: []corev1.LocalObjectReference{{Name: "pullpass-ghcr"}},
		Containers: []containerRecord{{Name: "init", Image: "ghcr.io/shop/init:1"},
			{Name: "app", Image: "ghcr.io/shop/web:1", Failing: true, Message: "401 Unauthorized"},
			{Name: "debug", Image: "busybox"}},
	}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("record %+v\nwant %+v", out, want)
	}
	if key, err := cache.MetaNamespaceKeyFunc(out); err != nil || key != "shop/web" {
		t.Fatalf("store key %q, %v", key, err)
	}
	cp := want.DeepCopyObject().(*podRecord)
	cp.Containers[0].Image, cp.PullSecrets[0].Name = "changed", "changed"
	if want.Containers[0].Image != "ghcr.io/shop/init:1" || want.PullSecrets[0].Name != "pullpass-ghcr" {
		t.Fatal("a deep copy shares its slices with the original")
	}
	if rec, pod := unsafe.Sizeof(podRecord{}), unsafe.Sizeof(corev1.Pod{}); rec*3 > pod {
		t.Fatalf("a record is %d bytes, a Pod %d: want a third at most", rec, pod)
	}
	if rec, st := unsafe.Sizeof(containerRecord{}), unsafe.Sizeof(corev1.ContainerStatus{}); rec*3 > st {
		t.Fatalf("a container's record is %d bytes, its status %d: want a third at most", rec, st)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "shop/web", Obj: out}
	if got, _ := recordPod(tomb); got != any(tomb) {
		t.Fatal("a tombstone was changed")
	}
}
