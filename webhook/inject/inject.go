// Package inject is the heart of the admission webhook: for a new pod in an opted-in namespace
// it finds the registries serving the pod's images and adds their pull secrets.
package inject

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slok/kubewebhook/v2/pkg/model"
	"github.com/slok/kubewebhook/v2/pkg/webhook/mutating"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/pullthrough"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

// The opt-in annotation, on namespaces ("enabled") and pods ("disabled" to opt one pod out).
const (
	Annotation = "pullpass.io/inject"
	Enabled    = "enabled"
	Disabled   = "disabled"
)

// NamespaceGetter returns a namespace, from a cache where it can.
type NamespaceGetter interface {
	Namespace(ctx context.Context, name string) (*corev1.Namespace, error)
}

// TableSource returns the current registry table.
type TableSource interface {
	Table() *registrytable.Table
}

// SecretEnsurer makes sure a registry's pull secret is in a namespace and fresh, and returns
// its name. With dryRun it only names it.
type SecretEnsurer interface {
	Ensure(ctx context.Context, namespace string, reg *v1alpha1.Registry, dryRun bool) (string, error)
}

// SecretChecker, when the SecretEnsurer has it, tells from a cache whether a registry's pull
// secret is in a namespace and usable: then admission starts no writer at all (the steady
// state, every pod but a namespace's first).
type SecretChecker interface {
	Present(namespace string, reg *v1alpha1.Registry) bool
}

// Config configures the mutator.
type Config struct {
	Namespaces NamespaceGetter
	Registries TableSource
	Secrets    SecretEnsurer
	// ClusterWide injects in every namespace but the excluded ones and those annotated
	// pullpass.io/inject: disabled. Otherwise only namespaces annotated "enabled" are served.
	ClusterWide        bool
	ExcludedNamespaces []string
	Logger             *slog.Logger
	Metrics            Recorder
	// Observer, when set, is told the images of each pod served and their registries (the
	// verifier logs in where pods actually pull, for glob host patterns).
	Observer Observer
	// EnsureTimeout bounds how long admission waits for pull secrets to be written (default
	// 3s, under the chart's 5s timeoutSeconds: past it the API server admits the pod without
	// pullpass). A pod whose secret is not written by then (a slow ECR or API server, a
	// source that fails) is admitted with its reference all the same, since a pod's
	// imagePullSecrets can never be added later while the kubelet reads them at every pull
	// attempt: the write goes on after admission, for up to BackgroundTimeout (default 2m).
	// The controller's keeper also writes it as soon as it sees the pod (with --watch-pulls),
	// so a replica that goes away before its write loses nothing.
	EnsureTimeout     time.Duration
	BackgroundTimeout time.Duration
}

// Observer learns which images pods of served registries use. Wants keeps the hot path free of
// the work when it has nothing to learn.
type Observer interface {
	Wants(regs []*v1alpha1.Registry) bool
	ObservePod(regs []*v1alpha1.Registry, images []string)
}

func (c *Config) defaults() error {
	if c.Namespaces == nil || c.Registries == nil || c.Secrets == nil {
		return errors.New("namespaces, registries and secrets are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NoopRecorder{}
	}
	if c.EnsureTimeout <= 0 {
		c.EnsureTimeout = 3 * time.Second
	}
	if c.BackgroundTimeout <= 0 {
		c.BackgroundTimeout = 2 * time.Minute
	}
	return nil
}

// Mutator adds pull secrets to pods. It never fails a pod: on any internal error it admits the
// pod unchanged, counts the error and logs it.
type Mutator struct {
	cfg      Config
	excluded map[string]bool
	// retrying holds "namespace/registry" while a pull secret is written again after admission.
	retrying sync.Map
}

var _ mutating.Mutator = (*Mutator)(nil)

// New returns a Mutator.
func New(cfg Config) (*Mutator, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	m := &Mutator{cfg: cfg, excluded: map[string]bool{}}
	for _, ns := range cfg.ExcludedNamespaces {
		m.excluded[ns] = true
	}
	return m, nil
}

// Mutate implements kubewebhook's Mutator: it appends Plan's secrets to the pod, whose images
// Plan routed through pull-through caches, and records the original images.
func (m *Mutator) Mutate(ctx context.Context, ar *model.AdmissionReview, obj metav1.Object) (*mutating.MutatorResult, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return &mutating.MutatorResult{}, nil
	}
	add, rw := m.Plan(ctx, ar, pod)
	if len(add) == 0 && len(rw) == 0 {
		return &mutating.MutatorResult{}, nil
	}
	if len(rw) > 0 {
		v := OriginalImages(pod.Annotations[pullthrough.AnnotationOriginalImages], rw)
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[pullthrough.AnnotationOriginalImages] = v
	}
	pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, add...)
	return &mutating.MutatorResult{MutatedObject: pod}, nil
}

