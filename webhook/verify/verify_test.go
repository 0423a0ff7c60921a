package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/registrylogin"
	"github.com/pullpass/pullpass/pkg/testenv"
	"github.com/pullpass/pullpass/webhook/pullwatch"
)

const password = "s3cret-passw0rd"

type fakeRegistries struct {
	mu   sync.Mutex
	regs map[string]*v1alpha1.Registry
}

func (f *fakeRegistries) Get(name string) (*v1alpha1.Registry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.regs[name]
	return r, ok
}

func (f *fakeRegistries) List() []*v1alpha1.Registry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*v1alpha1.Registry
	for _, r := range f.regs {
		out = append(out, r)
	}
	return out
}

// UpdateStatus stores the status like an API server (a stale resourceVersion conflicts).
func (f *fakeRegistries) UpdateStatus(_ context.Context, r *v1alpha1.Registry, _ metav1.UpdateOptions) (*v1alpha1.Registry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.regs[r.Name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "registries"}, r.Name)
	}
	if cur.ResourceVersion != r.ResourceVersion {
		return nil, apierrors.NewConflict(schema.GroupResource{Resource: "registries"}, r.Name, errors.New("stale"))
	}
	next := r.DeepCopy()
	next.ResourceVersion += "+"
	f.regs[r.Name] = next
	return next, nil
}

func (f *fakeRegistries) Get2(name string) *v1alpha1.Registry {
	r, _ := f.Get(name)
	return r
}

func (f *fakeRegistries) getAPI(_ context.Context, name string, _ metav1.GetOptions) (*v1alpha1.Registry, error) {
	r, ok := f.Get(name)
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "registries"}, name)
	}
	return r.DeepCopy(), nil
}

type statusAPI struct{ *fakeRegistries }

func (s statusAPI) Get(ctx context.Context, name string, o metav1.GetOptions) (*v1alpha1.Registry, error) {
	return s.getAPI(ctx, name, o)
}

type fakeCreds struct {
	err error
}

func (f fakeCreds) Credentials(context.Context, *v1alpha1.Registry) (userpass.Credentials, error) {
	if f.err != nil {
		return userpass.Credentials{}, f.err
	}
	return userpass.Credentials{Username: "bob", Password: password, Version: "secret/42"}, nil
}

// fakeLogin answers each host with a reason, and counts logins in flight.
type fakeLogin struct {
	mu       sync.Mutex
	byHost   map[string]registrylogin.Result
	logins   []string // host/repository
	limits   []string
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	delay    time.Duration
}

func (f *fakeLogin) Login(_ context.Context, host, repository string, c userpass.Credentials) registrylogin.Result {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxSeen.Load()
		if n <= m || f.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(f.delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logins = append(f.logins, host+"/"+repository)
	res, ok := f.byHost[host]
	if !ok {
		res = registrylogin.Result{Reason: registrylogin.Verified, Message: "Login Succeeded"}
	}
	res.Host, res.Requests = host, 2
	return res
}

func (f *fakeLogin) PullLimits(_ context.Context, host, repository, ref string, c userpass.Credentials) registrylogin.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits = append(f.limits, host+"|"+c.Username)
	return registrylogin.Result{Host: host, Reason: registrylogin.Verified, Requests: 3,
		PullLimit: &registrylogin.PullLimit{Limit: 200, Remaining: 150, Window: 6 * time.Hour}}
}

func registry(name string, hosts ...string) *v1alpha1.Registry {
	return &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 3, ResourceVersion: "1"},
		Spec: v1alpha1.RegistrySpec{Hosts: hosts, Auth: v1alpha1.RegistryAuth{
			SecretRef: &v1alpha1.SecretReference{Name: name, Namespace: "pullpass"}}},
	}
}

