package inject_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/slok/kubewebhook/v2/pkg/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registrytable"
	"github.com/pullpass/pullpass/webhook/inject"
)

type fakeNamespaces map[string]*corev1.Namespace

func (f fakeNamespaces) Namespace(_ context.Context, name string) (*corev1.Namespace, error) {
	if ns, ok := f[name]; ok {
		return ns, nil
	}
	return nil, errors.New("namespace lookup failed")
}

type fakeTable struct{ t *registrytable.Table }

func (f fakeTable) Table() *registrytable.Table { return f.t }

type fakeSecrets struct {
	fail    map[string]bool
	mu      sync.Mutex
	ensured []string
}

func (f *fakeSecrets) Ensure(_ context.Context, ns string, reg *v1alpha1.Registry, dryRun bool) (string, error) {
	if f.fail[reg.Name] {
		return "", errors.New("apiserver unavailable")
	}
	if !dryRun {
		f.mu.Lock()
		f.ensured = append(f.ensured, ns+"/"+reg.Name)
		f.mu.Unlock()
	}
	return "pullpass-" + reg.Name, nil
}

type countingRecorder struct {
	injected, skipped, errors, rewritten, rewriteSkipped, ahead map[string]int
}

func newCounting() *countingRecorder {
	return &countingRecorder{map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}}
}
func (c *countingRecorder) Injected(r string)       { c.injected[r]++ }
func (c *countingRecorder) Skipped(r string)        { c.skipped[r]++ }
func (c *countingRecorder) Error(k string)          { c.errors[k]++ }
func (c *countingRecorder) Rewritten(r string)      { c.rewritten[r]++ }
func (c *countingRecorder) RewriteSkipped(r string) { c.rewriteSkipped[r]++ }
func (c *countingRecorder) AdmittedAhead(r string)  { c.ahead[r]++ }

func registry(name string, scope v1alpha1.Scope, sel *metav1.LabelSelector, hosts ...string) *v1alpha1.Registry {
	return &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.RegistrySpec{
			Hosts: hosts, Scope: scope, NamespaceSelector: sel,
			Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: name, Namespace: "pullpass"}},
		},
	}
}

func namespace(name string, annotations, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations, Labels: labels}}
}

var optedIn = map[string]string{inject.Annotation: inject.Enabled}

type podSpec struct {
	init, containers, ephemeral []string
	secrets                     []string
	annotations                 map[string]string
}

func pod(s podSpec) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team-a", Annotations: s.annotations}}
	for i, img := range s.init {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "init" + string(rune('a'+i)), Image: img})
	}
	for i, img := range s.containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c" + string(rune('a'+i)), Image: img})
	}
	for i, img := range s.ephemeral {
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "e" + string(rune('a'+i)), Image: img}})
	}
	for _, n := range s.secrets {
		p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
	}
	return p
}

