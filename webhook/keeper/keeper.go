// Package keeper keeps the pull secrets pullpass wrote into namespaces present and fresh: a new
// password in a registry's source reaches every namespace, a namespace that opts out or a
// registry that goes takes its pull secrets with it, and each Registry's status says whether its
// credentials can be had. One replica runs it at a time (leader election in app).
package keeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/util/workqueue"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/nodedelivery"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/secrets"
	"github.com/pullpass/pullpass/webhook/inject"
)

// Registries gives the cached Registry objects.
type Registries interface {
	Get(name string) (*v1alpha1.Registry, bool)
	List() []*v1alpha1.Registry
}

// RegistryAPI reads a Registry from the API server and writes its status (registryclient.Client
// does). Reads happen only before a deletion, which the cache alone never decides.
type RegistryAPI interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*v1alpha1.Registry, error)
	UpdateStatus(ctx context.Context, r *v1alpha1.Registry, opts metav1.UpdateOptions) (*v1alpha1.Registry, error)
}

// Desired builds a registry's pull secret (namespace left empty) from its source. With a
// *credentials.StaleError it returns the last good credentials' secret too.
type Desired interface {
	Desired(ctx context.Context, reg *v1alpha1.Registry) (*corev1.Secret, error)
	ExpiresAt(ctx context.Context, reg *v1alpha1.Registry) time.Time
	NextRefresh(registry string) time.Time
}

// Config configures the Keeper.
type Config struct {
	Client       kubernetes.Interface
	RegistryAPI  RegistryAPI
	Registries   Registries
	Desired      Desired
	Managed      corelisters.SecretLister
	Namespaces   corelisters.NamespaceLister
	Policy       inject.Policy
	ResyncPeriod time.Duration // default 30s: a source outside the watched namespace is read this often
	// KeepLastGood bounds how long pull secrets keep the last good credentials while their
	// source cannot be read (credentials.Unavailable; default 1 h from the first failure seen).
	KeepLastGood time.Duration
	Parallelism  int // writes in flight at once, per registry (default 16)
	Workers      int // registries reconciled at once (default 4)
	Now          func() time.Time
	Metrics      Metrics
	// QueueMetrics, when set, measures the work queue (its name: pullpass-keeper).
	QueueMetrics workqueue.MetricsProvider
	Logger       *slog.Logger
	// PullThrough, when set, gives the PullThrough condition of pull-through caches.
	PullThrough PullThroughStatus
	// NodeDelivery is what the cluster's node agents can serve (the chart's --node-delivery):
	// a registry delivered by the node that they cannot serve is Served=False. Unknown judges
	// nothing.
	NodeDelivery nodedelivery.Mode
	// Agents, when set, counts the node agents that serve registries delivered by the node.
	Agents NodeAgents
}

// NodeAgents counts the node agents: the agent DaemonSet's ready and desired pods, a proxy that
// needs no more than reading one DaemonSet (an agent is ready once it serves its node).
type NodeAgents interface {
	// Agents returns the count; known is false while it is not known yet (nothing is judged by
	// it then).
	Agents() (c AgentCount, known bool)
}

// AgentCount is the agent DaemonSet's count.
type AgentCount struct {
	Ready, Desired int32
	// Found is false when there is no DaemonSet.
	Found bool
}

// PullThroughStatus gives a Registry's PullThrough condition: nil when it is no pull-through
// cache (the condition is then removed).
type PullThroughStatus interface {
	Condition(reg *v1alpha1.Registry) *metav1.Condition
}

// Keeper reconciles one registry at a time from a rate-limited queue. It runs once per process
// (the controller exits when it stops leading), so its queue and its memory of deletions are
// made with it.
type Keeper struct {
	cfg Config

	queue workqueue.TypedRateLimitingInterface[string]
	mu    sync.Mutex
	// gone: per registry, the namespaces whose pull secret somebody else deleted; reconcile
	// makes them again where the registry still serves the namespace.
	gone map[string]map[string]bool
	// deleting: the UIDs of the pull secrets this keeper deletes itself, which are not to come
	// back.
	deleting sync.Map
	// failingSince: per registry, since when its source could not be read, while it cannot.
	failingSince sync.Map
}

