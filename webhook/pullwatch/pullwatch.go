// Package pullwatch watches image pulls fail across the cluster: pod container statuses
// (ErrImagePull, ImagePullBackOff) and the kubelet's Failed events. Each failing container is one
// failure episode, counted once however often the kubelet retries, classified (auth, not_found,
// rate_limited, tls, network, other) and labelled with the Registry that serves its image. One
// replica runs it at a time (the controller's leader).
package pullwatch

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/pullfailure"
)

// RegistryOf names the registry label of an image that a pod with these pull secrets fails to
// pull: the Registry serving it, a well-known host, or "other".
type RegistryOf func(image, namespace string, pullSecrets []corev1.LocalObjectReference) string

// Config configures a Watcher.
type Config struct {
	Client   kubernetes.Interface
	Registry RegistryOf
	Metrics  *Metrics
	Logger   *slog.Logger
	Now      func() time.Time
	// GCPeriod is how often episodes of pods that are gone are dropped (default 1 min).
	GCPeriod time.Duration
	// EventWait is how long a pull failure seen at the start of a term waits for its Failed
	// event, which says when it began, before the pod's creation time stands in (default 10 s).
	EventWait time.Duration
	// Observe, when set, is told the pod's namespace and the image of each new failure episode
	// (the verifier logs in where pods fail to pull).
	Observe func(namespace, image string)
	// SeenImage, when set, is told the namespace and image of every container a pod's status
	// names, at each change of the pod (the verifier learns which hosts a glob registry serves:
	// the controller sees no admissions).
	SeenImage func(namespace, image string)
	// PodAdded, when set, is told the namespace and pull secrets of every pod as it is first
	// seen (the keeper writes a pull secret a pod was admitted ahead of).
	PodAdded func(namespace string, pullSecrets []corev1.LocalObjectReference)
}

// Watcher counts pull failure episodes.
type Watcher struct {
	cfg Config

	mu         sync.Mutex
	seeding    bool
	countSince time.Time // this term's: see Run
	episodes   map[key]*Episode
	ended      map[key]time.Time // when an episode ended: older events do not reopen it
	pods       cache.Store
}

type key struct {
	pod       types.UID
	container string
}

// Episode is one container failing to pull.
type Episode struct {
	Namespace, Pod, Container, Image, Registry string
	Reason                                     pullfailure.Reason
	Since                                      time.Time
	message                                    string
	// firstPull is when the kubelet's Failed events say the pulls began (zero: no event yet).
	// A pod's creation is no such sign: a pod created before a leader change can start
	// failing after it.
	firstPull time.Time
	// undecided: seen while seeding with no Failed event yet, in a pod older than the handover;
	// whether it is counted waits for its first event, or EventWait.
	undecided bool
}

