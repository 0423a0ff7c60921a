package keeper_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/secrets"
	"github.com/pullpass/pullpass/pkg/testenv"
	"github.com/pullpass/pullpass/webhook/inject"
	"github.com/pullpass/pullpass/webhook/keeper"
)

type registries map[string]*v1alpha1.Registry

func (r registries) Get(name string) (*v1alpha1.Registry, bool) { v, ok := r[name]; return v, ok }
func (r registries) List() []*v1alpha1.Registry {
	var out []*v1alpha1.Registry
	for _, v := range r {
		out = append(out, v)
	}
	return out
}

// desired builds from a password the test sets, or fails like a missing source.
type desired struct {
	mu       sync.Mutex
	password string
	missing  bool
}

func (d *desired) setPassword(p string) { d.mu.Lock(); d.password = p; d.mu.Unlock() }
func (d *desired) getPassword() string  { d.mu.Lock(); defer d.mu.Unlock(); return d.password }

func (d *desired) setMissing(m bool) { d.mu.Lock(); d.missing = m; d.mu.Unlock() }

func (d *desired) Desired(_ context.Context, reg *v1alpha1.Registry) (*corev1.Secret, error) {
	d.mu.Lock()
	missing := d.missing
	d.mu.Unlock()
	if missing {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, "src")
	}
	return pullsecret.Build("", reg, userpass.Credentials{Username: "u", Password: d.getPassword()})
}
func (d *desired) ExpiresAt(context.Context, *v1alpha1.Registry) time.Time { return time.Time{} }
func (d *desired) NextRefresh(string) time.Time                            { return time.Time{} }

// statusRecorder records the keeper's status writes, and answers reads from api: the API
// server's Registries, the cache's own map unless a test makes them differ.
type statusRecorder struct {
	mu      sync.Mutex
	updates []*v1alpha1.Registry
	api     registries
}

func (s *statusRecorder) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.updates) }

// last is the last status written.
func (s *statusRecorder) last() *v1alpha1.Registry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.updates) == 0 {
		return &v1alpha1.Registry{}
	}
	return s.updates[len(s.updates)-1]
}

func (s *statusRecorder) Get(_ context.Context, name string, _ metav1.GetOptions) (*v1alpha1.Registry, error) {
	if r, ok := s.api[name]; ok {
		return r.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: v1alpha1.GroupName, Resource: "registries"}, name)
}

func (s *statusRecorder) UpdateStatus(_ context.Context, r *v1alpha1.Registry, _ metav1.UpdateOptions) (*v1alpha1.Registry, error) {
	s.mu.Lock()
	s.updates = append(s.updates, r.DeepCopy())
	s.mu.Unlock()
	return r, nil
}

type fixture struct {
	client  *fake.Clientset
	managed cache.Indexer
	ns      cache.Indexer
	regs    registries
	src     *desired
	status  *statusRecorder
	k       *keeper.Keeper
	reg     *prometheus.Registry
	metrics *keeper.PrometheusMetrics
}

