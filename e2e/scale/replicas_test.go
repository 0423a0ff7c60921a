package scale

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

func TestLabel(t *testing.T) {
	l := `apiserver_flowcontrol_dispatched_requests_total{flow_schema="pullpass-scalebench-pullpass-webhook",priority_level="workload-low"} 42`
	if got := label(l, "flow_schema"); got != "pullpass-scalebench-pullpass-webhook" {
		t.Errorf("flow_schema = %q", got)
	}
	if got := groupResource(`apiserver_resource_objects{group="",resource="secrets"} 7`); got != "secrets" {
		t.Errorf("resource = %q", got)
	}
	if got := groupResource(`apiserver_resource_objects{group="coordination.k8s.io",resource="leases"} 7`); got != "leases.coordination.k8s.io" {
		t.Errorf("resource = %q", got)
	}
	if got := label(`x{subresource="status"} 1`, "resource"); got != "" {
		t.Errorf("resource of a line with subresource only = %q, want none", got)
	}
}

func TestReplicasCPU(t *testing.T) {
	pod := func(name, uid string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(uid)}}
	}
	before := []sample{{pod: pod("a", "1"), cpu: 10}, {pod: pod("b", "2"), cpu: 10}}
	after := []sample{
		{pod: pod("a", "1"), cpu: 16, rss: 100},              // 6 s in 60 s
		{pod: pod("b", "2"), cpu: 1, rss: 50, restarts: 1},   // restarted
		{pod: pod("c", "3"), cpu: 2, rss: 300, leader: true}, // new pod
	}
	got := replicas(before, after, time.Minute)
	if got[0].CPU != 0.1 || got[1].CPU != -1 || got[2].CPU != -1 {
		t.Errorf("CPU = %v, %v, %v; want 0.1, -1, -1", got[0].CPU, got[1].CPU, got[2].CPU)
	}
	if unread := replicas(before, []sample{{pod: pod("a", "1"), err: errors.New("connection refused")}}, time.Minute); unread[0].Unread != "connection refused" || unread[0].CPU != -1 {
		t.Errorf("a replica unread: %+v", unread[0])
	}
	b := Binary{Replicas: got}
	if w := b.Worst(); w.Pod != "c" {
		t.Errorf("worst = %s, want c", w.Pod)
	}
	if rss, _, cpu := b.Sum(); rss != 450 || cpu != 0.1 {
		t.Errorf("sum = %v RSS, %v CPU; want 450, 0.1", rss, cpu)
	}
	if l, ok := b.Leader(); !ok || l.Pod != "c" || len(b.Standbys()) != 2 {
		t.Errorf("leader %v %v, standbys %v", l, ok, b.Standbys())
	}
}

func TestLeader(t *testing.T) {
	lease := func(holder string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "pullpass", Name: "pullpass-keeper"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
	}
	pod := func(name string, host bool) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{HostNetwork: host}}
	}
	for _, tc := range []struct {
		name, holder string
		pods         []corev1.Pod
		want         string
	}{
		{"by pod name", "pullpass-controller-x-1_abcdef", []corev1.Pod{pod("pullpass-controller-x-1", false), pod("pullpass-controller-x-2", false)}, "pullpass-controller-x-1"},
		{"alone on the host network", "vm_abcdef", []corev1.Pod{pod("pullpass-controller-x-1", true)}, "pullpass-controller-x-1"},
		{"several on host networks, none named", "vm_abcdef", []corev1.Pod{pod("a", true), pod("b", true)}, ""},
		{"a pod not on the host network is never guessed", "other_abcdef", []corev1.Pod{pod("a", false)}, ""},
		{"nobody", "", []corev1.Pod{pod("a", true)}, ""},
	} {
		b := &binaries{kube: fake.NewClientset(lease(tc.holder)), namespace: "pullpass", lease: "pullpass-keeper"}
		got, err := b.leader(context.Background(), tc.pods)
		if err != nil || got != tc.want {
			t.Errorf("%s: leader = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestWriteTableOfAStoppedRun(t *testing.T) {
	var buf bytes.Buffer
	Result{}.WriteTable(&buf, 5)
	if strings.Count(buf.String(), "\n") != 2 {
		t.Errorf("a run stopped before any figure wrote more than the header:\n%s", buf.String())
	}
	r := Result{PullSecrets: 10, AdmissionP50: time.Second, PlainAdmissionP50: time.Second, QuietPeriod: time.Minute,
		Idle:   Steady{Webhook: Binary{Replicas: []Replica{{Pod: "w", RSS: 1 << 20}}}, Controller: Binary{Replicas: []Replica{{Pod: "c", Leader: true, RSS: 1 << 20}}}},
		Loaded: Steady{Webhook: Binary{Replicas: []Replica{{Pod: "w", RSS: 2 << 20}}}, Controller: Binary{Replicas: []Replica{{Pod: "c", Leader: true, RSS: 4 << 20}}}}}
	buf.Reset()
	r.WriteTable(&buf, 5)
	for _, want := range []string{"| webhook, worst of 1 replicas: RSS | 2.0 MiB | 1.0 MiB | 2.00 |", "| controller leader (c): RSS | 4.0 MiB | 1.0 MiB | 4.00 |", "none running (one replica)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}
