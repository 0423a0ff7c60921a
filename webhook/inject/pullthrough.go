package inject

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/slok/kubewebhook/v2/pkg/model"
	corev1 "k8s.io/api/core/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/image"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/pullthrough"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

// Rewrite is one image of a pod routed through a pull-through cache.
type Rewrite struct {
	// Field is the container list: "initContainers", "containers" or "ephemeralContainers".
	Field     string
	Index     int
	Container string
	From, To  string
	// Cache is the name of the pull-through Registry.
	Cache string
}

// Reasons an image of a cached upstream is left as it is: a bounded set, used as metric labels.
const (
	RewriteSkipConflict      = "conflict"
	RewriteSkipNoCredentials = "no_credentials"
	RewriteSkipTooLong       = "too_long"
)

// rewrite routes the pod's images of cached upstreams through their caches: it sets them in pod
// and appends each to rw as it goes, so a failure later in the review can undo them. It does
// nothing (and allocates nothing) when the table has no cache, and nothing for a pod or namespace
// that opted out of rewriting.
//
// An image is rewritten only when the credentials of the registry serving its new name reach the
// pod (served; nil: servedAtCreate), since a pull from the upstream may work without credentials
// and one from the cache would not. only, when set, picks the containers that may change.
func (m *Mutator) rewrite(table *registrytable.Table, ns *corev1.Namespace, pod *corev1.Pod, only func(field string, i int) bool,
	served func(reg *v1alpha1.Registry) bool, rw *[]Rewrite) {
	ix := table.PullThrough()
	if ix == nil || pullthrough.OptedOut(pod.Annotations) || pullthrough.OptedOut(ns.Annotations) {
		return
	}
	if served == nil {
		served = servedAtCreate(ns)
	}
	visit := func(field string, i int, name string, img *string) {
		if only != nil && !only(field, i) {
			return
		}
		if !ix.Upstream(image.Host(*img)) {
			return // most images: no parsing, no allocation
		}
		ref, err := image.Parse(*img)
		if err != nil {
			return
		}
		ch := ix.Select(ref.Host, ns.Labels)
		if ch.Cache == nil {
			if ch.Conflict[0] != nil {
				m.cfg.Metrics.RewriteSkipped(RewriteSkipConflict)
			}
			return
		}
		to, ok := ch.Cache.Target.Rewrite(ref)
		if !ok {
			m.cfg.Metrics.RewriteSkipped(RewriteSkipTooLong)
			return
		}
		if mt, ok, _ := table.Lookup(to); !ok || !served(mt.Registry) {
			m.cfg.Metrics.RewriteSkipped(RewriteSkipNoCredentials)
			return
		}
		*rw = append(*rw, Rewrite{Field: field, Index: i, Container: name, From: *img, To: to, Cache: ch.Cache.Registry.Name})
		*img = to
	}
	for i := range pod.Spec.InitContainers {
		visit("initContainers", i, pod.Spec.InitContainers[i].Name, &pod.Spec.InitContainers[i].Image)
	}
	for i := range pod.Spec.Containers {
		visit("containers", i, pod.Spec.Containers[i].Name, &pod.Spec.Containers[i].Image)
	}
	for i := range pod.Spec.EphemeralContainers {
		visit("ephemeralContainers", i, pod.Spec.EphemeralContainers[i].Name, &pod.Spec.EphemeralContainers[i].Image)
	}
}

// servedAtCreate: a new pod gets the pull secret of a Namespaced registry that serves its
// namespace; a Cluster-scope registry is served to every kubelet by the node agent.
func servedAtCreate(ns *corev1.Namespace) func(*v1alpha1.Registry) bool {
	return func(reg *v1alpha1.Registry) bool {
		return reg.Spec.EffectiveScope() == v1alpha1.ScopeCluster || RegistryServes(reg, ns)
	}
}

// undoRewrites puts the pod's images back as they were.
func undoRewrites(pod *corev1.Pod, rw []Rewrite) {
	for _, r := range rw {
		switch r.Field {
		case "initContainers":
			pod.Spec.InitContainers[r.Index].Image = r.From
		case "containers":
			pod.Spec.Containers[r.Index].Image = r.From
		case "ephemeralContainers":
			pod.Spec.EphemeralContainers[r.Index].Image = r.From
		}
	}
}