// New returns a Keeper.
func New(cfg Config) (*Keeper, error) {
	if cfg.Client == nil || cfg.RegistryAPI == nil || cfg.Registries == nil || cfg.Desired == nil || cfg.Managed == nil || cfg.Namespaces == nil {
		return nil, errors.New("invalid configuration: clients, registries, desired, managed and namespaces are required")
	}
	if cfg.ResyncPeriod == 0 {
		cfg.ResyncPeriod = 30 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = 16
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.KeepLastGood <= 0 {
		cfg.KeepLastGood = time.Hour
	}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "pullpass-keeper", MetricsProvider: cfg.QueueMetrics})
	return &Keeper{cfg: cfg, queue: q, gone: map[string]map[string]bool{}}, nil
}

// cacheBehind reports whether a source Secret the caches did not find is there for the API
// server after all (made with its Registry, not in the informer's cache yet): no word from the
// source, which only the API server's NotFound gives.
func (k *Keeper) cacheBehind(ctx context.Context, reg *v1alpha1.Registry, srcErr error) bool {
	if !apierrors.IsNotFound(srcErr) {
		return false
	}
	for _, ref := range reg.Spec.Auth.SecretRefs() {
		_, err := k.cfg.Client.CoreV1().Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return true // there, or no answer: not known to be gone
		}
	}
	return false
}

// failing records that registry's source could not be read at now (zero: it could, or said
// something else) and returns since when it has been failing.
func (k *Keeper) failing(registry string, now time.Time) time.Time {
	if now.IsZero() {
		k.failingSince.Delete(registry)
		return time.Time{}
	}
	v, _ := k.failingSince.LoadOrStore(registry, now)
	return v.(time.Time)
}

// Enqueue asks for a registry to be reconciled; before Run, it waits for Run.
func (k *Keeper) Enqueue(registry string) { k.queue.Add(registry) }

// Deleted tells the keeper that one of its pull secrets went. Unless the keeper deleted it, or
// its namespace is going, it comes back while the registry serves the namespace: pods admitted
// with it must still pull after a kubectl delete.
func (k *Keeper) Deleted(s *corev1.Secret) {
	if _, own := k.deleting.LoadAndDelete(s.UID); own {
		return
	}
	namespace, registry := s.Namespace, s.Labels[secrets.LabelRegistry]
	if s.Name != pullsecret.Name(registry) {
		return // someone's Secret with the labels of a pull secret
	}
	if ns, err := k.cfg.Namespaces.Get(namespace); err == nil && ns.DeletionTimestamp != nil && s.CreationTimestamp.Before(ns.DeletionTimestamp) {
		return // taken with its namespace
	}
	k.mu.Lock()
	if k.gone[registry] == nil {
		k.gone[registry] = map[string]bool{}
	}
	k.gone[registry][namespace] = true
	k.mu.Unlock()
	k.queue.Add(registry)
}

// Needed tells the keeper the pull secrets a pod refers to. A registry's pull secret that is not
// there is written at once where the registry serves the namespace: the pod was admitted ahead
// of it (a slow source, a webhook replica gone before its write), and the kubelet reads a pod's
// pull secrets at every pull attempt. Names that are not a registry's pull secret are ignored.
func (k *Keeper) Needed(namespace string, refs []corev1.LocalObjectReference) {
	for _, ref := range refs {
		registry, ok := strings.CutPrefix(ref.Name, pullsecret.Prefix)
		if !ok || pullsecret.Name(registry) != ref.Name {
			continue
		}
		if _, ok := k.cfg.Registries.Get(registry); !ok {
			continue
		}
		if _, err := k.cfg.Managed.Secrets(namespace).Get(ref.Name); err == nil {
			continue
		}
		k.putGone(registry, map[string]bool{namespace: true})
		k.queue.Add(registry)
	}
}

// takeGone returns and forgets the namespaces whose pull secret of registry went.
func (k *Keeper) takeGone(registry string) map[string]bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	g := k.gone[registry]
	delete(k.gone, registry)
	return g
}

// putGone keeps namespaces for a later pass.
func (k *Keeper) putGone(registry string, gone map[string]bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gone[registry] == nil {
		k.gone[registry] = map[string]bool{}
	}
	for ns := range gone {
		k.gone[registry][ns] = true
	}
}

// EnqueueAll asks for every known registry, and every registry that still has pull secrets.
func (k *Keeper) EnqueueAll() {
	q := k.queue
	for _, r := range k.cfg.Registries.List() {
		q.Add(r.Name)
	}
	all, _ := k.cfg.Managed.List(pullsecret.Selector(""))
	for _, s := range all {
		q.Add(s.Labels[secrets.LabelRegistry])
	}
}