// Plan returns the pull secrets to append to a new pod, having made sure they exist (unless
// the review is a dry run), and routes the pod's images of cached upstreams through their
// pull-through caches: it sets the new images in pod and returns what it changed. On any internal
// error, a panic included, it puts the images back and returns nothing: the pod is admitted
// unchanged, and the error counted and logged.
func (m *Mutator) Plan(ctx context.Context, ar *model.AdmissionReview, pod *corev1.Pod) (add []corev1.LocalObjectReference, rw []Rewrite) {
	if ar.Operation != model.OperationCreate {
		return nil, nil
	}
	namespace := ar.Namespace
	if namespace == "" {
		namespace = pod.Namespace
	}
	// Built only when something is logged: most reviews log nothing, and With allocates.
	log := func() *slog.Logger {
		return m.cfg.Logger.With("namespace", namespace, "pod", podName(pod), "uid", ar.ID)
	}
	defer func() {
		// A bug must not block pods either.
		if r := recover(); r != nil {
			m.cfg.Metrics.Error(ErrorPanic)
			log().Error("admitting pod unchanged after a panic", "panic", fmt.Sprint(r))
			undoRewrites(pod, rw)
			add, rw = nil, nil
		}
	}()
	added, skip, kind, err := m.inject(ctx, namespace, pod, ar.DryRun, &rw)
	if err != nil {
		undoRewrites(pod, rw)
		rw = nil
	}
	for _, r := range rw {
		m.cfg.Metrics.Rewritten(r.Cache)
		if m.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
			log().Debug("rewriting image through its pull-through cache", "container", r.Container, "from", r.From, "to", r.To, "cache", r.Cache)
		}
	}
	switch {
	case err != nil:
		m.cfg.Metrics.Error(kind)
		log().Error("admitting pod unchanged", "kind", kind, "err", err)
		return nil, nil
	case skip != "":
		m.cfg.Metrics.Skipped(skip)
		return nil, nil
	case len(added) == 0:
		if len(rw) == 0 {
			m.cfg.Metrics.Skipped(SkipNoMatch)
		}
		return nil, rw
	}
	add = make([]corev1.LocalObjectReference, 0, len(added))
	for _, a := range added {
		m.cfg.Metrics.Injected(a.registry)
		add = append(add, corev1.LocalObjectReference{Name: a.secret})
	}
	if m.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		log().Debug("injecting pull secrets", "secrets", secretNames(added), "dryRun", ar.DryRun)
	}
	return add, rw
}

type injection struct {
	registry string
	secret   string
}

// Reasons a pod is left alone, and kinds of errors: bounded sets, used as metric labels.
const (
	SkipPodOptOut       = "pod_opt_out"
	SkipNamespaceNotIn  = "namespace_not_opted_in"
	SkipNamespaceExcl   = "namespace_excluded"
	SkipNoMatch         = "no_match"
	ErrorNamespace      = "namespace_lookup"
	ErrorEnsureSecret   = "ensure_secret"
	ErrorTableNotLoaded = "table_not_loaded"
	ErrorPanic          = "panic"
	ErrorDecode         = "decode"
)