// New returns a Watcher.
func New(cfg Config) (*Watcher, error) {
	if cfg.Client == nil || cfg.Registry == nil || cfg.Metrics == nil {
		return nil, errors.New("invalid configuration: client, registry and metrics are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GCPeriod == 0 {
		cfg.GCPeriod = time.Minute
	}
	if cfg.EventWait <= 0 {
		cfg.EventWait = 10 * time.Second
	}
	w := &Watcher{cfg: cfg, episodes: map[key]*Episode{}, ended: map[key]time.Time{}}
	cfg.Metrics.source = w
	return w, nil
}

// Run watches until ctx ends. Failures already under way when it starts are counted only when they
// may have begun after countSince: the last time the previous leader was seen alive, which counted
// those before (zero: there was none, count them all). "May have": the kubelet's event times
// carry whole seconds, and a failure missed is worse than one counted by both leaders of a
// handover.
func (w *Watcher) Run(ctx context.Context, countSince time.Time) {
	w.mu.Lock()
	w.seeding = true
	w.countSince = countSince
	w.episodes, w.ended = map[key]*Episode{}, map[key]time.Time{}
	w.mu.Unlock()

	synced, stop := w.watch(ctx)
	defer stop()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	w.settleSeeded(countSince)

	t := time.NewTicker(w.cfg.GCPeriod)
	defer t.Stop()
	eventWait := time.After(w.cfg.EventWait)
	for {
		select {
		case <-ctx.Done():
			return
		case <-eventWait:
			w.decideWaiting()
		case <-t.C:
			w.gc()
		}
	}
}

// watch starts the informers of pods (as podRecords) and of the kubelet's Failed events about
// pods, their handlers feeding the watcher; stop shuts them down.
func (w *Watcher) watch(ctx context.Context) (synced []cache.InformerSynced, stop func()) {
	podFactory := informers.NewSharedInformerFactoryWithOptions(w.cfg.Client, 10*time.Minute,
		informers.WithTransform(recordPod))
	eventFactory := informers.NewSharedInformerFactoryWithOptions(w.cfg.Client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.AndSelectors(fields.OneTermEqualSelector("reason", "Failed"),
				fields.OneTermEqualSelector("involvedObject.kind", "Pod")).String()
		}))
	pods := podFactory.Core().V1().Pods().Informer()
	events := eventFactory.Core().V1().Events().Informer()
	w.mu.Lock()
	w.pods = pods.GetStore()
	w.mu.Unlock()
	podReg, _ := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if p, ok := o.(*podRecord); ok && w.cfg.PodAdded != nil && len(p.PullSecrets) > 0 {
				w.cfg.PodAdded(p.Namespace, p.PullSecrets)
			}
			w.pod(o)
		},
		UpdateFunc: func(_, n any) { w.pod(n) },
		DeleteFunc: func(o any) { w.podGone(o) },
	})
	eventReg, _ := events.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) { w.event(o) },
		UpdateFunc: func(o, n any) {
			if oe, ok := o.(*corev1.Event); ok {
				if ne, ok := n.(*corev1.Event); ok && oe.ResourceVersion == ne.ResourceVersion {
					return // a resync, not a new failure
				}
			}
			w.event(n)
		},
	})
	podFactory.Start(ctx.Done())
	eventFactory.Start(ctx.Done())
	return []cache.InformerSynced{podReg.HasSynced, eventReg.HasSynced}, func() {
		podFactory.Shutdown()
		eventFactory.Shutdown()
	}
}

// settleSeeded decides, once both caches hold their first lists, the episodes seen while they
// filled: the seeding is over.
func (w *Watcher) settleSeeded(countSince time.Time) {
	w.mu.Lock()
	w.seeding = false
	counted, undecided := 0, 0
	for _, e := range w.episodes {
		// The pods were not all cached when the first events came: name the registry again.
		e.Registry = w.cfg.Registry(e.Image, e.Namespace, w.pullSecrets(e.Namespace, e.Pod))
		if e.firstPull.IsZero() && !w.mayBeAfter(e.Since) {
			// A pod older than the handover, failing, and no event yet: the event is on its
			// way (the kubelet writes both at once) and says when the pulls began.
			e.undecided = true
			undecided++
			continue
		}
		began := e.firstPull
		if began.IsZero() {
			began = e.Since // the pod was created after the handover: so was its failure
		}
		if w.decide(e, began) {
			counted++
		}
	}
	n := len(w.episodes)
	w.mu.Unlock()
	w.cfg.Logger.Info("watching image pulls", "failingNow", n, "countedAtStart", counted, "undecided", undecided, "countSince", countSince)
}

// pulling reports whether a container waits on a failed pull, and the kubelet's message.
func pulling(s corev1.ContainerStatus) (string, bool) {
	wt := s.State.Waiting
	if wt == nil || (wt.Reason != "ErrImagePull" && wt.Reason != "ImagePullBackOff") {
		return "", false
	}
	return wt.Message, true
}

