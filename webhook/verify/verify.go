// Package verify logs in to every registry with its current credentials, as a client does before a
// pull, and writes the outcome into the Registry's Verified condition: a wrong password shows
// within seconds of being set, before any pod fails on it. One replica runs it at a time (the
// controller's leader). It reads credentials and writes Registry status only: never a pull secret.
//
// A registry is verified when it or its source changes, then on a slow schedule (Interval, with
// jitter) and after a failure with a doubling back-off; a few at a time (Workers), each login
// bounded in time by the login client.
package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/image"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/registrylogin"
	"github.com/pullpass/pullpass/webhook/pullwatch"
)

// Reasons of the Verified condition besides registrylogin's.
const (
	// NotVerifiable: only glob hosts, and no pod was seen using one yet.
	NotVerifiable = "NotVerifiable"
	// NoCredentials: the source gives no credentials (the Ready condition says why).
	NoCredentials = "NoCredentials"
)

// Docker Hub: the registry its hosts are served from, and the repository Docker documents for
// reading pull limits with a HEAD.
const (
	DockerHubRegistry   = "index.docker.io"
	dockerHubLimitsRepo = "ratelimitpreview/test"
	dockerHubLimitsRef  = "latest"
	// AnonymousDockerHub is the registry label of the anonymous pull limits (the nodes' own).
	AnonymousDockerHub = "docker.io"
	anonymousKey       = "\x00docker.io-anonymous"
)

// Registries gives the cached Registry objects.
type Registries interface {
	Get(name string) (*v1alpha1.Registry, bool)
	List() []*v1alpha1.Registry
}

// CredentialSource gives a registry's current credentials (pullsecret.Ensurer does, from the same
// cache the keeper uses).
type CredentialSource interface {
	Credentials(ctx context.Context, reg *v1alpha1.Registry) (userpass.Credentials, error)
}

// StatusAPI reads and writes Registry status (registryclient.Client does).
type StatusAPI interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*v1alpha1.Registry, error)
	UpdateStatus(ctx context.Context, r *v1alpha1.Registry, opts metav1.UpdateOptions) (*v1alpha1.Registry, error)
}

// Login logs in to a registry (registrylogin.Client does).
type Login interface {
	Login(ctx context.Context, host, repository string, creds userpass.Credentials) registrylogin.Result
	PullLimits(ctx context.Context, host, repository, reference string, creds userpass.Credentials) registrylogin.Result
}

// Config configures the Verifier.
type Config struct {
	Registries  Registries
	Credentials CredentialSource
	Status      StatusAPI
	Login       Login
	// Interval between verifications of a registry that passed (default 1h, ±10% jitter).
	Interval time.Duration
	// RetryAfter is the first wait after a failure, doubled on each one up to Interval (default 30s).
	RetryAfter time.Duration
	// Workers is how many logins run at once (default 4).
	Workers int
	// MaxHosts bounds the hosts logged in to per registry (default 4).
	MaxHosts int
	// DockerHubHost is where Docker Hub's names are logged in to (default index.docker.io).
	DockerHubHost string
	// DockerHubAnonymous also reads the anonymous pull limit, every Interval.
	DockerHubAnonymous bool
	// Recovered is called when a registry verifies after failing (stuck pods are recreated).
	Recovered func(ctx context.Context, registry string, at time.Time)
	// PodImages lists the images pods in the cluster use (the pull watcher's pod cache), where glob
	// patterns find hosts when admission on this replica has seen none.
	PodImages func() []pullwatch.PodImage
	// Serves reports whether a registry's credentials reach the pods of a namespace. Only those
	// pods' images choose a glob registry's hosts: a pod the registry does not serve would send
	// its credentials to a host of its choosing. Nil: pod images are not used.
	Serves  func(reg *v1alpha1.Registry, namespace string) bool
	Metrics Metrics
	// QueueMetrics, when set, measures the work queue (its name: pullpass-verifier).
	QueueMetrics workqueue.MetricsProvider
	Logger       *slog.Logger
	Now          func() time.Time
}

// Verifier verifies registries from a queue. It runs once per process (the controller exits
// when it stops leading), so the queue is made with it.
type Verifier struct {
	cfg   Config
	seen  *Seen
	queue workqueue.TypedRateLimitingInterface[string]

	mu       sync.Mutex
	failures map[string]int
}