// Run works the queue until ctx ends, and resyncs everything every ResyncPeriod. It is called
// once: the queue is shut down when it returns.
func (k *Keeper) Run(ctx context.Context) {
	q := k.queue
	defer q.ShutDown()
	go func() {
		t := time.NewTicker(k.cfg.ResyncPeriod)
		defer t.Stop()
		for {
			k.EnqueueAll()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	// A few registries at once: one whose source is slow (an ECR endpoint timing out) must not
	// hold up the rotation of the others. The queue never hands one registry to two workers.
	var wg sync.WaitGroup
	for range k.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k.work(ctx, q) {
			}
		}()
	}
	wg.Wait()
}

// work reconciles the next registry of the queue; false when the queue is shut down.
func (k *Keeper) work(ctx context.Context, q workqueue.TypedRateLimitingInterface[string]) bool {
	name, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(name)
	retry, err := k.reconcile(ctx, name)
	if retry && err == nil && ctx.Err() == nil {
		// No usable credentials, or a cache behind the API server: try again with back-off, and
		// do not wait for the next change or resync. A source Secret created a moment before its
		// Registry may not be in the informer's cache yet; an ECR token fetched meanwhile by an
		// admission must still get its refresh scheduled here.
		k.cfg.Logger.Debug("not ready yet, retrying", "registry", name)
		q.AddRateLimited(name)
		return true
	}
	if next := k.cfg.Desired.NextRefresh(name); time.Until(next) > 0 {
		// Expiring tokens (ECR) come back on their own schedule; a time already past is
		// left to the rate limiter, never an immediate requeue.
		q.AddAfter(name, time.Until(next))
	}
	switch {
	case err == nil || ctx.Err() != nil:
		q.Forget(name)
	case apierrors.IsConflict(err):
		// A stale cache: the object changed under us; try again with the new one.
		k.cfg.Logger.Info("conflict, retrying", "registry", name, "err", err)
		q.AddRateLimited(name)
	default:
		k.cfg.Logger.Error("reconciling registry", "registry", name, "err", err)
		q.AddRateLimited(name)
	}
	return true
}

// Reconcile brings one registry's pull secrets and status up to date.
func (k *Keeper) Reconcile(ctx context.Context, name string) error {
	_, err := k.reconcile(ctx, name)
	return err
}