func newVerifier(t *testing.T, login *fakeLogin, creds CredentialSource, regs ...*v1alpha1.Registry) (*Verifier, *fakeRegistries, *PrometheusMetrics, *prometheus.Registry) {
	t.Helper()
	f := &fakeRegistries{regs: map[string]*v1alpha1.Registry{}}
	for _, r := range regs {
		f.regs[r.Name] = r
	}
	promReg := prometheus.NewRegistry()
	m, err := NewPrometheusMetrics(promReg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(Config{Registries: f, Credentials: creds, Status: statusAPI{f}, Login: login, Metrics: m,
		DockerHubHost: "hub.test", Now: func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return v, f, m, promReg
}

func verified(t *testing.T, f *fakeRegistries, name string) *metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(f.Get2(name).Status.Conditions, v1alpha1.ConditionVerified)
	if c == nil {
		t.Fatalf("registry %s has no Verified condition", name)
	}
	return c
}

// Every reason a login gives reaches the condition, with the registry's words and no password.
func TestEachReasonReachesTheCondition(t *testing.T) {
	for _, tc := range []struct {
		reason string
		status metav1.ConditionStatus
	}{
		{registrylogin.Verified, metav1.ConditionTrue},
		{registrylogin.Unauthorized, metav1.ConditionFalse},
		{registrylogin.Forbidden, metav1.ConditionFalse},
		{registrylogin.RateLimited, metav1.ConditionFalse},
		{registrylogin.TLSError, metav1.ConditionFalse},
		{registrylogin.Unreachable, metav1.ConditionFalse},
		{registrylogin.RegistryError, metav1.ConditionFalse},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			login := &fakeLogin{byHost: map[string]registrylogin.Result{
				"reg.example.com": {Reason: tc.reason, Message: "the registry's own words"},
			}}
			v, f, _, promReg := newVerifier(t, login, fakeCreds{}, registry("r", "reg.example.com/team/"))
			v.process(context.Background(), "r")
			c := verified(t, f, "r")
			if c.Reason != tc.reason || c.Status != tc.status || c.ObservedGeneration != 3 {
				t.Fatalf("condition %s %s (generation %d), want %s %s", c.Status, c.Reason, c.ObservedGeneration, tc.status, tc.reason)
			}
			if tc.reason != registrylogin.Verified && !strings.Contains(c.Message, "login to reg.example.com refused: the registry's own words") {
				t.Fatalf("message %q", c.Message)
			}
			ver := f.Get2("r").Status.Verification
			if ver == nil || ver.SourceVersion != "42" || ver.ObservedGeneration != 3 || ver.LastAttemptTime == nil ||
				(tc.status == metav1.ConditionTrue) != (ver.LastSuccessTime != nil) || len(ver.Hosts) != 1 {
				t.Fatalf("verification %+v", ver)
			}
			if login.logins[0] != "reg.example.com/team" {
				t.Fatalf("logged in to %v, want the pattern's path as the repository", login.logins)
			}
			if got := gauge(t, promReg, "pullpass_registry_verification_state", map[string]string{"registry": "r", "reason": tc.reason}); got != 1 {
				t.Fatalf("state gauge = %v", got)
			}
			noSecretIn(t, promReg, f)
		})
	}
}