// New returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.Registries == nil || cfg.Credentials == nil || cfg.Status == nil || cfg.Login == nil {
		return nil, errors.New("invalid configuration: registries, credentials, status and login are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Hour
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 30 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.MaxHosts <= 0 {
		cfg.MaxHosts = 4
	}
	if cfg.DockerHubHost == "" {
		cfg.DockerHubHost = DockerHubRegistry
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "pullpass-verifier", MetricsProvider: cfg.QueueMetrics})
	v := &Verifier{cfg: cfg, queue: q, failures: map[string]int{}}
	v.seen = newSeen(v.Enqueue)
	return v, nil
}

// SetRecovered sets Config.Recovered before Run (the stuck pods need the pull watcher, built later).
func (v *Verifier) SetRecovered(f func(ctx context.Context, registry string, at time.Time)) {
	v.mu.Lock()
	v.cfg.Recovered = f
	v.mu.Unlock()
}

// SetPodImages sets Config.PodImages and Config.Serves before Run (the pull watcher is built
// later).
func (v *Verifier) SetPodImages(f func() []pullwatch.PodImage, serves func(reg *v1alpha1.Registry, namespace string) bool) {
	v.mu.Lock()
	v.cfg.PodImages, v.cfg.Serves = f, serves
	v.mu.Unlock()
}

// Seen is where admission and the pull watcher report the images pods use: glob registries are
// verified on those hosts, and every login asks for a repository pods pull.
func (v *Verifier) Seen() *Seen { return v.seen }

// Enqueue asks for a registry to be verified now; before Run, it waits for Run.
func (v *Verifier) Enqueue(registry string) { v.queue.Add(registry) }

// Run verifies every registry, then keeps them verified until ctx ends. It is called once: the
// queue is shut down when it returns.
func (v *Verifier) Run(ctx context.Context) {
	q := v.queue
	defer q.ShutDown()
	// Spread the first round over a few seconds, so a new leader does not log in everywhere at once.
	regs := v.cfg.Registries.List()
	for i, r := range regs {
		q.AddAfter(r.Name, time.Duration(i)*50*time.Millisecond)
	}
	if v.cfg.DockerHubAnonymous {
		q.Add(anonymousKey)
	}
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	var wg sync.WaitGroup
	for range v.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				name, quit := q.Get()
				if quit {
					return
				}
				next := v.process(ctx, name)
				q.Forget(name)
				if next > 0 && ctx.Err() == nil {
					q.AddAfter(name, next)
				}
				q.Done(name)
			}
		}()
	}
	wg.Wait()
}

// process verifies one registry and returns when to verify it again (0: only on a change).
func (v *Verifier) process(ctx context.Context, name string) time.Duration {
	if name == anonymousKey {
		res := v.cfg.Login.PullLimits(ctx, v.cfg.DockerHubHost, dockerHubLimitsRepo, dockerHubLimitsRef, userpass.Credentials{})
		v.cfg.Metrics.Requests(AnonymousDockerHub, res.Requests)
		if res.PullLimit != nil || res.OK() {
			v.cfg.Metrics.PullLimit(AnonymousDockerHub, res.PullLimit)
		}
		v.cfg.Logger.Debug("anonymous Docker Hub pull limit", "reason", res.Reason, "limit", res.PullLimit)
		return v.next(name, res.OK() || res.Reason == registrylogin.RateLimited, res.RetryAfter)
	}
	reg, ok := v.cfg.Registries.Get(name)
	if !ok {
		v.cfg.Metrics.Forget(name)
		v.seen.forget(name)
		v.mu.Lock()
		delete(v.failures, name)
		v.mu.Unlock()
		return 0
	}
	out := v.Verify(ctx, reg)
	if err := v.write(ctx, reg, out); err != nil {
		v.cfg.Logger.Error("writing verification status", "registry", name, "err", err)
	}
	switch out.Reason {
	case NoCredentials:
		return 0 // a source change enqueues it again
	case NotVerifiable:
		// A seen host enqueues it; pods this replica did not admit are looked for again later.
		return v.next(name, false, 0)
	}
	return v.next(name, out.Reason == registrylogin.Verified, out.RetryAfter)
}