// reconcile is Reconcile; retry is true when the registry's source gave no usable credentials
// (a Secret not in the informer's cache yet, an ECR call that failed with no token to keep), or
// the caches are behind the API server.
//
// Deletions are decided by the API server, never by the caches alone: another replica admits pods
// with its own caches, and a pull secret it made for a Registry or namespace this replica has not
// seen yet is no leftover. Deleting it would fail the pod it was made for.
func (k *Keeper) reconcile(ctx context.Context, name string) (retry bool, _ error) {
	existing, err := k.cfg.Managed.List(pullsecret.Selector(name))
	if err != nil {
		return false, err
	}
	// Labels are anyone's to write: a tenant's Secret that carries them under another name is
	// not this registry's pull secret, never rotated, counted or deleted.
	existing = slices.DeleteFunc(existing, func(s *corev1.Secret) bool { return s.Name != pullsecret.Name(name) })
	reg, ok := k.cfg.Registries.Get(name)
	if !ok && len(existing) > 0 {
		switch _, err := k.cfg.RegistryAPI.Get(ctx, name, metav1.GetOptions{}); {
		case err == nil:
			k.cfg.Logger.Debug("registry not cached yet", "registry", name)
			return true, nil
		case !apierrors.IsNotFound(err):
			return false, fmt.Errorf("reading registry %s: %w", name, err)
		}
	}
	if !ok {
		// The registry is gone: so are its pull secrets, and any token kept for it.
		if f, ok := k.cfg.Desired.(interface{ Forget(string) }); ok {
			f.Forget(name)
		}
		k.cfg.Metrics.Forget(name)
		k.takeGone(name)
		var errs []error
		for _, s := range existing {
			errs = append(errs, k.delete(ctx, s, "registry removed"))
		}
		return false, errors.Join(errs...)
	}
	want, srcErr := k.cfg.Desired.Desired(ctx, reg)
	var stale *credentials.StaleError
	usable := want != nil && (srcErr == nil || errors.As(srcErr, &stale))
	// The last good credentials stay in the pull secrets only while the source cannot be read,
	// for KeepLastGood at most; a source that says something else now (gone, emptied, moved
	// where pullpass may not read it) withdraws them at once: the pull secrets stay, empty.
	withdraw := false
	var lastGoodUntil time.Time // while the last good credentials are kept
	switch {
	case usable || srcErr == nil:
		k.failing(name, time.Time{})
	case credentials.Unavailable(srcErr) || k.cacheBehind(ctx, reg, srcErr):
		lastGoodUntil = k.failing(name, k.cfg.Now()).Add(k.cfg.KeepLastGood)
		withdraw = !k.cfg.Now().Before(lastGoodUntil)
	default:
		k.failing(name, time.Time{})
		withdraw = true
	}
	if withdraw {
		want = pullsecret.Withdrawn("", reg)
		lastGoodUntil = time.Time{}
	}
	// Writes go out a few at a time: one registry can have a pull secret in thousands of
	// namespaces, and a rotation must reach them all within a minute.
	var (
		mu        sync.Mutex
		errs      []error
		kept      int
		refreshed bool
		wg        sync.WaitGroup
		slots     = make(chan struct{}, k.cfg.Parallelism)
	)
	do := func(f func() error, update bool) {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			err := f()
			<-slots
			mu.Lock()
			errs = append(errs, err)
			refreshed = refreshed || (update && err == nil)
			mu.Unlock()
		}()
	}
	served := func(ns *corev1.Namespace) bool {
		return k.cfg.Policy.NamespaceServed(ns) && inject.RegistryServes(reg, ns)
	}
	keep := func(s *corev1.Secret) {
		kept++
		if (!usable && !withdraw) || pullsecret.UpToDate(s, want) {
			// While the source cannot be read, the last good credentials stay (KeepLastGood).
			return
		}
		do(func() error { return k.update(ctx, s, want) }, true)
	}
	var unserved []*corev1.Secret
	for _, s := range existing {
		ns, err := k.cfg.Namespaces.Get(s.Namespace)
		switch {
		case err == nil && ns.DeletionTimestamp != nil && s.CreationTimestamp.Before(ns.DeletionTimestamp):
			// Nothing is created in a terminating namespace: a secret newer than its deletion
			// is in a namespace made again under that name, which the cache has not seen yet.
			do(func() error { return k.delete(ctx, s, "namespace deleted") }, false)
		case err != nil || ns.DeletionTimestamp != nil || !served(ns):
			unserved = append(unserved, s)
		default:
			keep(s)
		}
	}
	gone := k.takeGone(name)
	for _, s := range existing {
		delete(gone, s.Namespace)
	}
	// errs belongs to the writes in flight until wg.Wait: this goroutine's own go to mine.
	var (
		behind bool
		mine   error
	)
	if len(unserved) > 0 || len(gone) > 0 {
		behind, mine = k.settle(ctx, reg, want, usable, unserved, gone, served, keep, do)
	}
	wg.Wait()
	errs = append(errs, mine)
	if behind {
		return true, errors.Join(errs...) // the status waits for caches that agree
	}
	errs = append(errs, k.status(ctx, reg, observed{srcErr: srcErr, usable: usable, namespaces: kept, refreshed: refreshed, lastGoodUntil: lastGoodUntil}))
	return !usable, errors.Join(errs...)
}

// manyNamespaces is where settle reads namespaces with one LIST rather than a GET each.
const manyNamespaces = 50