// inject returns the secrets to add, or why it adds nothing. It changes only the images of pod
// that go through pull-through caches, each recorded in rw as it is set.
func (m *Mutator) inject(ctx context.Context, namespace string, pod *corev1.Pod, dryRun bool, rw *[]Rewrite) (added []injection, skip, errKind string, err error) {
	ns, table, skip, errKind, err := m.served(ctx, namespace, pod)
	if skip != "" || err != nil {
		return nil, skip, errKind, err
	}
	m.rewrite(table, ns, pod, nil, nil, rw)
	regs := registriesFor(table, pod, ns)
	if m.cfg.Observer != nil && len(regs) > 0 && m.cfg.Observer.Wants(regs) {
		m.cfg.Observer.ObservePod(regs, Images(pod))
	}
	m.ensureAll(ctx, namespace, pod, regs, dryRun)
	added = make([]injection, 0, len(regs))
	for _, reg := range regs {
		// The name is known without the source: the pod gets it even when the write is late.
		name := pullsecret.Name(reg.Name)
		// Pods hold a few pull secrets at most: a scan costs less than a set.
		if slices.ContainsFunc(pod.Spec.ImagePullSecrets, func(s corev1.LocalObjectReference) bool { return s.Name == name }) ||
			slices.ContainsFunc(added, func(a injection) bool { return a.secret == name }) {
			continue
		}
		added = append(added, injection{registry: reg.Name, secret: name})
	}
	return added, "", "", nil
}

// served returns the pod's namespace and the registry table when pullpass serves the pod, or
// why it does not.
func (m *Mutator) served(ctx context.Context, namespace string, pod *corev1.Pod) (ns *corev1.Namespace, table *registrytable.Table, skip, errKind string, err error) {
	if pod.Annotations[Annotation] == Disabled {
		return nil, nil, SkipPodOptOut, "", nil
	}
	if m.excluded[namespace] {
		return nil, nil, SkipNamespaceExcl, "", nil
	}
	ns, err = m.cfg.Namespaces.Namespace(ctx, namespace)
	if err != nil {
		return nil, nil, "", ErrorNamespace, fmt.Errorf("namespace %s: %w", namespace, err)
	}
	if !m.policy().NamespaceServed(ns) {
		return nil, nil, SkipNamespaceNotIn, "", nil
	}
	if table = m.cfg.Registries.Table(); table == nil {
		return nil, nil, "", ErrorTableNotLoaded, errors.New("the registry table is not loaded yet")
	}
	return ns, table, "", "", nil
}