func (w *Watcher) pod(o any) {
	p, ok := o.(*podRecord)
	if !ok {
		return
	}
	for _, c := range p.Containers {
		k := key{p.UID, c.Name}
		if w.cfg.SeenImage != nil && c.Image != "" {
			w.cfg.SeenImage(p.Namespace, c.Image)
		}
		if c.Failing {
			w.observe(k, p.Namespace, p.Name, c.Name, c.Image, c.Message, w.cfg.Now(), p.CreationTimestamp.Time, false)
		} else {
			w.end(k)
		}
	}
}

func (w *Watcher) podGone(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	p, ok := o.(*podRecord)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.episodes {
		if k.pod == p.UID {
			w.drop(k)
		}
	}
	for k := range w.ended {
		if k.pod == p.UID {
			delete(w.ended, k)
		}
	}
}

var (
	fieldPath   = regexp.MustCompile(`^spec\.(?:initContainers|containers|ephemeralContainers)\{(.+)\}$`)
	failedImage = regexp.MustCompile(`^Failed to pull image "([^"]+)"`)
)

// event handles a kubelet Failed event about a pull.
func (w *Watcher) event(o any) {
	ev, ok := o.(*corev1.Event)
	if !ok || ev.Reason != "Failed" || ev.InvolvedObject.Kind != "Pod" {
		return
	}
	img := failedImage.FindStringSubmatch(ev.Message)
	c := fieldPath.FindStringSubmatch(ev.InvolvedObject.FieldPath)
	if img == nil || c == nil {
		return // "Error: ErrImagePull" and the like carry no detail
	}
	at := ev.LastTimestamp.Time
	if ev.Series != nil && !ev.Series.LastObservedTime.IsZero() {
		at = ev.Series.LastObservedTime.Time
	}
	if at.IsZero() {
		at = ev.EventTime.Time
	}
	first := ev.FirstTimestamp.Time
	if first.IsZero() {
		first = at
	}
	if !ev.EventTime.IsZero() && ev.EventTime.Time.Before(first) {
		first = ev.EventTime.Time // events.k8s.io events: microseconds
	}
	w.observe(key{ev.InvolvedObject.UID, c[1]}, ev.InvolvedObject.Namespace, ev.InvolvedObject.Name, c[1], img[1], ev.Message, at, first, true)
}

// observe records that a container fails to pull (seen at, failing since about since): a new
// episode is counted once. fromEvent: since is when the kubelet's pulls began (a Failed event),
// not the pod's creation.
func (w *Watcher) observe(k key, namespace, pod, container, image, message string, at, since time.Time, fromEvent bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, ok := w.episodes[k]; ok {
		if e.Image == image {
			if w.seeding && !since.IsZero() && since.Before(e.Since) {
				e.Since = since // the earliest sign of the failure
			}
			if fromEvent && !since.IsZero() && (e.firstPull.IsZero() || since.Before(e.firstPull)) {
				e.firstPull = since
			}
			if e.undecided && !e.firstPull.IsZero() {
				w.decide(e, e.firstPull)
			}
			// The same episode: a retry. A better message refines an unclassified one.
			if e.Reason == pullfailure.Other {
				if r := pullfailure.Classify(message); r != pullfailure.Other {
					e.Reason = r
				}
			}
			return
		}
		w.drop(k) // the container's image changed: a new episode
	} else if end, ok := w.ended[k]; ok && !at.After(end) {
		return // an event from before the episode ended
	}
	e := &Episode{Namespace: namespace, Pod: pod, Container: container, Image: image,
		Registry: w.cfg.Registry(image, namespace, w.pullSecrets(namespace, pod)), Reason: pullfailure.Classify(message), Since: at, message: firstLine(message)}
	if w.seeding {
		if !since.IsZero() {
			e.Since = since
			if fromEvent {
				e.firstPull = since
			}
		}
		w.episodes[k] = e
		return // counted, or not, when seeding ends
	}
	w.episodes[k] = e
	delete(w.ended, k)
	w.count(e)
	if w.cfg.Observe != nil {
		w.cfg.Observe(namespace, image)
	}
}