// settle decides, by the API server's word, what the caches alone may not: the pull secrets in
// namespaces reg no longer seems to serve (deleted if the API server agrees, kept if the
// namespace cache was behind) and those somebody deleted (made again where reg still serves the
// namespace). behind: the Registry's spec changed since cached, nothing is decided. What gone
// holds that is not settled (no usable credentials, behind, an error) waits for a later pass.
func (k *Keeper) settle(ctx context.Context, reg *v1alpha1.Registry, want *corev1.Secret, usable bool, unserved []*corev1.Secret,
	gone map[string]bool, served func(*corev1.Namespace) bool, keep func(*corev1.Secret), do func(func() error, bool)) (behind bool, _ error) {
	defer func() {
		if len(gone) > 0 {
			k.putGone(reg.Name, gone)
		}
	}()
	cur, err := k.cfg.RegistryAPI.Get(ctx, reg.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, nil // deleted meanwhile: the next pass removes all its secrets
	case err != nil:
		return false, fmt.Errorf("reading registry %s: %w", reg.Name, err)
	case cur.UID != reg.UID || cur.Generation != reg.Generation:
		// Its spec (selector, delivery) changed since cached; status writes do not count.
		k.cfg.Logger.Debug("registry cache behind, not deciding yet", "registry", reg.Name)
		return true, nil
	}
	names := make([]string, 0, len(unserved)+len(gone))
	for _, s := range unserved {
		names = append(names, s.Namespace)
	}
	for ns := range gone {
		names = append(names, ns)
	}
	nss, err := k.apiNamespaces(ctx, names)
	if err != nil {
		return false, err
	}
	for _, s := range unserved {
		switch ns, ok := nss[s.Namespace]; {
		case !ok:
			do(func() error { return k.delete(ctx, s, "namespace deleted") }, false)
		case ns.DeletionTimestamp != nil || !served(ns):
			do(func() error { return k.delete(ctx, s, "namespace no longer served") }, false)
		default:
			keep(s) // the namespace cache was behind
		}
	}
	if !usable {
		return false, nil
	}
	for name := range gone {
		delete(gone, name)
		if ns, ok := nss[name]; !ok || ns.DeletionTimestamp != nil || !served(ns) {
			continue // a namespace deleted or opted out has no use for it
		}
		s := want.DeepCopy()
		s.Namespace = name
		do(func() error {
			_, err := k.cfg.Client.CoreV1().Secrets(name).Create(ctx, s, metav1.CreateOptions{FieldManager: "pullpass-keeper"})
			switch {
			case apierrors.IsAlreadyExists(err):
				return nil // an admission made it first
			case err != nil:
				k.putGone(reg.Name, map[string]bool{name: true})
				return fmt.Errorf("creating %s/%s: %w", name, s.Name, err)
			}
			k.cfg.Logger.Info("wrote a missing pull secret (deleted, or a pod was admitted ahead of it)", "namespace", name, "secret", s.Name)
			return nil
		}, false)
	}
	return false, nil
}

// apiNamespaces reads namespaces from the API server, leaving out those it does not have: a GET
// each for a few, one LIST for many (a selector narrowed over thousands of namespaces).
func (k *Keeper) apiNamespaces(ctx context.Context, names []string) (map[string]*corev1.Namespace, error) {
	out := make(map[string]*corev1.Namespace, len(names))
	api := k.cfg.Client.CoreV1().Namespaces()
	if len(names) > manyNamespaces {
		list, err := api.List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing namespaces: %w", err)
		}
		wanted := make(map[string]bool, len(names))
		for _, n := range names {
			wanted[n] = true
		}
		for i := range list.Items {
			if wanted[list.Items[i].Name] {
				out[list.Items[i].Name] = &list.Items[i]
			}
		}
		return out, nil
	}
	for _, n := range names {
		ns, err := api.Get(ctx, n, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, fmt.Errorf("reading namespace %s: %w", n, err)
		}
		out[n] = ns
	}
	return out, nil
}

func (k *Keeper) delete(ctx context.Context, s *corev1.Secret, why string) error {
	k.deleting.Store(s.UID, true)
	err := k.cfg.Client.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &s.UID},
	})
	if err != nil {
		k.deleting.Delete(s.UID) // not this keeper's deletion: gone already, or another secret now
		if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
	k.cfg.Logger.Info("deleted pull secret", "namespace", s.Namespace, "secret", s.Name, "why", why)
	return nil
}