func TestNotVerifiableUntilAHostIsSeen(t *testing.T) {
	login := &fakeLogin{}
	v, f, _, promReg := newVerifier(t, login, fakeCreds{}, registry("acr", "*.azurecr.io"))
	v.process(context.Background(), "acr")
	if c := verified(t, f, "acr"); c.Reason != NotVerifiable || c.Status != metav1.ConditionUnknown {
		t.Fatalf("%s %s, want Unknown NotVerifiable", c.Status, c.Reason)
	}
	if len(login.logins) != 0 {
		t.Fatalf("logged in to %v", login.logins)
	}
	if _, ok := gaugeOK(promReg, "pullpass_registry_verified", map[string]string{"registry": "acr"}); ok {
		t.Fatal("pullpass_registry_verified set for a registry that cannot be verified")
	}
	// Admission sees a pod pulling from one of its hosts (and one that is not its own).
	reg, _ := f.Get("acr")
	v.Seen().ObservePod([]*v1alpha1.Registry{reg}, []string{"myreg.azurecr.io/shop/app:1", "ghcr.io/x/y"})
	v.process(context.Background(), "acr")
	if c := verified(t, f, "acr"); c.Reason != registrylogin.Verified {
		t.Fatalf("after a host was seen: %s", c.Reason)
	}
	if len(login.logins) != 1 || login.logins[0] != "myreg.azurecr.io/shop/app" {
		t.Fatalf("logged in to %v, want the seen host and repository", login.logins)
	}
	// Literal registries stop asking once a pod was seen; glob ones keep learning hosts.
	lit := registry("lit", "reg.example.com")
	if !v.Seen().Wants([]*v1alpha1.Registry{lit}) {
		t.Fatal("a registry no pod was seen using wants nothing")
	}
	v.Seen().ObservePod([]*v1alpha1.Registry{lit}, []string{"reg.example.com/team/app:1"})
	if v.Seen().Wants([]*v1alpha1.Registry{lit}) || !v.Seen().Wants([]*v1alpha1.Registry{reg}) {
		t.Fatal("Wants: a seen literal registry still asks, or a glob one stopped")
	}
	// The seen repository is asked for next time (the host is already known: no new allocation).
	if allocs := testing.AllocsPerRun(100, func() {
		v.Seen().ObservePod([]*v1alpha1.Registry{reg}, []string{"myreg.azurecr.io/shop/app:1"})
	}); allocs != 0 {
		t.Fatalf("observing a known image allocates %v times", allocs)
	}
}

func TestNoCredentials(t *testing.T) {
	v, f, _, _ := newVerifier(t, &fakeLogin{}, fakeCreds{err: errors.New("source secret missing")}, registry("r", "reg.example.com"))
	if next := v.process(context.Background(), "r"); next != 0 {
		t.Fatalf("next = %s, want none (a source change enqueues it)", next)
	}
	if c := verified(t, f, "r"); c.Reason != NoCredentials || c.Status != metav1.ConditionUnknown {
		t.Fatalf("%s %s", c.Status, c.Reason)
	}
}

// A registry that verifies after failing calls Recovered once; a status write that conflicts with
// the keeper's is applied again on the registry as it is now.
func TestRecoveredOnceAndConflicts(t *testing.T) {
	login := &fakeLogin{byHost: map[string]registrylogin.Result{"reg.example.com": {Reason: registrylogin.Unauthorized}}}
	v, f, _, _ := newVerifier(t, login, fakeCreds{}, registry("r", "reg.example.com"))
	var recovered []string
	v.SetRecovered(func(_ context.Context, r string, _ time.Time) { recovered = append(recovered, r) })
	v.process(context.Background(), "r")
	login.mu.Lock()
	delete(login.byHost, "reg.example.com")
	login.mu.Unlock()
	// The keeper wrote the status meanwhile: the verifier's cached copy is stale.
	f.mu.Lock()
	stale := f.regs["r"].DeepCopy()
	f.regs["r"].ResourceVersion += "k"
	f.mu.Unlock()
	if err := v.write(context.Background(), stale, v.Verify(context.Background(), stale)); err != nil {
		t.Fatal(err)
	}
	if c := verified(t, f, "r"); c.Reason != registrylogin.Verified {
		t.Fatalf("after the fix: %s", c.Reason)
	}
	v.process(context.Background(), "r")
	if len(recovered) != 1 {
		t.Fatalf("Recovered called %d times, want once", len(recovered))
	}
}

func TestScheduleBacksOffWithJitter(t *testing.T) {
	v, _, _, _ := newVerifier(t, &fakeLogin{}, fakeCreds{})
	within := func(d, want time.Duration) bool { return d >= want*9/10 && d <= want*11/10 }
	for i, want := range []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute} {
		if d := v.next("r", false, 0); !within(d, want) {
			t.Fatalf("failure %d: next %s, want %s ±10%%", i+1, d, want)
		}
	}
	for range 10 {
		v.next("r", false, 0)
	}
	if d := v.next("r", false, 0); !within(d, time.Hour) {
		t.Fatalf("capped at %s, want the interval", d)
	}
	if d := v.next("r", true, 0); !within(d, time.Hour) {
		t.Fatalf("after success %s, want the interval", d)
	}
	if d := v.next("q", false, 10*time.Minute); !within(d, 10*time.Minute) {
		t.Fatalf("a 429's Retry-After: %s, want 10m", d)
	}
}