// mayBeAfter reports whether a time known to the second may be after the previous leader was
// last seen (always, when there was none).
func (w *Watcher) mayBeAfter(t time.Time) bool {
	return w.countSince.IsZero() || t.Truncate(time.Second).Add(time.Second).After(w.countSince)
}

// decide counts an episode under way at the start of the term when it may have begun (at
// began) after the previous leader was last seen; true when counted.
func (w *Watcher) decide(e *Episode, began time.Time) bool {
	e.undecided = false
	if !w.mayBeAfter(began) {
		return false // the previous leader counted it
	}
	w.count(e)
	return true
}

// decideWaiting settles the episodes whose Failed event did not come within EventWait: the pod's
// creation is the only time there is.
func (w *Watcher) decideWaiting() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.episodes {
		if e.undecided {
			w.decide(e, e.Since)
		}
	}
}

// drop removes an episode; one still waiting for its event is settled first, so that a pod that
// recovers or goes meanwhile is not lost. Holds w.mu.
func (w *Watcher) drop(k key) {
	if e, ok := w.episodes[k]; ok && e.undecided {
		w.decide(e, e.Since)
	}
	delete(w.episodes, k)
}

func (w *Watcher) count(e *Episode) {
	w.cfg.Metrics.failures.WithLabelValues(e.Registry, e.Namespace, string(e.Reason)).Inc()
	w.cfg.Logger.Info("image pull failing", "namespace", e.Namespace, "pod", e.Pod, "container", e.Container,
		"image", e.Image, "registry", e.Registry, "reason", e.Reason, "message", e.message)
}

// end closes a container's episode when it no longer waits on a failed pull.
func (w *Watcher) end(k key) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, ok := w.episodes[k]; ok {
		w.drop(k)
		w.ended[k] = w.cfg.Now()
		w.cfg.Logger.Debug("image pull recovered", "namespace", e.Namespace, "pod", e.Pod, "container", e.Container, "after", w.cfg.Now().Sub(e.Since).Round(time.Second))
	}
}

// gc drops what belongs to pods that are gone (an event can outlive its pod).
func (w *Watcher) gc() {
	w.mu.Lock()
	defer w.mu.Unlock()
	alive := map[types.UID]bool{}
	for _, o := range w.pods.List() {
		alive[o.(*podRecord).UID] = true
	}
	for k := range w.episodes {
		if !alive[k.pod] {
			w.drop(k)
		}
	}
	for k := range w.ended {
		if !alive[k.pod] {
			delete(w.ended, k)
		}
	}
}

// Failing returns the episodes under way.
func (w *Watcher) Failing() []Episode {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Episode, 0, len(w.episodes))
	for _, e := range w.episodes {
		out = append(out, *e)
	}
	return out
}

// PodImage is an image a pod's container runs or waits for, with the pod's namespace: which
// registries serve the pod depends on it.
type PodImage struct{ Namespace, Image string }

// Images returns the distinct images the cached pods' containers run or wait for (from their
// statuses), by namespace: where pods actually pull from, for the verifier's glob host patterns.
func (w *Watcher) Images() []PodImage {
	w.mu.Lock()
	store := w.pods
	w.mu.Unlock()
	if store == nil {
		return nil
	}
	seen := map[PodImage]bool{}
	var out []PodImage
	for _, o := range store.List() {
		p := o.(*podRecord)
		for _, c := range p.Containers {
			if pi := (PodImage{Namespace: p.Namespace, Image: c.Image}); c.Image != "" && !seen[pi] {
				seen[pi] = true
				out = append(out, pi)
			}
		}
	}
	return out
}

// pullSecrets returns the pull secrets of a cached pod (none when it is not cached yet).
func (w *Watcher) pullSecrets(namespace, name string) []corev1.LocalObjectReference {
	if w.pods == nil {
		return nil
	}
	o, ok, err := w.pods.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil
	}
	if p, ok := o.(*podRecord); ok {
		return p.PullSecrets
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