// ensureAll ensures the pull secret of each registry, all at once: the first pod of a namespace
// waits for all of them to be written, and one after the other they cost one API round trip
// each. It waits EnsureTimeout at most: a write still under way then goes on after the pod is
// admitted, and a write that failed is tried again after it, with back-off, until
// BackgroundTimeout (one writer per namespace and registry, however many pods wait for it). A pod
// admitted ahead of its pull secret is counted and logged. A panic in an Ensure is raised again
// here, where Plan recovers it, when it happens in time.
func (m *Mutator) ensureAll(ctx context.Context, namespace string, pod *corev1.Pod, regs []*v1alpha1.Registry, dryRun bool) {
	if len(regs) == 0 {
		return
	}
	if c, ok := m.cfg.Secrets.(SecretChecker); ok {
		all := true
		for _, reg := range regs {
			all = all && c.Present(namespace, reg)
		}
		if all {
			return
		}
	}
	// The writes outlive the review: its context ends when admission answers.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.BackgroundTimeout)
	j := &ensureJob{m: m, ctx: bg, namespace: namespace, regs: regs, dryRun: dryRun, out: make([]ensured, len(regs))}
	firsts := make(chan struct{})
	j.first.Add(len(regs))
	j.all.Add(len(regs))
	for i := range regs {
		go j.one(i)
	}
	go func() {
		j.first.Wait()
		close(firsts)
		j.all.Wait()
		cancel()
	}()
	timer := time.NewTimer(m.cfg.EnsureTimeout)
	defer timer.Stop()
	select {
	case <-firsts:
	case <-ctx.Done():
	case <-timer.C:
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.admitted = true
	for i, o := range j.out {
		if o.panic != nil {
			panic(o.panic)
		}
		if !o.finished || o.err != nil {
			m.ahead(namespace, pod, regs[i], o)
		}
	}
}

// ahead counts and logs a pod admitted with the reference to a pull secret not written yet.
func (m *Mutator) ahead(namespace string, pod *corev1.Pod, reg *v1alpha1.Registry, o ensured) {
	m.cfg.Metrics.AdmittedAhead(reg.Name)
	if o.finished {
		m.cfg.Logger.Warn("admitting pod with the reference to a pull secret that could not be written yet; retrying",
			"namespace", namespace, "pod", podName(pod), "registry", reg.Name, "err", o.err)
		return
	}
	m.cfg.Logger.Warn("admitting pod with the reference to a pull secret still being written",
		"namespace", namespace, "pod", podName(pod), "registry", reg.Name, "waited", m.cfg.EnsureTimeout.String())
}

type ensureJob struct {
	m          *Mutator
	ctx        context.Context
	namespace  string
	regs       []*v1alpha1.Registry
	dryRun     bool
	first, all sync.WaitGroup
	mu         sync.Mutex
	out        []ensured
	admitted   bool // the review has answered: what finishes now is only logged
}

type ensured struct {
	err      error
	panic    any
	finished bool
}

// one ensures regs[i]'s pull secret once, then, if that failed, keeps trying with back-off
// unless another writer already does for the same namespace and registry.
func (j *ensureJob) one(i int) {
	defer j.all.Done()
	reg := j.regs[i]
	key := j.namespace + "/" + reg.Name
	var err error
	var p any
	if _, busy := j.m.retrying.Load(key); busy && !j.dryRun {
		// A writer is on it since an earlier pod: this one is admitted ahead at once.
		err = errors.New("the pull secret is still being written for an earlier pod")
	} else {
		// A source a moment behind (its Secret not in the informer's cache yet) is tried
		// again quickly while admission may still wait.
		start := time.Now()
		for p, err = j.ensure(reg); err != nil && p == nil && !j.dryRun && time.Since(start)+quickRetry < j.m.cfg.EnsureTimeout; p, err = j.ensure(reg) {
			select {
			case <-j.ctx.Done():
			case <-time.After(quickRetry):
			}
			if j.isAdmitted() || j.ctx.Err() != nil {
				break
			}
		}
	}
	j.mu.Lock()
	admitted := j.admitted
	if !admitted {
		j.out[i] = ensured{err: err, panic: p, finished: true}
	}
	j.mu.Unlock()
	j.first.Done()
	switch {
	case p != nil && !admitted:
		return // raised in the review by ensureAll
	case p != nil:
		j.m.cfg.Logger.Error("writing a pull secret after admission panicked", "namespace", j.namespace, "registry", reg.Name, "panic", fmt.Sprint(p))
		return
	case err == nil:
		if admitted {
			j.m.cfg.Logger.Info("pull secret written after its pod was admitted", "namespace", j.namespace, "registry", reg.Name)
		}
		return
	case j.dryRun:
		return
	}
	if _, busy := j.m.retrying.LoadOrStore(key, true); busy {
		return
	}
	defer j.m.retrying.Delete(key)
	for backoff := time.Second; ; backoff = min(2*backoff, 15*time.Second) {
		select {
		case <-j.ctx.Done():
			j.m.cfg.Logger.Error("gave up writing a pull secret that pods refer to", "namespace", j.namespace, "registry", reg.Name, "err", err)
			return
		case <-time.After(backoff):
		}
		if p, err = j.ensure(reg); p == nil && err == nil {
			j.m.cfg.Logger.Info("pull secret written after its pods were admitted", "namespace", j.namespace, "registry", reg.Name)
			return
		}
		if p != nil {
			j.m.cfg.Logger.Error("writing a pull secret after admission panicked", "namespace", j.namespace, "registry", reg.Name, "panic", fmt.Sprint(p))
			return
		}
	}
}

// quickRetry spaces the tries of a pull secret while admission waits.
const quickRetry = 250 * time.Millisecond

func (j *ensureJob) isAdmitted() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.admitted
}