// Docker Hub's names log in where configured, then read the credentials' pull limit.
func TestDockerHubPullLimit(t *testing.T) {
	login := &fakeLogin{}
	v, f, _, promReg := newVerifier(t, login, fakeCreds{}, registry("hub", "docker.io"))
	v.process(context.Background(), "hub")
	if len(login.logins) != 1 || !strings.HasPrefix(login.logins[0], "hub.test/") || len(login.limits) != 1 || login.limits[0] != "hub.test|bob" {
		t.Fatalf("logins %v, limits %v", login.logins, login.limits)
	}
	c := verified(t, f, "hub")
	if c.Reason != registrylogin.Verified || !strings.Contains(c.Message, "pull limit 200 per 6h0m0s, 150 remaining") {
		t.Fatalf("%s %q", c.Reason, c.Message)
	}
	if l := f.Get2("hub").Status.Verification.PullLimit; l == nil || l.Remaining != 150 || l.WindowSeconds != 21600 {
		t.Fatalf("status pull limit %+v", l)
	}
	if got := gauge(t, promReg, "pullpass_registry_pulls_remaining", map[string]string{"registry": "hub"}); got != 150 {
		t.Fatalf("remaining gauge %v", got)
	}
	if got := counter(t, promReg, "pullpass_registry_verification_requests_total", map[string]string{"registry": "hub"}); got != 5 {
		t.Fatalf("requests %v, want 5 (login 2 + limit 3)", got)
	}
}

// Run verifies every registry, at most Workers at once, and again on Enqueue.
func TestRunBoundedAndEnqueue(t *testing.T) {
	login := &fakeLogin{delay: 20 * time.Millisecond}
	var regs []*v1alpha1.Registry
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		regs = append(regs, registry(n, n+".example.com"))
	}
	v, f, _, _ := newVerifier(t, login, fakeCreds{}, regs...)
	v.cfg.Workers = 2
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	waitUntil(t, func() bool {
		for _, r := range f.List() {
			if meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionVerified) == nil {
				return false
			}
		}
		return true
	})
	if m := login.maxSeen.Load(); m > 2 {
		t.Fatalf("%d logins at once, want at most 2", m)
	}
	login.mu.Lock()
	before := len(login.logins)
	login.mu.Unlock()
	v.Enqueue("a")
	waitUntil(t, func() bool { login.mu.Lock(); defer login.mu.Unlock(); return len(login.logins) == before+1 })
	cancel()
	<-done
	v.Enqueue("a") // after Run: nothing, and nothing blocks
}

func waitUntil(t *testing.T, f func() bool) {
	t.Helper()
	testenv.Poll(t, 10*time.Second, 5*time.Millisecond, testenv.Until("so", f))
}

func gaugeOK(reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if m.Gauge != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := gaugeOK(reg, name, labels)
	if !ok {
		t.Fatalf("no %s%v", name, labels)
	}
	return v
}

var counter = gauge

// noSecretIn checks no metric label and no status field carries the password.
func noSecretIn(t *testing.T, reg *prometheus.Registry, f *fakeRegistries) {
	t.Helper()
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), password) {
					t.Fatalf("metric %s label %s carries the password", mf.GetName(), l.GetName())
				}
			}
		}
	}
	for _, r := range f.List() {
		if s := fmt.Sprintf("%+v %+v", r.Status, r.Status.Verification); strings.Contains(s, password) {
			t.Fatal("status carries the password")
		}
	}
}

