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
		// The new name less its tag and digest is its repository.
		repo := len(to)
		if ref.Tag != "" {
			repo -= 1 + len(ref.Tag)
		}
		if ref.Digest != "" {
			repo -= 1 + len(ref.Digest)
		}
		if reg, ok := table.LookupRepository(to[:repo]); !ok || !served(reg) {
			m.cfg.Metrics.RewriteSkipped(RewriteSkipNoCredentials)
			return
		}
		if *rw == nil {
			*rw = make([]Rewrite, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers)+len(pod.Spec.EphemeralContainers))
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
// object from container name to the image the pod asked for, names sorted. Entries already there
// are kept (a reinvoked webhook, or another webhook's change after ours, must not lose what the
// user wrote); an annotation that is not such an object is replaced.
func OriginalImages(current string, rw []Rewrite) string {
	return string(appendOriginalImages(nil, current, rw))
}

func appendOriginalImages(buf []byte, current string, rw []Rewrite) []byte {
	var orig map[string]string
	if current != "" && json.Unmarshal([]byte(current), &orig) != nil {
		orig = nil
	}
	type entry struct{ name, image string }
	entries := make([]entry, 0, len(orig)+len(rw))
	size := 2
	for k, v := range orig {
		entries = append(entries, entry{k, v})
		size += len(k) + len(v) + 6
	}
	for _, r := range rw {
		if _, ok := orig[r.Container]; !ok && !slices.ContainsFunc(entries, func(e entry) bool { return e.name == r.Container }) {
			entries = append(entries, entry{r.Container, r.From})
			size += len(r.Container) + len(r.From) + 6
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	buf = slices.Grow(buf, size)
	buf = append(buf, '{')
	for i, e := range entries {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, e.name)
		buf = append(buf, ':')
		buf = appendJSONString(buf, e.image)
	}
	return append(buf, '}')
}

// appendRewriteOps appends the JSON patch operations of rw, comma-separated: each image
// replaced, then, withAnnotation, the original-images annotation set (annotations are the pod's
// before the patch). Written by hand: this runs for every rewritten pod, and encoding/json's
// reflection cost more than the rest of the rewrite.
func appendRewriteOps(buf []byte, rw []Rewrite, annotations map[string]string, withAnnotation bool) []byte {
	for i, r := range rw {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"op":"replace","path":"/spec/`...)
		buf = append(buf, r.Field...)
		buf = append(buf, '/')
		buf = strconv.AppendInt(buf, int64(r.Index), 10)
		buf = append(buf, `/image","value":`...)
		buf = appendJSONString(buf, r.To)
		buf = append(buf, '}')
	}
	if !withAnnotation {
		return buf
	}
	// The value is JSON inside a JSON string: built first, then quoted.
	value := appendOriginalImages(nil, annotations[pullthrough.AnnotationOriginalImages], rw)
	if len(annotations) == 0 {
		buf = append(buf, `,{"op":"add","path":"/metadata/annotations","value":{`...)
		buf = appendJSONString(buf, pullthrough.AnnotationOriginalImages)
		buf = append(buf, ':')
		buf = appendJSONString(buf, value)
		return append(buf, "}}"...)
	}
	buf = append(buf, `,{"op":"add","path":"/metadata/annotations/`...)
	buf = append(buf, strings.ReplaceAll(strings.ReplaceAll(pullthrough.AnnotationOriginalImages, "~", "~0"), "/", "~1")...)
	buf = append(buf, `","value":`...)
	buf = appendJSONString(buf, value)
	return append(buf, '}')
}

// appendJSONString appends s as a JSON string. s is valid UTF-8 (it was decoded from JSON).
func appendJSONString[S string | []byte](buf []byte, s S) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[start:i]...)
		if c < 0x20 {
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		} else {
			buf = append(buf, '\\', c)
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
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