func setup(t *testing.T) *fixture {
	f := &fixture{
		client:  fake.NewClientset(),
		managed: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}),
		ns:      cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		regs:    registries{"r": {ObjectMeta: metav1.ObjectMeta{Name: "r", Generation: 1}, Spec: v1alpha1.RegistrySpec{Hosts: []string{"r.io"}}}},
		src:     &desired{password: "p1"},
	}
	f.status = &statusRecorder{api: f.regs}
	for _, n := range []string{"a", "b"} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n, Annotations: map[string]string{inject.Annotation: inject.Enabled}}}
		_ = f.ns.Add(ns)
		if _, err := f.client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s, _ := pullsecret.Build(n, f.regs["r"], userpass.Credentials{Username: "u", Password: "p1"})
		s.UID = types.UID("uid-" + n)
		_ = f.managed.Add(s)
		if _, err := f.client.CoreV1().Secrets(n).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f.reg = prometheus.NewRegistry()
	var err error
	if f.metrics, err = keeper.NewPrometheusMetrics(f.reg); err != nil {
		t.Fatal(err)
	}
	f.k, err = keeper.New(keeper.Config{
		Client: f.client, RegistryAPI: f.status, Registries: f.regs, Desired: f.src,
		Managed: corelisters.NewSecretLister(f.managed), Namespaces: corelisters.NewNamespaceLister(f.ns),
		Policy: inject.Policy{Excluded: map[string]bool{}}, Metrics: f.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.client.ClearActions()
	return f
}

func (f *fixture) writes() (updates, deletes []string) {
	for _, a := range f.client.Actions() {
		if a.GetResource().Resource != "secrets" {
			continue
		}
		switch a.GetVerb() {
		case "update":
			updates = append(updates, a.GetNamespace())
		case "delete":
			deletes = append(deletes, a.GetNamespace())
		}
	}
	return
}

func TestNothingChangedWritesNothingButTheFirstStatus(t *testing.T) {
	f := setup(t)
	if err := f.k.Reconcile(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	if u, d := f.writes(); len(u)+len(d) != 0 {
		t.Fatalf("updates %v deletes %v with nothing changed", u, d)
	}
	if len(f.status.updates) != 1 {
		t.Fatalf("%d status writes, want 1", len(f.status.updates))
	}
	st := f.status.updates[0].Status
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue || st.Namespaces != 2 || st.LastRefreshTime == nil {
		t.Fatalf("status %+v", st)
	}
	// With that status in place, a second pass writes nothing at all.
	f.regs["r"] = f.status.updates[0]
	f.status.updates = nil
	if err := f.k.Reconcile(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	if len(f.status.updates) != 0 {
		t.Fatalf("status rewritten with nothing changed: %+v", f.status.updates[0].Status)
	}
}

func TestRotationUpdatesEveryNamespace(t *testing.T) {
	f := setup(t)
	f.src.password = "p2"
	if err := f.k.Reconcile(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	if u, d := f.writes(); len(u) != 2 || len(d) != 0 {
		t.Fatalf("updates %v deletes %v, want both namespaces updated", u, d)
	}
}

// The cache lags the API server (another writer changed the secret, its watch event not here
// yet): the rotation still lands in the same pass, from a fresh read, and the other writer's
// labels stay.
func TestStaleCacheConflictStillRotates(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	api := f.client.CoreV1().Secrets("a")
	cur, err := api.Get(ctx, pullsecret.Name("r"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Labels["team"] = "shop"
	cur.ResourceVersion = "2"
	if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API server refuses a write from a version it no longer holds, as it does.
	f.client.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.UpdateAction).GetObject().(*corev1.Secret)
		if s.Namespace == "a" && s.ResourceVersion != "2" {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, s.Name, fmt.Errorf("stale version %q", s.ResourceVersion))
		}
		return false, nil, nil
	})
	f.client.ClearActions()
	f.src.setPassword("p2")
	if err := f.k.Reconcile(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	got, err := api.Get(ctx, pullsecret.Name("r"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := f.src.Desired(ctx, f.regs["r"])
	if !pullsecret.UpToDate(got, want) || got.Labels["team"] != "shop" {
		t.Fatalf("namespace a after one pass: up to date %v, labels %v", pullsecret.UpToDate(got, want), got.Labels)
	}
}

// Another replica admitted pods with caches ahead of this one's: a Registry, a namespace, or a
// Registry's new selector this replica has not seen yet. The pull secrets made for them stay (the
// pods were admitted with them), and go only once the API server says they should.
func TestCachesBehindTheAPIServerDeleteNothing(t *testing.T) {
	ctx := context.Background()
	t.Run("registry not cached yet", func(t *testing.T) {
		f := setup(t)
		f.status.api = registries{"r": f.regs["r"]}
		delete(f.regs, "r")
		if err := f.k.Reconcile(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		if _, d := f.writes(); len(d) != 0 {
			t.Fatalf("deleted %v for a Registry the API server has", d)
		}
		delete(f.status.api, "r")
		if err := f.k.Reconcile(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		if _, d := f.writes(); len(d) != 2 {
			t.Fatalf("deleted %v once the Registry was gone, want a and b", d)
		}
	})
	t.Run("namespace not cached yet", func(t *testing.T) {
		f := setup(t)
		_ = f.ns.Delete(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}})
		if err := f.k.Reconcile(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		if _, d := f.writes(); len(d) != 0 {
			t.Fatalf("deleted %v in a namespace the API server serves", d)
		}
		if n := f.status.updates[len(f.status.updates)-1].Status.Namespaces; n != 2 {
			t.Fatalf("status counts %d namespaces, want 2", n)
		}
	})
	t.Run("selector not cached yet", func(t *testing.T) {
		f := setup(t)
		// The cache still has a selector that the API server's Registry (generation 2) dropped.
		newer := f.regs["r"].DeepCopy()
		newer.Generation = 2
		f.status.api = registries{"r": newer}
		old := f.regs["r"].DeepCopy()
		old.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}}
		f.regs["r"] = old
		if err := f.k.Reconcile(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		if _, d := f.writes(); len(d) != 0 {
			t.Fatalf("deleted %v by a stale selector", d)
		}
		if len(f.status.updates) != 0 {
			t.Fatalf("status written from a stale spec: %+v", f.status.updates[0].Status)
		}
		// Once the API server has the selector too, the secrets go.
		f.status.api["r"] = old
		if err := f.k.Reconcile(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		if _, d := f.writes(); len(d) != 2 {
			t.Fatalf("deleted %v, want a and b once the selector is the API server's", d)
		}
	})
}

func TestOptOutAndRegistryRemovalDelete(t *testing.T) {
	f := setup(t)
	ns, _, _ := f.ns.GetByKey("a")
	opted := ns.(*corev1.Namespace).DeepCopy()
	delete(opted.Annotations, inject.Annotation)
	_ = f.ns.Update(opted)
	if _, err := f.client.CoreV1().Namespaces().Update(context.Background(), opted, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.k.Reconcile(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	if u, d := f.writes(); len(u) != 0 || len(d) != 1 || d[0] != "a" {
		t.Fatalf("updates %v deletes %v, want only a's deleted", u, d)
	}
	f.client.ClearActions()
	delete(f.regs, "r")
	if err := f.k.Reconcile(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	if _, d := f.writes(); len(d) != 2 {
		t.Fatalf("deletes %v after the registry went, want its secrets in a and b", d)
	}
}

// A registry moved to delivery Node is the node's to serve: its pull secrets go from every
// namespace, so no Secret of it is left behind.
func TestDeliveryNodeTakesThePullSecretsAway(t *testing.T) {
	f := setup(t)
	moved := f.regs["r"].DeepCopy()
	moved.Spec.Delivery = v1alpha1.DeliveryNode
	f.regs["r"] = moved
	if err := f.k.Reconcile(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	if u, d := f.writes(); len(u) != 0 || len(d) != 2 {
		t.Fatalf("updates %v deletes %v, want the secrets in a and b deleted", u, d)
	}
}

// The source Secret is deleted (the API server says so, not only the cache): the credentials it
// gave are withdrawn from every namespace, the pull secrets kept empty for when it comes back
// (issue #24: an administrator withdraws a leaked credential so).
func TestMissingSourceWithdrawsSecretsAndSaysWhy(t *testing.T) {
	f := setup(t)
	f.regs["r"].Spec.Auth.SecretRef = &v1alpha1.SecretReference{Name: "src", Namespace: "pullpass"}
	f.src.setMissing(true)
	if err := f.k.Reconcile(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	if u, d := f.writes(); len(u) != 2 || len(d) != 0 {
		t.Fatalf("updates %v deletes %v: want both pull secrets emptied, none deleted", u, d)
	}
	for _, n := range []string{"a", "b"} {
		s, err := f.client.CoreV1().Secrets(n).Get(context.Background(), pullsecret.Name("r"), metav1.GetOptions{})
		if err != nil || string(s.Data[corev1.DockerConfigJsonKey]) != `{"auths":{}}` {
			t.Fatalf("pull secret in %s: %v, %s; want no credentials", n, err, s.Data)
		}
	}
	c := meta.FindStatusCondition(f.status.updates[0].Status.Conditions, v1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != keeper.ReasonSourceSecretMissing {
		t.Fatalf("condition %+v", c)
	}
	want := `
# HELP pullpass_credentials_ready 1 when usable credentials can be had for the registry, else 0 (Ready is also False when nothing serves it: see pullpass_registry_served).
# TYPE pullpass_credentials_ready gauge
pullpass_credentials_ready{registry="r"} 0
# HELP pullpass_credentials_refresh_errors_total Failed reads of a registry's credential source, by reason (AccessDenied, Throttled, CredentialsExpired, SourceSecretMissing, SourceUnavailable, ...).
# TYPE pullpass_credentials_refresh_errors_total counter
pullpass_credentials_refresh_errors_total{reason="SourceSecretMissing",registry="r"} 1
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "pullpass_credentials_ready", "pullpass_credentials_refresh_errors_total"); err != nil {
		t.Fatal(err)
	}
	// The registry goes: so do its series.
	delete(f.regs, "r")
	if err := f.k.Reconcile(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(f.reg); n != 0 {
		t.Fatalf("%d series left for a removed registry", n)
	}
}

// A source that cannot be read (the API server or AWS unavailable) keeps the last good
// credentials in the pull secrets for KeepLastGood, then withdraws them.
func TestUnreadableSourceKeepsCredentialsForABoundedTime(t *testing.T) {
	f := setup(t)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	k, err := keeper.New(keeper.Config{
		Client: f.client, RegistryAPI: f.status, Registries: f.regs, Desired: unavailable{}, Now: func() time.Time { return now },
		Managed: corelisters.NewSecretLister(f.managed), Namespaces: corelisters.NewNamespaceLister(f.ns),
		Policy: inject.Policy{Excluded: map[string]bool{}}, KeepLastGood: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Reconcile(context.Background(), "r")
	// The status says until when (issue #24).
	st := f.status.last().Status
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if st.LastGoodUntil == nil || !st.LastGoodUntil.Time.Equal(now.Add(time.Hour)) ||
		c == nil || !strings.Contains(c.Message, "last good credentials until 2026-12-06T13:00:00Z") {
		t.Fatalf("lastGoodUntil %v, Ready %+v: want 13:00 in both", st.LastGoodUntil, c)
	}
	now = now.Add(59 * time.Minute)
	_ = k.Reconcile(context.Background(), "r")
	if u, d := f.writes(); len(u)+len(d) != 0 {
		t.Fatalf("updates %v deletes %v within the hour: the last good credentials must stay", u, d)
	}
	now = now.Add(2 * time.Minute)
	_ = k.Reconcile(context.Background(), "r")
	if u, _ := f.writes(); len(u) != 2 {
		t.Fatalf("updates %v after the hour: want both pull secrets emptied", u)
	}
	if until := f.status.last().Status.LastGoodUntil; until != nil {
		t.Fatalf("lastGoodUntil %v once withdrawn, want unset", until)
	}
}

type unavailable struct{}

func (unavailable) Desired(context.Context, *v1alpha1.Registry) (*corev1.Secret, error) {
	return nil, apierrors.NewServiceUnavailable("etcd leader changed")
}
func (unavailable) ExpiresAt(context.Context, *v1alpha1.Registry) time.Time { return time.Time{} }
func (unavailable) NextRefresh(string) time.Time                            { return time.Time{} }

// gone is the informer's last view of a deleted pull secret of registry r.
func gone(namespace string, uid types.UID) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: pullsecret.Name("r"), UID: uid,
		Labels: map[string]string{secrets.LabelRegistry: "r", secrets.LabelRole: secrets.RolePullSecret}}}
}

func (f *fixture) creates() []string {
	var out []string
	for _, a := range f.client.Actions() {
		if a.GetResource().Resource == "secrets" && a.GetVerb() == "create" {
			out = append(out, a.GetNamespace())
		}
	}
	return out
}

// term runs the keeper until the test ends and waits for its first pass; until waits (10 s
// at most) for a condition while it runs.
func (f *fixture) term(t *testing.T) (ctx context.Context, until func(what string, cond func() bool)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.k.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	until = func(what string, cond func() bool) {
		t.Helper()
		testenv.Poll(t, 10*time.Second, 10*time.Millisecond, func() error {
			if cond() {
				return nil
			}
			return fmt.Errorf("not %s; actions %v", what, f.client.Actions())
		})
	}
	until("the first pass", func() bool { return f.status.count() > 0 })
	return ctx, until
}

// A pull secret somebody deletes (kubectl delete secret) comes back while its namespace is
// served: pods admitted with it must still pull. One the keeper deleted itself does not.
func TestDeletedPullSecretComesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := setup(t)
		ctx, waitFor := f.term(t)
		name := pullsecret.Name("r")
		// Somebody deletes a's pull secret; the informer tells the keeper.
		if err := f.client.CoreV1().Secrets("a").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		_ = f.managed.Delete(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name}})
		f.src.setPassword("p2") // and the source moved on meanwhile
		f.k.Deleted(gone("a", "uid-a"))
		waitFor("a's pull secret made again", func() bool { return slices.Contains(f.creates(), "a") })
		got, err := f.client.CoreV1().Secrets("a").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := f.src.Desired(ctx, f.regs["r"])
		if !pullsecret.UpToDate(got, want) {
			t.Fatal("made again with old credentials")
		}

		// b opts out: the keeper deletes its pull secret. b opts in again before the informer tells
		// of that deletion: the keeper's own deletion stays done (the next admission there makes it).
		optIn := func(n string, in bool) {
			o, _, _ := f.ns.GetByKey(n)
			ns := o.(*corev1.Namespace).DeepCopy()
			if in {
				ns.Annotations = map[string]string{inject.Annotation: inject.Enabled}
			} else {
				ns.Annotations = nil
			}
			_ = f.ns.Update(ns)
			if _, err := f.client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		optIn("b", false)
		f.k.Enqueue("r")
		waitFor("b's pull secret deleted", func() bool { _, d := f.writes(); return slices.Contains(d, "b") })
		_ = f.managed.Delete(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: name}})
		optIn("b", true)
		f.k.Deleted(gone("b", "uid-b"))
		// And one somebody deletes in a namespace that is not served stays gone too.
		if _, err := f.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		f.k.Deleted(gone("c", "uid-c"))
		readC := func() bool {
			for _, a := range f.client.Actions() {
				if g, ok := a.(k8stesting.GetAction); ok && a.GetResource().Resource == "namespaces" && g.GetName() == "c" {
					return true
				}
			}
			return false
		}
		waitFor("c read from the API server", readC)
		synctest.Wait() // the pass that read it ended: nothing is left to run
		if c := f.creates(); slices.Contains(c, "b") || slices.Contains(c, "c") {
			t.Fatalf("made again in %v: want only a", c)
		}
	})
}

// The keeper's own deletion is known by its secret's UID: when its event is lost (a relist that
// found a new secret of that name), a later deletion of another secret there is somebody else's.
func TestOwnDeletionMarkedByUID(t *testing.T) {
	f := setup(t)
	ctx, until := f.term(t)
	setB := func(annotations map[string]string) {
		o, _, _ := f.ns.GetByKey("b")
		ns := o.(*corev1.Namespace).DeepCopy()
		ns.Annotations = annotations
		_ = f.ns.Update(ns)
		if _, err := f.client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setB(nil)
	f.k.Enqueue("r")
	until("b's pull secret deleted", func() bool { _, d := f.writes(); return slices.Contains(d, "b") })
	_ = f.managed.Delete(gone("b", "uid-b")) // its event never reaches the keeper
	setB(map[string]string{inject.Annotation: inject.Enabled})
	f.k.Deleted(gone("b", "uid-b2"))
	until("b's pull secret made again", func() bool { return slices.Contains(f.creates(), "b") })
}

// The API server fails the reads and the first create of a recreation (a 429, a timeout): the
// pull secret still comes back, on a retry.
func TestDeletedPullSecretComesBackThroughAPIErrors(t *testing.T) {
	f := setup(t)
	var gets, creates atomic.Int32
	failOnce := func(n *atomic.Int32) k8stesting.ReactionFunc {
		return func(k8stesting.Action) (bool, runtime.Object, error) {
			if n.Add(1) == 1 {
				return true, nil, apierrors.NewTooManyRequests("slow down", 0)
			}
			return false, nil, nil
		}
	}
	f.client.PrependReactor("get", "namespaces", failOnce(&gets))
	f.client.PrependReactor("create", "secrets", failOnce(&creates))
	ctx, until := f.term(t)
	name := pullsecret.Name("r")
	if err := f.client.CoreV1().Secrets("a").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = f.managed.Delete(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name}})
	f.k.Deleted(gone("a", "uid-a"))
	until("made again through a failed namespace read and a failed create", func() bool {
		_, err := f.client.CoreV1().Secrets("a").Get(ctx, name, metav1.GetOptions{})
		return err == nil && gets.Load() >= 2 && creates.Load() >= 2
	})
}

// Work asked for before Run (informer events arrive while the controller's caches sync) is done
// once Run starts; after Run returned, asking blocks nothing.
func TestEnqueuedBeforeRunIsWorked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := setup(t)
		f.client.ClearActions()
		f.src.setPassword("rotated")
		f.k.Enqueue("r")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { f.k.Run(ctx); close(done) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if u, _ := f.writes(); slices.Contains(u, "a") && slices.Contains(u, "b") {
				break
			}
			if time.Now().After(deadline) {
				u, _ := f.writes()
				cancel()
				t.Fatalf("updates %v, want both namespaces rotated", u)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		<-done
		f.k.Enqueue("r")
		f.k.EnqueueAll()
	})
}

// A source that gives no credentials yet (its Secret not in the informer's cache a moment after
// the Registry appeared) is tried again with back-off, with no event or resync to ask for it.
func TestSourceNotReadyIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := setup(t)
		// The API server has the source; the cache does not yet.
		f.regs["r"].Spec.Auth.SecretRef = &v1alpha1.SecretReference{Name: "src", Namespace: "pullpass"}
		if _, err := f.client.CoreV1().Secrets("pullpass").Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "src", Namespace: "pullpass"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		f.client.ClearActions()
		f.src.setMissing(true)
		f.src.setPassword("p2")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan struct{})
		go func() { f.k.Run(ctx); close(done) }()
		f.k.Enqueue("r")
		synctest.Wait() // the first pass ended, its retry waits for its back-off
		if u, _ := f.writes(); len(u) != 0 {
			t.Fatalf("updates %v with no source", u)
		}
		f.src.setMissing(false) // no Enqueue: the keeper must come back on its own
		deadline := time.Now().Add(10 * time.Second)
		for {
			if u, _ := f.writes(); slices.Contains(u, "a") && slices.Contains(u, "b") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the keeper did not try the source again")
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		<-done
	})
}

type pullThroughCondition struct{ c *metav1.Condition }

func (p *pullThroughCondition) Condition(*v1alpha1.Registry) *metav1.Condition { return p.c }

// A pull-through cache's PullThrough condition goes into its status with Ready, is written again
// only when it changes, and goes when the registry is no cache any more.
func TestPullThroughCondition(t *testing.T) {
	f := setup(t)
	pt := &pullThroughCondition{c: &metav1.Condition{Type: v1alpha1.ConditionPullThrough, Status: metav1.ConditionFalse, Reason: "Conflict", Message: "m"}}
	k, err := keeper.New(keeper.Config{
		Client: f.client, RegistryAPI: f.status, Registries: f.regs, Desired: f.src,
		Managed: corelisters.NewSecretLister(f.managed), Namespaces: corelisters.NewNamespaceLister(f.ns),
		Policy: inject.Policy{Excluded: map[string]bool{}}, PullThrough: pt,
	})
	if err != nil {
		t.Fatal(err)
	}
	reconcile := func() *v1alpha1.Registry {
		t.Helper()
		f.status.updates = nil
		if err := k.Reconcile(context.Background(), "r"); err != nil {
			t.Fatal(err)
		}
		if len(f.status.updates) == 0 {
			return nil
		}
		f.regs["r"] = f.status.updates[len(f.status.updates)-1]
		return f.regs["r"]
	}
	r := reconcile()
	if c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionPullThrough); c == nil || c.Reason != "Conflict" ||
		meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady) == nil {
		t.Fatalf("conditions %+v", r.Status.Conditions)
	}
	if reconcile() != nil {
		t.Fatal("status written again with nothing changed")
	}
	pt.c = &metav1.Condition{Type: v1alpha1.ConditionPullThrough, Status: metav1.ConditionTrue, Reason: "Active", Message: "m2"}
	if r := reconcile(); r == nil || meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionPullThrough).Reason != "Active" {
		t.Fatalf("a changed condition was not written: %+v", r)
	}
	pt.c = nil
	if r := reconcile(); r == nil || meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionPullThrough) != nil {
		t.Fatalf("the condition of a registry that is no cache any more stayed: %+v", r)
	}
}

// A tenant's own Secrets that carry the labels of a registry's pull secrets, under other names
// (issue #24): the keeper neither rotates them into pull secrets, nor counts them, nor deletes
// them when the registry stops serving the namespace or goes. Its pull secret has one name.
func TestSecretsWithPullSecretLabelsUnderOtherNamesAreLeftAlone(t *testing.T) {
	f := setup(t)
	s, _ := pullsecret.Build("a", f.regs["r"], userpass.Credentials{Username: "u", Password: "p1"})
	lookalike := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tenant-own", Namespace: "a", UID: "uid-tenant", Labels: s.Labels},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"blob": []byte("the tenant's")}}
	_ = f.managed.Add(lookalike)
	if _, err := f.client.CoreV1().Secrets("a").Create(context.Background(), lookalike, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.client.ClearActions()
	f.src.setPassword("p2") // a rotation
	if err := f.k.Reconcile(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	delete(f.regs, "r") // and the registry goes
	if err := f.k.Reconcile(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	for _, a := range f.client.Actions() {
		if n, ok := a.(interface{ GetName() string }); ok && n.GetName() == "tenant-own" {
			t.Errorf("the keeper %s the tenant's Secret", a.GetVerb())
		}
		if u, ok := a.(k8stesting.UpdateAction); ok && u.GetObject().(metav1.Object).GetName() == "tenant-own" {
			t.Errorf("the keeper updated the tenant's Secret")
		}
	}
	if st := f.status.updates[0].Status; st.Namespaces != 2 {
		t.Errorf("status counts %d namespaces, want 2 (the tenant's Secret is no pull secret)", st.Namespaces)
	}
}