func TestMutate(t *testing.T) {
	regs := []*v1alpha1.Registry{
		registry("ghcr", "", nil, "ghcr.io"),
		registry("ghcr-team", "", nil, "ghcr.io/team"),
		registry("ecr", v1alpha1.ScopeNamespaced, nil, "*.dkr.ecr.*.amazonaws.com"),
		registry("hub", "", nil, "docker.io"),
		registry("node-served", v1alpha1.ScopeCluster, nil, "quay.io"),
		registry("team-b-only", "", &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}, "registry.gitlab.com"),
		registry("node-per-namespace", v1alpha1.ScopeNamespaced, nil, "nvcr.io"),
	}
	regs[len(regs)-1].Spec.Delivery = v1alpha1.DeliveryNode
	namespaces := fakeNamespaces{
		"team-a":   namespace("team-a", optedIn, map[string]string{"team": "a"}),
		"team-b":   namespace("team-b", optedIn, map[string]string{"team": "b"}),
		"plain":    namespace("plain", nil, nil),
		"disabled": namespace("disabled", map[string]string{inject.Annotation: inject.Disabled}, nil),
	}
	tests := []struct {
		name        string
		namespace   string
		clusterWide bool
		op          model.AdmissionReviewOp
		in          podSpec
		want        podSpec // the whole expected pod
		wantSkip    string
		wantErr     string
		wantAhead   map[string]int
		failSecrets map[string]bool
	}{
		{
			name: "one private image gets its secret", namespace: "team-a",
			in:   podSpec{containers: []string{"ghcr.io/org/app:v1"}},
			want: podSpec{containers: []string{"ghcr.io/org/app:v1"}, secrets: []string{"pullpass-ghcr"}},
		},
		{
			name: "every container kind, deduplicated, sorted by registry, user's secrets first", namespace: "team-a",
			in: podSpec{
				init:       []string{"123456789012.dkr.ecr.eu-west-1.amazonaws.com/migrate:1"},
				containers: []string{"nginx", "ghcr.io/team/api:2", "ghcr.io/other/x", "ghcr.io/team/api:2"},
				ephemeral:  []string{"busybox"},
				secrets:    []string{"my-own", "pullpass-hub"},
			},
			want: podSpec{
				init:       []string{"123456789012.dkr.ecr.eu-west-1.amazonaws.com/migrate:1"},
				containers: []string{"nginx", "ghcr.io/team/api:2", "ghcr.io/other/x", "ghcr.io/team/api:2"},
				ephemeral:  []string{"busybox"},
				secrets:    []string{"my-own", "pullpass-hub", "pullpass-ecr", "pullpass-ghcr", "pullpass-ghcr-team"},
			},
		},
		{
			name: "Cluster-scope registries are the node agent's", namespace: "team-a",
			in: podSpec{containers: []string{"quay.io/org/app"}}, want: podSpec{containers: []string{"quay.io/org/app"}}, wantSkip: inject.SkipNoMatch,
		},
		{
			name: "Namespaced registries delivered by the node get no pull secret", namespace: "team-a",
			in: podSpec{containers: []string{"nvcr.io/org/app"}}, want: podSpec{containers: []string{"nvcr.io/org/app"}}, wantSkip: inject.SkipNoMatch,
		},
		{
			name: "namespaceSelector keeps a registry from other namespaces", namespace: "team-a",
			in: podSpec{containers: []string{"registry.gitlab.com/g/p"}}, want: podSpec{containers: []string{"registry.gitlab.com/g/p"}}, wantSkip: inject.SkipNoMatch,
		},
		{
			name: "namespaceSelector gives a registry to matching namespaces", namespace: "team-b",
			in:   podSpec{containers: []string{"registry.gitlab.com/g/p"}},
			want: podSpec{containers: []string{"registry.gitlab.com/g/p"}, secrets: []string{"pullpass-team-b-only"}},
		},
		{
			name: "namespace not opted in", namespace: "plain",
			in: podSpec{containers: []string{"ghcr.io/org/app"}}, want: podSpec{containers: []string{"ghcr.io/org/app"}}, wantSkip: inject.SkipNamespaceNotIn,
		},
		{
			name: "cluster-wide mode serves plain namespaces", namespace: "plain", clusterWide: true,
			in:   podSpec{containers: []string{"ghcr.io/org/app"}},
			want: podSpec{containers: []string{"ghcr.io/org/app"}, secrets: []string{"pullpass-ghcr"}},
		},
		{
			name: "cluster-wide mode respects a namespace that opted out", namespace: "disabled", clusterWide: true,
			in: podSpec{containers: []string{"ghcr.io/org/app"}}, want: podSpec{containers: []string{"ghcr.io/org/app"}}, wantSkip: inject.SkipNamespaceNotIn,
		},
		{
			name: "excluded namespace", namespace: "kube-system", clusterWide: true,
			in: podSpec{containers: []string{"ghcr.io/org/app"}}, want: podSpec{containers: []string{"ghcr.io/org/app"}}, wantSkip: inject.SkipNamespaceExcl,
		},
		{
			name: "pod opted out", namespace: "team-a",
			in:   podSpec{containers: []string{"ghcr.io/org/app"}, annotations: map[string]string{inject.Annotation: inject.Disabled}},
			want: podSpec{containers: []string{"ghcr.io/org/app"}, annotations: map[string]string{inject.Annotation: inject.Disabled}}, wantSkip: inject.SkipPodOptOut,
		},
		{
			name: "invalid images are left to the kubelet", namespace: "team-a",
			in:   podSpec{containers: []string{"Not:Valid:", "ghcr.io/org/app"}},
			want: podSpec{containers: []string{"Not:Valid:", "ghcr.io/org/app"}, secrets: []string{"pullpass-ghcr"}},
		},
		{
			name: "updates are left alone", namespace: "team-a", op: model.OperationUpdate,
			in: podSpec{containers: []string{"ghcr.io/org/app"}}, want: podSpec{containers: []string{"ghcr.io/org/app"}},
		},
		{
			name: "namespace lookup failure fails open", namespace: "unknown",
			in: podSpec{containers: []string{"ghcr.io/org/app"}}, want: podSpec{containers: []string{"ghcr.io/org/app"}}, wantErr: inject.ErrorNamespace,
		},
		{
			// A pod's pull secrets can never be added later, and the kubelet reads them at every
			// pull attempt: the reference goes in, and the secret is written after admission.
			name: "a secret that cannot be written yet is referred to all the same", namespace: "team-a", failSecrets: map[string]bool{"ghcr-team": true},
			in:        podSpec{containers: []string{"ghcr.io/org/app", "ghcr.io/team/api"}},
			want:      podSpec{containers: []string{"ghcr.io/org/app", "ghcr.io/team/api"}, secrets: []string{"pullpass-ghcr", "pullpass-ghcr-team"}},
			wantAhead: map[string]int{"ghcr-team": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newCounting()
			m, err := inject.New(inject.Config{
				Namespaces: namespaces, Registries: fakeTable{registrytable.Build(regs)}, Secrets: &fakeSecrets{fail: tt.failSecrets},
				ClusterWide: tt.clusterWide, ExcludedNamespaces: []string{"kube-system"}, Metrics: rec,
				BackgroundTimeout: time.Second, EnsureTimeout: 300 * time.Millisecond, // the failing secret: admitted ahead soon, its writer gone soon after the test
			})
			if err != nil {
				t.Fatal(err)
			}
			op := tt.op
			if op == "" {
				op = model.OperationCreate
			}
			p := pod(tt.in)
			p.Namespace = tt.namespace
			res, err := m.Mutate(context.Background(), &model.AdmissionReview{Operation: op, Namespace: tt.namespace}, p)
			if err != nil {
				t.Fatalf("Mutate returned an error; it must fail open: %v", err)
			}
			got := p
			if res.MutatedObject != nil {
				got = res.MutatedObject.(*corev1.Pod)
			}
			want := pod(tt.want)
			want.Namespace = tt.namespace
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("pod (-want +got):\n%s", diff)
			}
			if tt.wantSkip != "" && rec.skipped[tt.wantSkip] != 1 {
				t.Fatalf("skips %v, want one %s", rec.skipped, tt.wantSkip)
			}
			if tt.wantErr != "" && rec.errors[tt.wantErr] != 1 {
				t.Fatalf("errors %v, want one %s", rec.errors, tt.wantErr)
			}
			if tt.wantErr == "" && len(rec.errors) != 0 {
				t.Fatalf("unexpected errors %v", rec.errors)
			}
			if !maps.Equal(rec.ahead, tt.wantAhead) && (len(rec.ahead) != 0 || len(tt.wantAhead) != 0) {
				t.Fatalf("pods admitted ahead of their secret %v, want %v", rec.ahead, tt.wantAhead)
			}
		})
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	sec := &fakeSecrets{}
	m, err := inject.New(inject.Config{
		Namespaces: fakeNamespaces{"team-a": namespace("team-a", optedIn, nil)},
		Registries: fakeTable{registrytable.Build([]*v1alpha1.Registry{registry("ghcr", "", nil, "ghcr.io")})},
		Secrets:    sec,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := pod(podSpec{containers: []string{"ghcr.io/a/b"}})
	res, err := m.Mutate(context.Background(), &model.AdmissionReview{Operation: model.OperationCreate, Namespace: "team-a", DryRun: true}, p)
	if err != nil || res.MutatedObject == nil {
		t.Fatalf("dry run: %v, %v", res, err)
	}
	if got := res.MutatedObject.(*corev1.Pod).Spec.ImagePullSecrets; len(got) != 1 || got[0].Name != "pullpass-ghcr" {
		t.Fatalf("dry run pod secrets %v", got)
	}
	if len(sec.ensured) != 0 {
		t.Fatalf("dry run wrote secrets: %v", sec.ensured)
	}
}

func TestTableNotLoadedFailsOpen(t *testing.T) {
	rec := newCounting()
	m, _ := inject.New(inject.Config{
		Namespaces: fakeNamespaces{"team-a": namespace("team-a", optedIn, nil)},
		Registries: fakeTable{}, Secrets: &fakeSecrets{}, Metrics: rec,
	})
	p := pod(podSpec{containers: []string{"ghcr.io/a/b"}})
	res, err := m.Mutate(context.Background(), &model.AdmissionReview{Operation: model.OperationCreate, Namespace: "team-a"}, p)
	if err != nil || res.MutatedObject != nil || len(p.Spec.ImagePullSecrets) != 0 || rec.errors[inject.ErrorTableNotLoaded] != 1 {
		t.Fatalf("res %v err %v secrets %v errors %v", res, err, p.Spec.ImagePullSecrets, rec.errors)
	}
}

type panickingSecrets struct{}

func (panickingSecrets) Ensure(context.Context, string, *v1alpha1.Registry, bool) (string, error) {
	panic("bug")
}

// A panic fails open, whether the pod needs one pull secret or several (ensured at once).
func TestPanicFailsOpen(t *testing.T) {
	for _, images := range [][]string{{"ghcr.io/a/b"}, {"ghcr.io/a/b", "quay.io/c/d"}} {
		rec := newCounting()
		m, _ := inject.New(inject.Config{
			Namespaces: fakeNamespaces{"team-a": namespace("team-a", optedIn, nil)},
			Registries: fakeTable{registrytable.Build([]*v1alpha1.Registry{registry("ghcr", "", nil, "ghcr.io"), registry("quay", "", nil, "quay.io")})},
			Secrets:    panickingSecrets{}, Metrics: rec,
		})
		res, err := m.Mutate(context.Background(), &model.AdmissionReview{Operation: model.OperationCreate, Namespace: "team-a"}, pod(podSpec{containers: images}))
		if err != nil || res == nil || res.MutatedObject != nil || rec.errors[inject.ErrorPanic] != 1 {
			t.Fatalf("%v: res %v err %v errors %v", images, res, err, rec.errors)
		}
	}
}

// The pull secrets of a pod are ensured at once: each Ensure below returns only once all
// three have started (or fails after 10 s, as it would if they ran one after the other).
func TestEnsuresAtOnce(t *testing.T) {
	sec := &barrierSecrets{n: 3, all: make(chan struct{})}
	rec := newCounting()
	m, _ := inject.New(inject.Config{
		Namespaces: fakeNamespaces{"team-a": namespace("team-a", optedIn, nil)},
		Registries: fakeTable{registrytable.Build([]*v1alpha1.Registry{registry("a", "", nil, "a.io"), registry("b", "", nil, "b.io"), registry("c", "", nil, "c.io")})},
		Secrets:    sec, Metrics: rec, EnsureTimeout: 30 * time.Second,
	})
	add, _ := m.Plan(context.Background(), &model.AdmissionReview{Operation: model.OperationCreate, Namespace: "team-a"}, pod(podSpec{containers: []string{"c.io/x", "a.io/x", "b.io/x"}}))
	if got := fmt.Sprint(add); got != "[{pullpass-a} {pullpass-b} {pullpass-c}]" {
		t.Fatalf("added %s, want a, b and c in name order", got)
	}
	if len(rec.ahead) != 0 {
		t.Fatalf("pods admitted ahead of their secrets %v: the writes did not all finish", rec.ahead)
	}
}

// blockingSecrets writes nothing until release is closed: a slow ECR, STS or API server.
type blockingSecrets struct {
	release chan struct{}
	written chan string
}

func (s *blockingSecrets) Ensure(ctx context.Context, ns string, reg *v1alpha1.Registry, _ bool) (string, error) {
	select {
	case <-s.release:
		s.written <- ns + "/" + reg.Name
		return "pullpass-" + reg.Name, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// A source slower than admission may wait (issue #24): the pod is admitted within the bound with
// the reference to its pull secret, counted; the write goes on after admission and lands, with
// the review's own context long done.
func TestSlowSourceAdmitsWithTheReference(t *testing.T) {
	sec := &blockingSecrets{release: make(chan struct{}), written: make(chan string, 1)}
	rec := newCounting()
	m, _ := inject.New(inject.Config{
		Namespaces: fakeNamespaces{"team-a": namespace("team-a", optedIn, nil)},
		Registries: fakeTable{registrytable.Build([]*v1alpha1.Registry{registry("ecr", "", nil, "*.dkr.ecr.*.amazonaws.com")})},
		Secrets:    sec, Metrics: rec, EnsureTimeout: 50 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	add, _ := m.Plan(ctx, &model.AdmissionReview{Operation: model.OperationCreate, Namespace: "team-a"},
		pod(podSpec{containers: []string{"123456789012.dkr.ecr.eu-west-1.amazonaws.com/app"}}))
	cancel() // the review has answered
	if got := fmt.Sprint(add); got != "[{pullpass-ecr}]" {
		t.Fatalf("added %s, want the ECR registry's pull secret", got)
	}
	if rec.ahead["ecr"] != 1 || len(rec.errors) != 0 {
		t.Fatalf("ahead %v, errors %v: want one pod admitted ahead of its secret, no error", rec.ahead, rec.errors)
	}
	close(sec.release)
	select {
	case got := <-sec.written:
		if got != "team-a/ecr" {
			t.Fatalf("wrote %s", got)
		}
	case <-time.After(time.Minute):
		t.Fatal("the pull secret was never written after admission")
	}
}

// flakySecrets fails the first fails writes, then writes.
type flakySecrets struct {
	mu      sync.Mutex
	fails   int
	calls   int
	written chan struct{}
}

func (s *flakySecrets) Ensure(_ context.Context, _ string, reg *v1alpha1.Registry, _ bool) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls <= s.fails {
		return "", errors.New("apiserver unavailable")
	}
	if s.calls == s.fails+1 {
		close(s.written)
	}
	return "pullpass-" + reg.Name, nil
}

// A source a moment behind (a few failed tries) is tried again while admission may wait: the
// pod is admitted with its secret written.
func TestBriefFailureIsRetriedInAdmission(t *testing.T) {
	sec := &flakySecrets{fails: 2, written: make(chan struct{})}
	rec := newCounting()
	m, _ := inject.New(inject.Config{
		Namespaces: fakeNamespaces{"team-a": namespace("team-a", optedIn, nil)},
		Registries: fakeTable{registrytable.Build([]*v1alpha1.Registry{registry("ghcr", "", nil, "ghcr.io")})},
		Secrets:    sec, Metrics: rec, EnsureTimeout: 30 * time.Second,
	})
	add, _ := m.Plan(context.Background(), &model.AdmissionReview{Operation: model.OperationCreate, Namespace: "team-a"}, pod(podSpec{containers: []string{"ghcr.io/a/b"}}))
	select {
	case <-sec.written:
	default:
		t.Fatal("admitted before the secret was written")
	}
	if got := fmt.Sprint(add); got != "[{pullpass-ghcr}]" || len(rec.ahead) != 0 {
		t.Fatalf("added %s, ahead %v", got, rec.ahead)
	}
}

// A write that fails at admission is tried again after it, until it lands.
func TestFailedWriteIsRetriedAfterAdmission(t *testing.T) {
	sec := &flakySecrets{fails: 2, written: make(chan struct{})}
	rec := newCounting()
	m, _ := inject.New(inject.Config{
		Namespaces: fakeNamespaces{"team-a": namespace("team-a", optedIn, nil)},
		Registries: fakeTable{registrytable.Build([]*v1alpha1.Registry{registry("ghcr", "", nil, "ghcr.io")})},
		Secrets:    sec, Metrics: rec, EnsureTimeout: 100 * time.Millisecond, // no time for a second try
	})
	add, _ := m.Plan(context.Background(), &model.AdmissionReview{Operation: model.OperationCreate, Namespace: "team-a"}, pod(podSpec{containers: []string{"ghcr.io/a/b"}}))
	if got := fmt.Sprint(add); got != "[{pullpass-ghcr}]" || rec.ahead["ghcr"] != 1 {
		t.Fatalf("added %s, ahead %v", got, rec.ahead)
	}
	select {
	case <-sec.written:
	case <-time.After(time.Minute):
		t.Fatal("the failed write was never tried again")
	}
}

type barrierSecrets struct {
	n       int
	mu      sync.Mutex
	arrived int
	all     chan struct{}
}

func (s *barrierSecrets) Ensure(_ context.Context, _ string, reg *v1alpha1.Registry, _ bool) (string, error) {
	s.mu.Lock()
	if s.arrived++; s.arrived == s.n {
		close(s.all)
	}
	s.mu.Unlock()
	select {
	case <-s.all:
		return "pullpass-" + reg.Name, nil
	case <-time.After(10 * time.Second):
		return "", errors.New("the other Ensure calls never started")
	}
}
