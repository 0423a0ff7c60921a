package pullwatch_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registrytable"
	"github.com/pullpass/pullpass/pkg/testenv"

	"github.com/pullpass/pullpass/webhook/pullwatch"
)

const unauthorized = `failed to pull and unpack image "registry.example.com/app:1": failed to resolve reference "registry.example.com/app:1": pulling from host registry.example.com failed with status code [manifests 1]: 401 Unauthorized`

func pod(name string, waiting *corev1.ContainerStateWaiting) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID("uid-" + name),
		CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Hour))}}
	s := corev1.ContainerStatus{Name: "app", Image: "registry.example.com/app:1"}
	if waiting != nil {
		s.State.Waiting = waiting
	} else {
		s.State.Running = &corev1.ContainerStateRunning{}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{s}
	return p
}

func errPull(msg string) *corev1.ContainerStateWaiting {
	return &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: msg}
}

func backOff(msg string) *corev1.ContainerStateWaiting {
	return &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "registry.example.com/app:1": ErrImagePull: ` + msg}
}

type fixture struct {
	client *fake.Clientset
	reg    *prometheus.Registry
	w      *pullwatch.Watcher
	cancel context.CancelFunc
}

func start(t *testing.T, objects ...any) *fixture {
	return startCounting(t, time.Now().Add(-time.Minute), objects...)
}

// startCounting starts a watcher whose previous leader was last seen at countSince.
func startCounting(t *testing.T, countSince time.Time, objects ...any) *fixture {
	t.Helper()
	return startWaiting(t, countSince, 100*time.Millisecond, objects...)
}

// startWaiting is startCounting where a failure seen at the start waits eventWait for its event.
func startWaiting(t *testing.T, countSince time.Time, eventWait time.Duration, objects ...any) *fixture {
	t.Helper()
	f := &fixture{client: fake.NewClientset(), reg: prometheus.NewRegistry()}
	for _, o := range objects {
		f.create(t, o)
	}
	m, err := pullwatch.NewMetrics(f.reg)
	if err != nil {
		t.Fatal(err)
	}
	f.w, err = pullwatch.New(pullwatch.Config{Client: f.client, Metrics: m, GCPeriod: 50 * time.Millisecond, EventWait: eventWait,
		Registry: func(img, _ string, _ []corev1.LocalObjectReference) string {
			if strings.HasPrefix(img, "registry.example.com/") {
				return "example"
			}
			return "other"
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	t.Cleanup(cancel)
	go f.w.Run(ctx, countSince)
	return f
}

func (f *fixture) create(t *testing.T, o any) {
	t.Helper()
	var err error
	switch o := o.(type) {
	case *corev1.Pod:
		_, err = f.client.CoreV1().Pods(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
	case *corev1.Event:
		_, err = f.client.CoreV1().Events(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) update(t *testing.T, p *corev1.Pod) {
	t.Helper()
	p.ResourceVersion = ""
	if _, err := f.client.CoreV1().Pods(p.Namespace).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// scrape returns the value of a sample, or -1 when absent.
func (f *fixture) scrape(t *testing.T, name, reason string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["reason"] == reason && labels["registry"] == "example" && labels["namespace"] == "shop" {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

// eventually polls cond in the bubble's time (every test runs in synctest.Test): the deadline is
// the fake clock's, reached only when nothing else can run.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Poll(t, 5*time.Second, 10*time.Millisecond, testenv.Until(what, cond))
}

// settle lets the informers deliver what was just written and a few GC rounds pass, in the
// bubble's time: when it returns, every goroutine of the test is blocked with nothing left to
// do, so what did not change by then does not change (no sleep stands in for "nothing happened").
func settle() {
	synctest.Wait()
	time.Sleep(200 * time.Millisecond)
	synctest.Wait()
}

func TestOneEpisodeCountsOnceThroughRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		// A pod created now: counted whether the watcher sees it while it seeds or after.
		p := pod("web", errPull(unauthorized))
		p.CreationTimestamp = metav1.Now()
		f.create(t, p)
		eventually(t, "counted", func() bool { return f.scrape(t, "pullpass_image_pull_failures_total", "auth") == 1 })
		if got := f.scrape(t, "pullpass_image_pulls_failing", "auth"); got != 1 {
			t.Fatalf("failing now = %v, want 1", got)
		}
		// The kubelet backs off and retries, three times; it also records Failed events.
		for i := 0; i < 3; i++ {
			f.update(t, pod("web", backOff(unauthorized)))
			f.update(t, pod("web", errPull(unauthorized)))
		}
		f.create(t, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web.1", Namespace: "shop"}, Reason: "Failed",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web", UID: p.UID, FieldPath: "spec.containers{app}"},
			Message:        `Failed to pull image "registry.example.com/app:1": ` + unauthorized, LastTimestamp: metav1.Now()})
		settle()
		if got := f.scrape(t, "pullpass_image_pull_failures_total", "auth"); got != 1 {
			t.Fatalf("failures = %v after retries, want 1", got)
		}

		// Fixed: the container runs. The episode ends; a later failure is a new one.
		f.update(t, pod("web", nil))
		eventually(t, "no longer failing", func() bool { return f.scrape(t, "pullpass_image_pulls_failing", "auth") == -1 })
		time.Sleep(time.Second) // the bubble's clock moves only when told: the next failure is later
		f.update(t, pod("web", errPull(unauthorized)))
		eventually(t, "a second episode counted", func() bool { return f.scrape(t, "pullpass_image_pull_failures_total", "auth") == 2 })
	})
}

func TestFailuresUnderWayAtStartAreTrackedNotCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t, pod("old", errPull(unauthorized)))
		eventually(t, "tracked", func() bool { return f.scrape(t, "pullpass_image_pulls_failing", "auth") == 1 })
		settle()
		if got := f.scrape(t, "pullpass_image_pull_failures_total", "auth"); got > 0 {
			t.Fatalf("a failure under way at start was counted (%v): the previous leader counted it", got)
		}
	})
}

// A failure that began after the previous leader was last seen (during the handover) is counted
// by the new leader.
func TestFailuresBegunDuringHandoverAreCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		young := pod("young", errPull(unauthorized))
		young.CreationTimestamp = metav1.NewTime(time.Now().Add(-5 * time.Second))
		f := startCounting(t, time.Now().Add(-20*time.Second), pod("old", errPull(unauthorized)), young)
		eventually(t, "the young one counted", func() bool { return f.scrape(t, "pullpass_image_pull_failures_total", "auth") == 1 })
		settle()
		if got := f.scrape(t, "pullpass_image_pulls_failing", "auth"); got != 2 {
			t.Fatalf("failing now = %v, want both tracked", got)
		}
		if got := f.scrape(t, "pullpass_image_pull_failures_total", "auth"); got != 1 {
			t.Fatalf("failures = %v, want only the one begun during the handover", got)
		}
	})
}

// failedPull is the kubelet's Failed event for pod p's container "app", its pulls begun at first.
func failedPull(p *corev1.Pod, first time.Time) *corev1.Event {
	return &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: p.Name + ".failed", Namespace: p.Namespace}, Reason: "Failed",
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID, FieldPath: "spec.containers{app}"},
		Message:        `Failed to pull image "registry.example.com/app:1": ` + unauthorized,
		FirstTimestamp: metav1.NewTime(first), LastTimestamp: metav1.NewTime(first)}
}

// Seen on kind: a pod created just before the previous leader was last seen, whose pulls began
// just after. Its creation says nothing about when it began failing; its Failed event does, to
// the second, and the doubt goes to counting.
func TestPodCreatedBeforeHandoverFailingAfterIsCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		countSince := time.Now().Add(-10 * time.Second)
		early := pod("early", errPull(unauthorized))
		early.CreationTimestamp = metav1.NewTime(countSince.Add(-3 * time.Second))
		within := pod("within", errPull(unauthorized))
		within.CreationTimestamp = metav1.NewTime(countSince.Add(-3 * time.Second))
		before := pod("before", errPull(unauthorized))
		before.CreationTimestamp = metav1.NewTime(countSince.Add(-3 * time.Second))
		f := startCounting(t, countSince,
			early, failedPull(early, countSince.Add(2*time.Second)),
			within, failedPull(within, countSince), // the same second: may be after
			before, failedPull(before, countSince.Add(-2*time.Second)))
		eventually(t, "two counted", func() bool { return f.scrape(t, "pullpass_image_pull_failures_total", "auth") == 2 })
		settle()
		if got := f.scrape(t, "pullpass_image_pull_failures_total", "auth"); got != 2 {
			t.Fatalf("failures = %v, want the two begun after (or in the second of) the handover", got)
		}
	})
}

// A failing pod seen while seeding whose Failed event comes only after: the event decides.
func TestFailingStatusWaitsForItsEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		countSince := time.Now().Add(-10 * time.Second)
		p := pod("slow", errPull(unauthorized))
		p.CreationTimestamp = metav1.NewTime(countSince.Add(-time.Minute))
		f := startWaiting(t, countSince, time.Hour, p)
		eventually(t, "tracked", func() bool { return f.scrape(t, "pullpass_image_pulls_failing", "auth") == 1 })
		settle() // a few gc rounds: none may decide before the event
		f.create(t, failedPull(p, countSince.Add(5*time.Second)))
		eventually(t, "counted from its event", func() bool { return f.scrape(t, "pullpass_image_pull_failures_total", "auth") == 1 })
	})
}

// With no previous leader, or a pod created after the handover, a failure under way is counted
// at once, with no wait for its event: a pod that recovers a moment later is not lost.
func TestFailuresUnderWayCountAtOnceWhenNoLeaderCountedThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		countSince := time.Now().Add(-10 * time.Second)
		young := pod("young", errPull(unauthorized))
		young.CreationTimestamp = metav1.NewTime(countSince.Add(2 * time.Second))
		for name, f := range map[string]*fixture{
			"no previous leader":   startWaiting(t, time.Time{}, time.Hour, pod("web", errPull(unauthorized))),
			"created after it was": startWaiting(t, countSince, time.Hour, young),
		} {
			eventually(t, name+": counted", func() bool { return f.scrape(t, "pullpass_image_pull_failures_total", "auth") == 1 })
		}
	})
}

// A failure waiting for its event whose pod recovers first is settled, not dropped unseen.
func TestWaitingFailureSettledWhenItsPodRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		countSince := time.Now().Add(-10 * time.Second)
		p := pod("brief", errPull(unauthorized))
		p.CreationTimestamp = metav1.NewTime(countSince.Add(-time.Hour))
		f := startWaiting(t, countSince, time.Hour, p)
		eventually(t, "tracked", func() bool { return f.scrape(t, "pullpass_image_pulls_failing", "auth") == 1 })
		f.update(t, pod("brief", nil))
		eventually(t, "recovered", func() bool { return f.scrape(t, "pullpass_image_pulls_failing", "auth") == -1 })
		// Settled by its creation, an hour before the handover: the previous leader's.
		settle()
		if got := f.scrape(t, "pullpass_image_pull_failures_total", "auth"); got > 0 {
			t.Fatalf("failures = %v, want none: it began before the handover", got)
		}
		// A new failure of the same container is a new episode, counted.
		f.update(t, pod("brief", errPull(unauthorized)))
		eventually(t, "the next episode counted", func() bool { return f.scrape(t, "pullpass_image_pull_failures_total", "auth") == 1 })
	})
}

func TestEventAloneStartsAnEpisodeAndStaleEventsDoNotReopen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		time.Sleep(150 * time.Millisecond) // seeding over: client-go polls for the sync every 100 ms (in the bubble, at exactly 100 ms)
		p := pod("job", nil)
		f.create(t, p)
		ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "job.1", Namespace: "shop"}, Reason: "Failed",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "job", UID: p.UID, FieldPath: "spec.initContainers{app}"},
			Message:        `Failed to pull image "registry.example.com/app:1": rpc error: code = NotFound desc = failed to pull and unpack image "registry.example.com/app:1": failed to resolve reference "registry.example.com/app:1": registry.example.com/app:1: not found`,
			LastTimestamp:  metav1.NewTime(time.Now().Add(-time.Hour))}
		f.create(t, ev)
		eventually(t, "counted from the event", func() bool { return f.scrape(t, "pullpass_image_pull_failures_total", "not_found") == 1 })
		// "Error: ErrImagePull" events carry no detail and are not pulls of their own.
		f.create(t, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "job.2", Namespace: "shop"}, Reason: "Failed",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "job", UID: p.UID, FieldPath: "spec.initContainers{app}"},
			Message:        "Error: ErrImagePull"})
		settle()
		if got := f.scrape(t, "pullpass_image_pull_failures_total", "not_found"); got != 1 {
			t.Fatalf("failures = %v, want 1", got)
		}
	})
}

func TestPodDeletedEndsItsEpisodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		time.Sleep(150 * time.Millisecond) // seeding over: client-go polls for the sync every 100 ms (in the bubble, at exactly 100 ms)
		f.create(t, pod("gone", errPull(unauthorized)))
		eventually(t, "failing", func() bool { return f.scrape(t, "pullpass_image_pulls_failing", "auth") == 1 })
		if err := f.client.CoreV1().Pods("shop").Delete(context.Background(), "gone", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "no longer failing", func() bool { return f.scrape(t, "pullpass_image_pulls_failing", "auth") == -1 })
	})
}

func TestTableRegistry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		table := registrytable.Build([]*v1alpha1.Registry{{ObjectMeta: metav1.ObjectMeta{Name: "corp"},
			Spec: v1alpha1.RegistrySpec{Hosts: []string{"*.corp.example.com"}, Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: "p", Name: "s"}}}}})
		label := pullwatch.TableRegistry(func() *registrytable.Table { return table }, nil)
		for img, want := range map[string]string{
			"registry.corp.example.com/app:1": "corp",
			"nginx":                           "docker.io",
			"ghcr.io/acme/app@sha256:" + strings.Repeat("a", 64): "ghcr.io",
			"random.example.org/app":                             "other",
			"Not An Image":                                       "other",
		} {
			if got := label(img, "ns", nil); got != want {
				t.Errorf("%s: %q, want %q", img, got, want)
			}
		}
		if got := pullwatch.TableRegistry(func() *registrytable.Table { return nil }, nil)("nginx", "ns", nil); got != "docker.io" {
			t.Errorf("before the table is loaded: %q", got)
		}
	})
}

// Registries sharing a host: the one whose pull secret the pod holds, else a Cluster-scope one,
// else the most specific (the smaller name).
func TestTableRegistrySharedHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := func(name string, scope v1alpha1.Scope) *v1alpha1.Registry {
			return &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{Hosts: []string{"reg.example.com"}, Scope: scope,
				Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: "p", Name: name}}}}
		}
		namespaced := registrytable.Build([]*v1alpha1.Registry{reg("alpha", v1alpha1.ScopeNamespaced), reg("team-b", v1alpha1.ScopeNamespaced)})
		withCluster := registrytable.Build([]*v1alpha1.Registry{reg("alpha", v1alpha1.ScopeNamespaced), reg("node", v1alpha1.ScopeCluster)})
		// Two teams' registries delivered by the node, told apart by their namespaces' labels.
		teamNode := func(name, team string) *v1alpha1.Registry {
			r := reg(name, v1alpha1.ScopeNamespaced)
			r.Spec.Delivery = v1alpha1.DeliveryNode
			r.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": team}}
			return r
		}
		byNode := registrytable.Build([]*v1alpha1.Registry{teamNode("a-team", "a"), teamNode("b-team", "b"), reg("node", v1alpha1.ScopeCluster)})
		secrets := func(names ...string) (out []corev1.LocalObjectReference) {
			for _, n := range names {
				out = append(out, corev1.LocalObjectReference{Name: n})
			}
			return out
		}
		for _, tt := range []struct {
			name    string
			table   *registrytable.Table
			secrets []corev1.LocalObjectReference
			want    string
		}{
			{"the pod's pull secret", namespaced, secrets("own", "pullpass-team-b"), "team-b"},
			{"no pull secret of ours: the most specific", namespaced, secrets("own"), "alpha"},
			{"no pull secret: the node's", withCluster, nil, "node"},
			{"a pull secret beats the node's", withCluster, secrets("pullpass-alpha"), "alpha"},
			{"delivered by the node to the pod's namespace", byNode, nil, "b-team"},
		} {
			nsLabels := func(ns string) map[string]string { return map[string]string{"team": "b"} }
			if got := pullwatch.TableRegistry(func() *registrytable.Table { return tt.table }, nsLabels)("reg.example.com/app:1", "shop", tt.secrets); got != tt.want {
				t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
			}
		}
	})
}

// Images lists what the cached pods run or wait for, once each.
func TestImagesOfCachedPods(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t, pod("a", nil), pod("b", backOff(unauthorized)))
		other := pod("c", nil)
		other.Status.ContainerStatuses[0].Image = "team.azurecr.io/shop/app:2"
		f.create(t, other)
		eventually(t, "three pods cached", func() bool { return len(f.w.Images()) == 2 })
		var got []string
		for _, pi := range f.w.Images() {
			got = append(got, pi.Namespace+" "+pi.Image)
		}
		slices.Sort(got)
		if want := []string{"shop registry.example.com/app:1", "shop team.azurecr.io/shop/app:2"}; !slices.Equal(got, want) {
			t.Fatalf("Images() = %v, want %v", got, want)
		}
	})
}