// next is the wait before the next verification: the interval after a success, a doubling
// back-off after failures (at least what a 429 asked for), each with ±10% jitter.
func (v *Verifier) next(name string, ok bool, retryAfter time.Duration) time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	d := v.cfg.Interval
	if ok {
		delete(v.failures, name)
	} else {
		v.failures[name]++
		d = v.cfg.RetryAfter
		for i := 1; i < v.failures[name] && d < v.cfg.Interval; i++ {
			d *= 2
		}
		d = max(min(d, v.cfg.Interval), retryAfter)
	}
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

// Outcome is a registry's verification.
type Outcome struct {
	Reason, Message string
	Hosts           []string
	SourceVersion   string
	PullLimit       *registrylogin.PullLimit
	RetryAfter      time.Duration
}

// Verify logs in to the registry's hosts with its credentials; the first refusal is the outcome.
func (v *Verifier) Verify(ctx context.Context, reg *v1alpha1.Registry) Outcome {
	creds, err := v.cfg.Credentials.Credentials(ctx, reg)
	var stale *credentials.StaleError
	if err != nil && !errors.As(err, &stale) {
		v.cfg.Metrics.Verified(reg.Name, NoCredentials)
		return Outcome{Reason: NoCredentials, Message: "the credential source gives no credentials (see the Ready condition)"}
	}
	out := Outcome{SourceVersion: strings.TrimPrefix(creds.Version, "secret/")}
	if !strings.HasPrefix(creds.Version, "secret/") {
		out.SourceVersion = ""
	}
	targets := v.targets(reg)
	if len(targets) == 0 {
		out.Reason = NotVerifiable
		out.Message = "only glob host patterns, and no pod was seen pulling from a host they match yet"
		v.cfg.Metrics.Verified(reg.Name, NotVerifiable)
		return out
	}
	requests := 0
	out.Reason, out.Message = registrylogin.Verified, "Login Succeeded"
	for _, t := range targets {
		out.Hosts = append(out.Hosts, t.host)
		res := v.cfg.Login.Login(ctx, t.login, t.repository, creds)
		requests += res.Requests
		if res.OK() && t.dockerHub {
			// Docker Hub: the pull limit of these credentials, from a HEAD that is not a pull.
			lim := v.cfg.Login.PullLimits(ctx, t.login, dockerHubLimitsRepo, dockerHubLimitsRef, creds)
			requests += lim.Requests
			if lim.OK() || lim.Reason == registrylogin.RateLimited {
				res = lim
				v.cfg.Metrics.PullLimit(reg.Name, lim.PullLimit)
			}
		} else if res.PullLimit != nil {
			v.cfg.Metrics.PullLimit(reg.Name, res.PullLimit)
		}
		if res.PullLimit != nil {
			out.PullLimit = res.PullLimit
		}
		if !res.OK() {
			out.Reason, out.RetryAfter = res.Reason, res.RetryAfter
			out.Message = fmt.Sprintf("login to %s refused: %s", t.host, res.Message)
			if res.Reason == registrylogin.RateLimited && res.PullLimit != nil && strings.HasPrefix(res.Message, "no pulls left") {
				out.Message = fmt.Sprintf("%s: %s", t.host, res.Message)
			}
			break
		}
	}
	if out.Reason == registrylogin.Verified && out.PullLimit != nil {
		out.Message = fmt.Sprintf("Login Succeeded; pull limit %d per %s, %d remaining", out.PullLimit.Limit, out.PullLimit.Window, out.PullLimit.Remaining)
	}
	v.cfg.Metrics.Requests(reg.Name, requests)
	v.cfg.Metrics.Verified(reg.Name, out.Reason)
	if out.Reason == registrylogin.Verified {
		v.cfg.Metrics.Success(reg.Name, v.cfg.Now())
	}
	v.cfg.Metrics.InUse(reg.Name, reg.Status.Namespaces > 0 || reg.Spec.EffectiveScope() == v1alpha1.ScopeCluster || v.seen.any(reg.Name))
	v.cfg.Logger.Info("registry verified", "registry", reg.Name, "reason", out.Reason, "hosts", out.Hosts, "requests", requests, "message", out.Message)
	return out
}