// The verifier's logs carry the registry's words, never the password (registrylogin scrubs what a
// registry echoes; the verifier logs nothing else of the credentials).
func TestLogsNeverCarryThePassword(t *testing.T) {
	var logs strings.Builder
	login := &fakeLogin{byHost: map[string]registrylogin.Result{"reg.example.com": {Reason: registrylogin.Unauthorized, Message: "incorrect username or password"}}}
	v, f, _, promReg := newVerifier(t, login, fakeCreds{}, registry("r", "reg.example.com"))
	v.cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	v.process(context.Background(), "r")
	if !strings.Contains(logs.String(), "incorrect username or password") {
		t.Fatalf("the refusal was not logged: %s", logs.String())
	}
	if strings.Contains(logs.String(), password) {
		t.Fatalf("a log line carries the password: %s", logs.String())
	}
	noSecretIn(t, promReg, f)
}

// A glob registry whose pods were admitted by another replica finds its host among the images
// pods use (the pull watcher's cache).
func TestGlobHostFromPodImages(t *testing.T) {
	login := &fakeLogin{}
	v, f, _, _ := newVerifier(t, login, fakeCreds{}, registry("acr", "*.azurecr.io"))
	v.SetPodImages(func() []pullwatch.PodImage {
		return []pullwatch.PodImage{{Namespace: "shop", Image: "nginx:1"}, {Namespace: "shop", Image: "team.azurecr.io/shop/app:2"}, {Namespace: "shop", Image: "a.b.azurecr.io/x:1"}}
	}, func(*v1alpha1.Registry, string) bool { return true })
	if next := v.process(context.Background(), "acr"); next == 0 {
		t.Fatal("no next verification scheduled")
	}
	if c := verified(t, f, "acr"); c.Reason != registrylogin.Verified {
		t.Fatalf("%s", c.Reason)
	}
	if len(login.logins) != 1 || login.logins[0] != "team.azurecr.io/shop/app" {
		t.Fatalf("logged in to %v", login.logins)
	}
}

// A glob registry's hosts come only from the pods it serves: a pod of a namespace it does not
// serve, pulling from a host the glob matches, must not get the registry's credentials sent there.
func TestGlobHostOnlyFromServedPods(t *testing.T) {
	login := &fakeLogin{}
	v, _, _, _ := newVerifier(t, login, fakeCreds{}, registry("acr", "*.azurecr.io"))
	v.SetPodImages(func() []pullwatch.PodImage {
		return []pullwatch.PodImage{
			{Namespace: "tenant", Image: "attacker.azurecr.io/x:1"},
			{Namespace: "shop", Image: "team.azurecr.io/shop/app:2"},
		}
	}, func(reg *v1alpha1.Registry, namespace string) bool { return reg.Name == "acr" && namespace == "shop" })
	v.process(context.Background(), "acr")
	if !slices.Equal(login.logins, []string{"team.azurecr.io/shop/app"}) {
		t.Fatalf("logged in to %v, want only the served pod's host", login.logins)
	}

	// Served nowhere: no host to log in to.
	login.logins = nil
	v.SetPodImages(func() []pullwatch.PodImage {
		return []pullwatch.PodImage{{Namespace: "tenant", Image: "attacker.azurecr.io/x:1"}}
	},
		func(*v1alpha1.Registry, string) bool { return false })
	v.process(context.Background(), "acr")
	if len(login.logins) != 0 {
		t.Fatalf("logged in to %v", login.logins)
	}
}

// The anonymous Docker Hub pull limit (the nodes' own), under registry="docker.io".
func TestAnonymousDockerHubLimit(t *testing.T) {
	login := &fakeLogin{}
	v, _, _, promReg := newVerifier(t, login, fakeCreds{})
	v.cfg.DockerHubAnonymous = true
	if next := v.process(context.Background(), anonymousKey); next < 54*time.Minute {
		t.Fatalf("next %s, want about the interval", next)
	}
	if len(login.limits) != 1 || login.limits[0] != "hub.test|" {
		t.Fatalf("limits read %v, want one anonymous read at hub.test", login.limits)
	}
	if got := gauge(t, promReg, "pullpass_registry_pulls_remaining", map[string]string{"registry": AnonymousDockerHub}); got != 150 {
		t.Fatalf("remaining %v", got)
	}
}