func (k *Keeper) update(ctx context.Context, have, want *corev1.Secret) error {
	api := k.cfg.Client.CoreV1().Secrets(have.Namespace)
	if pullsecret.Trimmed(have) {
		// The cache cut labels or annotations someone else wrote: keep them, from a fresh read.
		cur, err := api.Get(ctx, have.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return fmt.Errorf("reading %s/%s: %w", have.Namespace, have.Name, err)
		}
		have = cur
	}
	s := have.DeepCopy()
	pullsecret.CopyInto(s, want)
	_, err := api.Update(ctx, s, metav1.UpdateOptions{FieldManager: "pullpass-keeper"})
	if apierrors.IsConflict(err) {
		// The cache is behind the API server (another writer, or a watch that lags): a rotation
		// must not wait for it, so read the secret itself and write once more.
		k.cfg.Logger.Info("pull secret changed since cached; reading it again", "namespace", have.Namespace, "secret", have.Name,
			"cachedVersion", have.ResourceVersion)
		cur, gerr := api.Get(ctx, have.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(gerr):
			return nil // gone meanwhile: the next admission makes it again
		case gerr != nil:
			return fmt.Errorf("reading %s/%s: %w", have.Namespace, have.Name, gerr)
		case !pullsecret.Is(cur, want.Labels[secrets.LabelRegistry]) || pullsecret.UpToDate(cur, want):
			return nil
		}
		s = cur.DeepCopy()
		pullsecret.CopyInto(s, want)
		_, err = api.Update(ctx, s, metav1.UpdateOptions{FieldManager: "pullpass-keeper"})
	}
	if err != nil {
		return fmt.Errorf("updating %s/%s: %w", s.Namespace, s.Name, err)
	}
	k.cfg.Logger.Info("refreshed pull secret", "namespace", s.Namespace, "secret", s.Name)
	return nil
}

// reasonOf names why a source gives no credentials: ECR's own reasons (AccessDenied,
// Throttled, CredentialsExpired, ...), a missing Secret, or SourceUnavailable.
func reasonOf(err error) string {
	var e *ecr.Error
	var ns *credentials.NamespaceNotAllowedError
	switch {
	case errors.As(err, &e):
		return e.Reason
	case errors.As(err, &ns):
		return ReasonSourceNamespaceNotAllowed
	case apierrors.IsNotFound(err):
		return ReasonSourceSecretMissing
	}
	return ReasonSourceUnavailable
}

// Condition reasons of Registry.status.
const (
	ReasonSourceSecretMissing  = "SourceSecretMissing"
	ReasonCredentialsAvailable = "CredentialsAvailable"
	ReasonSourceUnavailable    = "SourceUnavailable"
	// ReasonSourceNamespaceNotAllowed: the source is in a namespace pullpass may not read sources from.
	ReasonSourceNamespaceNotAllowed = "SourceNamespaceNotAllowed"
	// ReasonRefreshFailing: the last good token is in use until it expires.
	ReasonRefreshFailing = "RefreshFailing"
)