type target struct {
	host, login, repository string
	dockerHub               bool
}

// targets are the hosts to log in to: each literal host, and for globs the hosts pods were seen
// pulling from; with the repository a pod pulls (else the pattern's path, else none).
func (v *Verifier) targets(reg *v1alpha1.Registry) []target {
	var out []target
	have := map[string]bool{}
	add := func(host, repository string) {
		if have[host] || len(out) >= v.cfg.MaxHosts {
			return
		}
		have[host] = true
		t := target{host: host, login: host, repository: repository}
		if isDockerHub(host) {
			t.login, t.dockerHub = v.cfg.DockerHubHost, true
		}
		if seen := v.seen.repository(reg.Name, host); seen != "" {
			t.repository = seen
		}
		out = append(out, t)
	}
	for _, h := range reg.Spec.Hosts {
		host, path, _ := strings.Cut(h, "/")
		if !strings.Contains(host, "*") {
			add(host, strings.Trim(path, "/"))
			continue
		}
		p, err := match.ParsePattern(h)
		if err != nil {
			continue
		}
		found := false
		for _, s := range v.seen.hostsOf(reg.Name) {
			if p.Matches(s.host + "/" + s.repository) {
				add(s.host, "")
				found = true
			}
		}
		if !found {
			// Admitted by another replica, or before this term: the images of the pods the
			// registry serves.
			for _, img := range v.podImages(reg) {
				if ref, err := image.Parse(img); err == nil && p.Matches(ref.Repository()) {
					add(ref.Host, ref.Path)
				}
			}
		}
	}
	return out
}

// podImages returns the images of the pods reg serves.
func (v *Verifier) podImages(reg *v1alpha1.Registry) []string {
	v.mu.Lock()
	f, serves := v.cfg.PodImages, v.cfg.Serves
	v.mu.Unlock()
	if f == nil || serves == nil {
		return nil
	}
	var out []string
	for _, pi := range f() {
		if serves(reg, pi.Namespace) {
			out = append(out, pi.Image)
		}
	}
	return out
}

// write puts the outcome into the Verified condition and status.verification; on a conflict it
// reads the registry again. A registry that verifies after failing is reported to Recovered.
func (v *Verifier) write(ctx context.Context, cached *v1alpha1.Registry, out Outcome) error {
	now := metav1.NewTime(v.cfg.Now().Truncate(time.Second))
	status := metav1.ConditionFalse
	switch out.Reason {
	case registrylogin.Verified:
		status = metav1.ConditionTrue
	case NotVerifiable, NoCredentials:
		status = metav1.ConditionUnknown
	}
	recovered := false
	reg := cached
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		next := reg.DeepCopy()
		prev := meta.FindStatusCondition(next.Status.Conditions, v1alpha1.ConditionVerified)
		recovered = status == metav1.ConditionTrue && prev != nil && prev.Status == metav1.ConditionFalse
		meta.SetStatusCondition(&next.Status.Conditions, metav1.Condition{
			Type: v1alpha1.ConditionVerified, Status: status, Reason: out.Reason, Message: out.Message,
			ObservedGeneration: reg.Generation,
		})
		ver := next.Status.Verification
		if ver == nil {
			ver = &v1alpha1.RegistryVerification{}
		}
		ver.ObservedGeneration, ver.SourceVersion, ver.Hosts = reg.Generation, out.SourceVersion, out.Hosts
		ver.LastAttemptTime = &now
		if status == metav1.ConditionTrue {
			ver.LastSuccessTime = &now
		}
		ver.PullLimit = nil
		if l := out.PullLimit; l != nil {
			ver.PullLimit = &v1alpha1.PullLimit{Limit: l.Limit, Remaining: l.Remaining, WindowSeconds: int64(l.Window / time.Second)}
		}
		next.Status.Verification = ver
		_, err := v.cfg.Status.UpdateStatus(ctx, next, metav1.UpdateOptions{FieldManager: "pullpass-verifier"})
		if apierrors.IsConflict(err) {
			// The keeper wrote status meanwhile: read the registry as it is now and apply again.
			if fresh, gerr := v.cfg.Status.Get(ctx, reg.Name, metav1.GetOptions{}); gerr == nil {
				reg = fresh
			}
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("status of registry %s: %w", cached.Name, err)
	}
	v.mu.Lock()
	rec := v.cfg.Recovered
	v.mu.Unlock()
	if recovered && rec != nil {
		rec(ctx, cached.Name, now.Time)
	}
	return nil
}