// ensure writes reg's pull secret once; a panic comes back as p.
func (j *ensureJob) ensure(reg *v1alpha1.Registry) (p any, err error) {
	defer func() { p = recover() }()
	_, err = j.m.cfg.Secrets.Ensure(j.ctx, j.namespace, reg, j.dryRun)
	return nil, err
}

// registriesFor returns the Namespaced registries serving the pod's images in this namespace,
// sorted by name so the pod's secret order never depends on map or image order.
func registriesFor(table *registrytable.Table, pod *corev1.Pod, ns *corev1.Namespace) []*v1alpha1.Registry {
	imgs := Images(pod)
	out := make([]*v1alpha1.Registry, 0, len(imgs))
	for _, img := range imgs {
		m, ok, err := table.Lookup(img)
		if err != nil || !ok {
			// An invalid image fails at the kubelet with a clear message; nothing to add here.
			continue
		}
		reg := m.Registry
		// A pod's images are few: a scan costs less than a set.
		if slices.ContainsFunc(out, func(r *v1alpha1.Registry) bool { return r.Name == reg.Name }) || !RegistryServes(reg, ns) {
			continue
		}
		out = append(out, reg)
	}
	slices.SortFunc(out, func(a, b *v1alpha1.Registry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (m *Mutator) policy() Policy {
	return Policy{ClusterWide: m.cfg.ClusterWide, Excluded: m.excluded}
}

// Policy says which namespaces pullpass serves; the webhook and the keeper share it.
type Policy struct {
	ClusterWide bool
	Excluded    map[string]bool
}

// NamespaceServed reports whether pods of ns get pull secrets.
func (p Policy) NamespaceServed(ns *corev1.Namespace) bool {
	if p.Excluded[ns.Name] || ns.DeletionTimestamp != nil {
		return false
	}
	switch ns.Annotations[Annotation] {
	case Enabled:
		return true
	case Disabled:
		return false
	}
	return p.ClusterWide
}

// RegistryReaches reports whether a registry's credentials reach the pods of ns, however they
// are delivered: a Cluster-scope registry every pod's; a Namespaced one, by pull secret, the pods
// of the namespaces pullpass serves that it serves (RegistryServes); by the node, the pods of the
// namespaces its namespaceSelector selects, as the node agents grant it.
func (p Policy) RegistryReaches(reg *v1alpha1.Registry, ns *corev1.Namespace) bool {
	switch {
	case reg.Spec.EffectiveScope() == v1alpha1.ScopeCluster:
		return true
	case ns == nil || ns.DeletionTimestamp != nil:
		return false
	case reg.Spec.EffectiveDelivery() == v1alpha1.DeliveryPullSecret:
		return p.NamespaceServed(ns) && RegistryServes(reg, ns)
	case reg.Spec.NamespaceSelector == nil:
		return true
	}
	sel, err := metav1.LabelSelectorAsSelector(reg.Spec.NamespaceSelector)
	return err == nil && sel.Matches(labels.Set(ns.Labels)) // an invalid selector selects nothing
}

// RegistryServes reports whether a registry's pull secret belongs in ns: a Namespaced
// registry delivered by pull secrets whose namespaceSelector, if any, selects ns.
func RegistryServes(reg *v1alpha1.Registry, ns *corev1.Namespace) bool {
	return registrytable.Serves(reg, ns.Labels)
}

// Images returns every image of a pod: containers, init containers and ephemeral containers,
// each once, in spec order.
func Images(pod *corev1.Pod) []string {
	out := make([]string, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers)+len(pod.Spec.EphemeralContainers))
	add := func(img string) {
		if img != "" && !slices.Contains(out, img) {
			out = append(out, img)
		}
	}
	for _, c := range pod.Spec.InitContainers {
		add(c.Image)
	}
	for _, c := range pod.Spec.Containers {
		add(c.Image)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		add(c.Image)
	}
	return out
}

func podName(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName + "*"
}

func secretNames(in []injection) []string {
	out := make([]string, len(in))
	for i, a := range in {
		out[i] = a.secret
	}
	return out
}