// conditionMessage bounds an error for a condition: the API server refuses messages over 32768
// bytes, and an AWS error can carry a whole response.
func conditionMessage(err error) string {
	const limit = 2048
	m := err.Error()
	if len(m) <= limit {
		return m
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(m[cut]) {
		cut--
	}
	return m[:cut] + "…"
}

// Served condition reasons besides nodedelivery's (NodeDeliveryOff, NoNodeAgents).
const (
	// ReasonPullSecrets: served by the webhook's pull secrets.
	ReasonPullSecrets = "PullSecrets"
	// ReasonNodeAgents: served by the node agents.
	ReasonNodeAgents = "NodeAgents"
	// ReasonNoAgentReady: delivered by the node, and no agent is ready (none scheduled, or none
	// running yet).
	ReasonNoAgentReady = "NoAgentReady"
)

// served says where reg is served, given the namespaces holding its pull secret, and whether
// that is so (the Served condition).
func (k *Keeper) served(reg *v1alpha1.Registry, namespaces int) (*v1alpha1.ServedStatus, metav1.Condition) {
	cond := metav1.Condition{Type: v1alpha1.ConditionServed, Status: metav1.ConditionTrue, ObservedGeneration: reg.Generation}
	if reg.Spec.EffectiveDelivery() != v1alpha1.DeliveryNode {
		// Pull secrets are written at a pod's admission: none yet is no fault.
		cond.Reason, cond.Message = ReasonPullSecrets, fmt.Sprintf("pull secrets in %d namespaces", namespaces)
		return &v1alpha1.ServedStatus{PullSecrets: int32(namespaces)}, cond
	}
	st := &v1alpha1.ServedStatus{}
	if reason, msg := nodedelivery.Check(reg.Spec, k.cfg.NodeDelivery); reason != "" {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, msg
		return st, cond
	}
	cond.Reason, cond.Message = ReasonNodeAgents, "served by the node agents"
	if k.cfg.Agents == nil {
		return st, cond
	}
	count, known := k.cfg.Agents.Agents()
	if !known {
		return st, cond
	}
	ready, desired := count.Ready, count.Desired
	switch {
	case !count.Found:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, nodedelivery.ReasonNoNodeAgents, "delivery Node is served by the node agents, and their DaemonSet is missing"
		return st, cond
	case ready == 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonNoAgentReady
		cond.Message = fmt.Sprintf("delivery Node is served by the node agents, and none is ready (0 of %d nodes)", desired)
	default:
		cond.Message = fmt.Sprintf("served by the node agents on %d of %d nodes", ready, desired)
	}
	st.Nodes = &v1alpha1.NodesServed{Ready: ready, Desired: desired}
	return st, cond
}

// observed is what a reconcile learnt, for the status.
type observed struct {
	srcErr     error
	usable     bool
	namespaces int
	refreshed  bool
	// lastGoodUntil: while the source cannot be read, until when the pull secrets keep the last
	// good credentials (zero otherwise).
	lastGoodUntil time.Time
}

// status writes the Served and Ready conditions, where the registry is served and the
// namespace count, only when they changed. Ready is False when nothing serves the registry.
func (k *Keeper) status(ctx context.Context, reg *v1alpha1.Registry, o observed) error {
	srcErr, usable := o.srcErr, o.usable
	next := reg.DeepCopy()
	servedAt, servedCond := k.served(reg, o.namespaces)
	changed := meta.SetStatusCondition(&next.Status.Conditions, servedCond)
	k.cfg.Metrics.Served(reg.Name, servedCond.Status == metav1.ConditionTrue)
	if !equality.Semantic.DeepEqual(next.Status.Served, servedAt) {
		next.Status.Served = servedAt
		changed = true
	}
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonCredentialsAvailable,
		Message: "credentials read from the source", ObservedGeneration: reg.Generation}
	switch {
	case servedCond.Status == metav1.ConditionFalse:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, servedCond.Reason, servedCond.Message
	case srcErr != nil && usable:
		cond.Reason, cond.Message = ReasonRefreshFailing, conditionMessage(srcErr)
	case srcErr != nil && !o.lastGoodUntil.IsZero():
		cond.Status, cond.Reason = metav1.ConditionFalse, reasonOf(srcErr)
		cond.Message = "pull secrets keep the last good credentials until " + o.lastGoodUntil.UTC().Format(time.RFC3339) + ": " + conditionMessage(srcErr)
	case srcErr != nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reasonOf(srcErr), conditionMessage(srcErr)
	}
	changed = meta.SetStatusCondition(&next.Status.Conditions, cond) || changed
	var until *metav1.Time
	if !o.lastGoodUntil.IsZero() {
		t := metav1.NewTime(o.lastGoodUntil.Truncate(time.Second))
		until = &t
	}
	if !until.Equal(next.Status.LastGoodUntil) {
		next.Status.LastGoodUntil = until
		changed = true
	}
	if k.cfg.PullThrough != nil {
		if c := k.cfg.PullThrough.Condition(reg); c != nil {
			changed = meta.SetStatusCondition(&next.Status.Conditions, *c) || changed
		} else {
			changed = meta.RemoveStatusCondition(&next.Status.Conditions, v1alpha1.ConditionPullThrough) || changed
		}
	}
	var expires *metav1.Time
	exp := k.cfg.Desired.ExpiresAt(ctx, reg)
	if usable && !exp.IsZero() {
		t := metav1.NewTime(exp.Truncate(time.Second))
		expires = &t
	}
	failure := ""
	if srcErr != nil {
		failure = reasonOf(srcErr)
	}
	k.cfg.Metrics.Credentials(reg.Name, usable, exp, failure)
	if !expires.Equal(next.Status.ExpiresAt) {
		next.Status.ExpiresAt = expires
		changed = true
	}
	if next.Status.Namespaces != int32(o.namespaces) || next.Status.ObservedGeneration != reg.Generation {
		next.Status.Namespaces, next.Status.ObservedGeneration = int32(o.namespaces), reg.Generation
		changed = true
	}
	// LastRefreshTime: when new credentials from the source were last written out, or first seen.
	if usable && (o.refreshed || next.Status.LastRefreshTime == nil) {
		now := metav1.NewTime(k.cfg.Now())
		next.Status.LastRefreshTime = &now
		changed = true
	}
	if !changed {
		return nil
	}
	if _, err := k.cfg.RegistryAPI.UpdateStatus(ctx, next, metav1.UpdateOptions{FieldManager: "pullpass-keeper"}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("status of registry %s: %w", reg.Name, err)
	}
	return nil
}