// Seen records which hosts and repositories pods of each registry pull from (bounded).
type Seen struct {
	onNewHost func(registry string)

	mu    sync.Mutex
	hosts map[string][]seenHost // by registry, most recent first
}

type seenHost struct {
	host, repository string
}

const maxSeenHosts = 16

func newSeen(onNewHost func(string)) *Seen {
	return &Seen{onNewHost: onNewHost, hosts: map[string][]seenHost{}}
}

// Observe records that a pod pulls ref from registry. A host new for a registry with glob
// patterns gets the registry verified. It allocates only for what it has not seen.
func (s *Seen) Observe(reg *v1alpha1.Registry, ref image.Reference) {
	if s == nil || reg == nil {
		return
	}
	s.mu.Lock()
	list := s.hosts[reg.Name]
	for i := range list {
		if list[i].host == ref.Host {
			if list[i].repository != ref.Path {
				list[i].repository = ref.Path
			}
			s.mu.Unlock()
			return
		}
	}
	list = append([]seenHost{{host: ref.Host, repository: ref.Path}}, list...)
	if len(list) > maxSeenHosts {
		list = list[:maxSeenHosts]
	}
	s.hosts[reg.Name] = list
	s.mu.Unlock()
	if hasGlob(reg) {
		s.onNewHost(reg.Name)
	}
}

// isDockerHub reports whether a host is one of Docker Hub's names.
func isDockerHub(host string) bool {
	switch host {
	case image.DockerHub, "index.docker.io", "registry-1.docker.io":
		return true
	}
	return false
}

func hasGlob(reg *v1alpha1.Registry) bool {
	for _, h := range reg.Spec.Hosts {
		if strings.Contains(h, "*") {
			return true
		}
	}
	return false
}

func (s *Seen) hostsOf(registry string) []seenHost {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenHost(nil), s.hosts[registry]...)
}

func (s *Seen) repository(registry, host string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.hosts[registry] {
		if h.host == host {
			return h.repository
		}
	}
	return ""
}

func (s *Seen) any(registry string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hosts[registry]) > 0
}

func (s *Seen) forget(registry string) {
	s.mu.Lock()
	delete(s.hosts, registry)
	s.mu.Unlock()
}

// Wants implements inject.Observer: a registry with glob patterns, or one no pod was seen using
// yet, has something to learn from a pod.
func (s *Seen) Wants(regs []*v1alpha1.Registry) bool {
	for _, reg := range regs {
		if hasGlob(reg) {
			return true
		}
		s.mu.Lock()
		none := len(s.hosts[reg.Name]) == 0
		s.mu.Unlock()
		if none {
			return true
		}
	}
	return false
}

// ObservePod implements inject.Observer: it records the images of a pod admitted with the pull
// secrets of regs. At steady state (every host already seen) it allocates nothing.
func (s *Seen) ObservePod(regs []*v1alpha1.Registry, images []string) {
	for _, reg := range regs {
		for _, img := range images {
			if s.known(reg.Name, img) {
				continue
			}
			ref, err := image.Parse(img)
			if err != nil || !servedBy(reg, ref) {
				continue
			}
			s.Observe(reg, ref)
		}
	}
}

// known reports whether an image's host was already seen for the registry with that repository.
func (s *Seen) known(registry, img string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.hosts[registry] {
		if len(img) > len(h.host)+len(h.repository)+1 && img[:len(h.host)] == h.host && img[len(h.host)] == '/' &&
			strings.HasPrefix(img[len(h.host)+1:], h.repository) {
			return true
		}
	}
	return false
}

func servedBy(reg *v1alpha1.Registry, ref image.Reference) bool {
	for _, h := range reg.Spec.Hosts {
		if p, err := match.ParsePattern(h); err == nil && p.Matches(ref.Repository()) {
			return true
		}
	}
	return false
}