// OriginalImages returns the value of the pod's original-images annotation after rw: the JSON
// object from container name to the image the pod asked for. Entries already there are kept
// (a reinvoked webhook, or another webhook's change after ours, must not lose what the user
// wrote); an annotation that is not such an object is replaced.
func OriginalImages(current string, rw []Rewrite) (string, error) {
	orig := map[string]string{}
	if current != "" {
		if err := json.Unmarshal([]byte(current), &orig); err != nil {
			orig = map[string]string{}
		}
	}
	for _, r := range rw {
		if _, ok := orig[r.Container]; !ok {
			orig[r.Container] = r.From
		}
	}
	b, err := json.Marshal(orig)
	return string(b), err
}

// rewriteOps are the JSON patch operations of rw: each image replaced, then the annotation set
// (annotations is the pod's, before the patch).
func rewriteOps(rw []Rewrite, annotations map[string]string, withAnnotation bool) ([]patchOp, error) {
	ops := make([]patchOp, 0, len(rw)+1)
	for _, r := range rw {
		ops = append(ops, patchOp{Op: "replace", Path: "/spec/" + r.Field + "/" + strconv.Itoa(r.Index) + "/image", Value: r.To})
	}
	if !withAnnotation {
		return ops, nil
	}
	v, err := OriginalImages(annotations[pullthrough.AnnotationOriginalImages], rw)
	if err != nil {
		return nil, err
	}
	if len(annotations) == 0 {
		return append(ops, patchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{pullthrough.AnnotationOriginalImages: v}}), nil
	}
	key := strings.ReplaceAll(strings.ReplaceAll(pullthrough.AnnotationOriginalImages, "~", "~0"), "/", "~1")
	return append(ops, patchOp{Op: "add", Path: "/metadata/annotations/" + key, Value: v}), nil
}

// PlanEphemeral routes the images of the ephemeral containers an update of the
// pods/ephemeralcontainers subresource adds (kubectl debug) through their pull-through caches,
// sets them in pod and returns what it changed. The pod's pull secrets cannot change there, so an
// image is rewritten only when the cache's credentials already reach the pod: the pod holds its
// pull secret, or the node agent serves it. The original-images annotation cannot change there
// either: each rewrite is logged instead. Like Plan, it never fails a review.
func (m *Mutator) PlanEphemeral(ctx context.Context, ar *model.AdmissionReview, pod, old *corev1.Pod) (rw []Rewrite) {
	namespace := cmp.Or(ar.Namespace, pod.Namespace)
	// Built only when something is logged.
	log := func() *slog.Logger {
		return m.cfg.Logger.With("namespace", namespace, "pod", podName(pod), "uid", ar.ID)
	}
	defer func() {
		if r := recover(); r != nil {
			m.cfg.Metrics.Error(ErrorPanic)
			log().Error("admitting ephemeral containers unchanged after a panic", "panic", fmt.Sprint(r))
			undoRewrites(pod, rw)
			rw = nil
		}
	}()
	ns, table, skip, kind, err := m.served(ctx, namespace, pod)
	if err != nil {
		m.cfg.Metrics.Error(kind)
		log().Error("admitting ephemeral containers unchanged", "kind", kind, "err", err)
		return nil
	}
	if skip != "" {
		return nil
	}
	existing := make(map[string]bool, len(old.Spec.EphemeralContainers))
	for _, c := range old.Spec.EphemeralContainers {
		existing[c.Name] = true
	}
	added := func(field string, i int) bool {
		return field == "ephemeralContainers" && !existing[pod.Spec.EphemeralContainers[i].Name]
	}
	served := func(reg *v1alpha1.Registry) bool {
		if reg.Spec.EffectiveScope() == v1alpha1.ScopeCluster {
			return true
		}
		name := pullsecret.Name(reg.Name)
		return RegistryServes(reg, ns) && slices.ContainsFunc(pod.Spec.ImagePullSecrets, func(s corev1.LocalObjectReference) bool { return s.Name == name })
	}
	m.rewrite(table, ns, pod, added, served, &rw)
	for _, r := range rw {
		m.cfg.Metrics.Rewritten(r.Cache)
		log().Info("rewriting an ephemeral container's image through its pull-through cache", "container", r.Container, "from", r.From, "to", r.To, "cache", r.Cache)
	}
	return rw
}
