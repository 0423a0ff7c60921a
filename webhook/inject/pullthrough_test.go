package inject_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/slok/kubewebhook/v2/pkg/model"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/pullthrough"
	"github.com/pullpass/pullpass/pkg/registrytable"
	"github.com/pullpass/pullpass/webhook/inject"
)

const (
	ecrHost = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
	hub     = ecrHost + "/docker-hub/"
	dgst    = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func cacheOf(r *v1alpha1.Registry, upstream, prefix string) *v1alpha1.Registry {
	r.Spec.PullThrough = &v1alpha1.PullThrough{Upstream: upstream, Prefix: prefix}
	return r
}

// The registries of the pull-through tests: Docker Hub through ECR for every namespace, Quay
// through a Harbor project for team b, registry.k8s.io through a node-served mirror, and a
// Namespaced registry for one team's path in the ECR cache.
func pullThroughRegistries() []*v1alpha1.Registry {
	return []*v1alpha1.Registry{
		cacheOf(registry("hub-cache", "", nil, ecrHost), "docker.io", "docker-hub"),
		registry("ghcr", "", nil, "ghcr.io"),
		cacheOf(registry("quay-cache", "", &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}, "harbor.example.com/quay"), "quay.io", "quay"),
		cacheOf(registry("k8s-mirror", v1alpha1.ScopeCluster, nil, "mirror.internal:5000"), "registry.k8s.io", "k8s"),
		registry("team-c-images", "", &metav1.LabelSelector{MatchLabels: map[string]string{"team": "c"}}, hub+"team-c/"),
	}
}

func originals(m map[string]string) map[string]string {
	b, _ := json.Marshal(m)
	return map[string]string{pullthrough.AnnotationOriginalImages: string(b)}
}

func TestPullThrough(t *testing.T) {
	namespaces := fakeNamespaces{
		"team-a":    namespace("team-a", optedIn, map[string]string{"team": "a"}),
		"team-b":    namespace("team-b", optedIn, map[string]string{"team": "b"}),
		"no-cache":  namespace("no-cache", map[string]string{inject.Annotation: inject.Enabled, pullthrough.AnnotationOptOut: "disabled"}, nil),
		"plain":     namespace("plain", nil, nil),
		"unwritten": namespace("unwritten", optedIn, nil),
	}
	tests := []struct {
		name        string
		namespace   string
		in, want    podSpec
		rewritten   map[string]int
		skipped     map[string]int
		failSecrets map[string]bool
	}{
		{
			name: "every form of a Docker Hub image, in every kind of container, keeps its tag and digest", namespace: "team-a",
			in: podSpec{
				init:       []string{"busybox:1.36"},
				containers: []string{"nginx", "library/nginx:1.27", "docker.io/bitnami/redis@" + dgst, "ghcr.io/org/app:v1", "index.docker.io/nginx:1.27@" + dgst},
				ephemeral:  []string{"registry-1.docker.io/org/tool"},
			},
			want: podSpec{
				init:       []string{hub + "library/busybox:1.36"},
				containers: []string{hub + "library/nginx", hub + "library/nginx:1.27", hub + "bitnami/redis@" + dgst, "ghcr.io/org/app:v1", hub + "library/nginx:1.27@" + dgst},
				ephemeral:  []string{hub + "org/tool"},
				secrets:    []string{"pullpass-ghcr", "pullpass-hub-cache"},
				annotations: originals(map[string]string{
					"inita": "busybox:1.36", "ca": "nginx", "cb": "library/nginx:1.27", "cc": "docker.io/bitnami/redis@" + dgst,
					"ce": "index.docker.io/nginx:1.27@" + dgst, "ea": "registry-1.docker.io/org/tool",
				}),
			},
			rewritten: map[string]int{"hub-cache": 6},
		},
		{
			name: "the user's annotations and secrets are kept", namespace: "team-a",
			in: podSpec{containers: []string{"nginx:1"}, secrets: []string{"mine"}, annotations: map[string]string{"team": "a"}},
			want: podSpec{containers: []string{hub + "library/nginx:1"}, secrets: []string{"mine", "pullpass-hub-cache"},
				annotations: map[string]string{"team": "a", pullthrough.AnnotationOriginalImages: `{"ca":"nginx:1"}`}},
			rewritten: map[string]int{"hub-cache": 1},
		},
		{
			// Reinvoked after other webhooks added a sidecar and pinned a digest on an image of
			// Docker Hub: the rewritten image is left alone, the other two rewritten, what the
			// user asked for kept in the annotation and the secret not added twice.
			name: "reinvocation never rewrites twice", namespace: "team-a",
			in: podSpec{
				containers:  []string{hub + "library/nginx:1", "envoyproxy/envoy:v1.31", "redis@" + dgst},
				secrets:     []string{"pullpass-hub-cache"},
				annotations: originals(map[string]string{"ca": "nginx:1", "cc": "redis:7"}),
			},
			want: podSpec{
				containers:  []string{hub + "library/nginx:1", hub + "envoyproxy/envoy:v1.31", hub + "library/redis@" + dgst},
				secrets:     []string{"pullpass-hub-cache"},
				annotations: originals(map[string]string{"ca": "nginx:1", "cb": "envoyproxy/envoy:v1.31", "cc": "redis:7"}),
			},
			rewritten: map[string]int{"hub-cache": 2},
		},
		{
			name: "a pod opts out of rewriting alone", namespace: "team-a",
			in:   podSpec{containers: []string{"nginx", "ghcr.io/o/a"}, annotations: map[string]string{pullthrough.AnnotationOptOut: "disabled"}},
			want: podSpec{containers: []string{"nginx", "ghcr.io/o/a"}, secrets: []string{"pullpass-ghcr"}, annotations: map[string]string{pullthrough.AnnotationOptOut: "disabled"}},
		},
		{
			name: "a namespace opts out of rewriting alone", namespace: "no-cache",
			in:   podSpec{containers: []string{"nginx", "ghcr.io/o/a"}},
			want: podSpec{containers: []string{"nginx", "ghcr.io/o/a"}, secrets: []string{"pullpass-ghcr"}},
		},
		{
			name: "a namespace that did not opt in is untouched", namespace: "plain",
			in: podSpec{containers: []string{"nginx"}}, want: podSpec{containers: []string{"nginx"}},
		},
		{
			name: "a pod that opted out of pullpass is untouched", namespace: "team-a",
			in:   podSpec{containers: []string{"nginx"}, annotations: map[string]string{inject.Annotation: inject.Disabled}},
			want: podSpec{containers: []string{"nginx"}, annotations: map[string]string{inject.Annotation: inject.Disabled}},
		},
		{
			name: "a cache's namespaceSelector: not team a's", namespace: "team-a",
			in: podSpec{containers: []string{"quay.io/prometheus/node-exporter:v1.8.0"}}, want: podSpec{containers: []string{"quay.io/prometheus/node-exporter:v1.8.0"}},
		},
		{
			name: "a cache's namespaceSelector: team b's", namespace: "team-b",
			in: podSpec{containers: []string{"quay.io/prometheus/node-exporter:v1.8.0"}},
			want: podSpec{containers: []string{"harbor.example.com/quay/prometheus/node-exporter:v1.8.0"}, secrets: []string{"pullpass-quay-cache"},
				annotations: originals(map[string]string{"ca": "quay.io/prometheus/node-exporter:v1.8.0"})},
			rewritten: map[string]int{"quay-cache": 1},
		},
		{
			name: "a Cluster-scope cache: rewritten, no pull secret (the node agent serves it)", namespace: "team-a",
			in:        podSpec{containers: []string{"registry.k8s.io/pause:3.10"}},
			want:      podSpec{containers: []string{"mirror.internal:5000/k8s/pause:3.10"}, annotations: originals(map[string]string{"ca": "registry.k8s.io/pause:3.10"})},
			rewritten: map[string]int{"k8s-mirror": 1},
		},
		{
			// team-c/app in the cache belongs to a registry that does not serve team a: its
			// credentials would not reach the pod, which can still pull from Docker Hub.
			name: "an image whose cache credentials would not reach the pod is left alone", namespace: "team-a",
			in: podSpec{containers: []string{"team-c/app:1"}}, want: podSpec{containers: []string{"team-c/app:1"}},
			skipped: map[string]int{inject.RewriteSkipNoCredentials: 1},
		},
		{
			// Written after admission, as any pull secret (issue #24); the kubelet's next try uses it.
			name: "a cache pull secret not written in time: the pod goes through the cache with its reference", namespace: "unwritten", failSecrets: map[string]bool{"hub-cache": true},
			in: podSpec{containers: []string{"nginx", "ghcr.io/o/a"}},
			want: podSpec{containers: []string{hub + "library/nginx", "ghcr.io/o/a"}, secrets: []string{"pullpass-ghcr", "pullpass-hub-cache"},
				annotations: map[string]string{pullthrough.AnnotationOriginalImages: `{"ca":"nginx"}`}},
			rewritten: map[string]int{"hub-cache": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newCounting()
			m, err := inject.New(inject.Config{
				Namespaces: namespaces, Registries: fakeTable{registrytable.Build(pullThroughRegistries())},
				Secrets: &fakeSecrets{fail: tt.failSecrets}, Metrics: rec, BackgroundTimeout: time.Second, EnsureTimeout: 300 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			want := pod(tt.want)
			want.Namespace = tt.namespace

			// Through kubewebhook's Mutator...
			p := pod(tt.in)
			p.Namespace = tt.namespace
			res, err := m.Mutate(context.Background(), &model.AdmissionReview{Operation: model.OperationCreate, Namespace: tt.namespace}, p)
			if err != nil {
				t.Fatalf("Mutate: %v", err)
			}
			got := p
			if res.MutatedObject != nil {
				got = res.MutatedObject.(*corev1.Pod)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("Mutate: pod (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.rewritten, rec.rewritten, cmpEmpty); diff != "" {
				t.Errorf("rewrites counted (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.skipped, rec.rewriteSkipped, cmpEmpty); diff != "" {
				t.Errorf("rewrites skipped (-want +got):\n%s", diff)
			}
			if len(tt.rewritten) > 0 && len(rec.skipped) > 0 {
				t.Errorf("a rewritten pod counted as skipped: %v", rec.skipped)
			}

			// ... and through the webhook's own JSON patch, applied as the API server applies it.
			in := pod(tt.in)
			in.Namespace = tt.namespace
			if diff := cmp.Diff(want, reviewed(t, m, in)); diff != "" {
				t.Fatalf("Review: patched pod (-want +got):\n%s", diff)
			}
		})
	}
}

var cmpEmpty = cmp.Comparer(func(a, b map[string]int) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return cmp.Equal(a, b)
})

// reviewed sends a pod through Webhook.Review and applies the patch it answers with.
func reviewed(t *testing.T, m *inject.Mutator, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	res, err := inject.Webhook{Mutator: m}.Review(context.Background(), model.AdmissionReview{ID: "1", Operation: model.OperationCreate, Namespace: p.Namespace, NewObjectRaw: raw})
	if err != nil {
		t.Fatalf("Review: %v", err)
	}
	return applyPatch(t, raw, res.(*model.MutatingAdmissionResponse).JSONPatchPatch)
}

func applyPatch(t *testing.T, raw, patch []byte) *corev1.Pod {
	t.Helper()
	ops, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("patch %s: %v", patch, err)
	}
	out, err := ops.Apply(raw)
	if err != nil {
		t.Fatalf("applying %s: %v", patch, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

// Two caches of Docker Hub for one namespace, equally specific: neither is used, the conflict
// counted; the one with the more specific selector wins where it applies.
func TestPullThroughConflict(t *testing.T) {
	regs := []*v1alpha1.Registry{
		cacheOf(registry("ecr-hub", "", nil, ecrHost), "docker.io", "docker-hub"),
		cacheOf(registry("harbor-hub", "", nil, "harbor.example.com"), "docker.io", "hub"),
		cacheOf(registry("gitlab-hub", "", &metav1.LabelSelector{MatchLabels: map[string]string{"team": "g"}}, "gitlab.example.com"), "docker.io", "g/dependency_proxy/containers"),
	}
	rec := newCounting()
	m, err := inject.New(inject.Config{
		Namespaces: fakeNamespaces{
			"team-a": namespace("team-a", optedIn, nil),
			"team-g": namespace("team-g", optedIn, map[string]string{"team": "g"}),
		},
		Registries: fakeTable{registrytable.Build(regs)}, Secrets: &fakeSecrets{}, Metrics: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := pod(podSpec{containers: []string{"nginx"}})
	p.Namespace = "team-a"
	if got := reviewed(t, m, p); got.Spec.Containers[0].Image != "nginx" || len(got.Annotations) != 0 || len(got.Spec.ImagePullSecrets) != 0 {
		t.Fatalf("a conflict rewrote the pod: %+v", got)
	}
	if rec.rewriteSkipped[inject.RewriteSkipConflict] != 1 {
		t.Fatalf("rewrite skips %v, want one conflict", rec.rewriteSkipped)
	}
	p.Namespace = "team-g"
	if got := reviewed(t, m, p).Spec.Containers[0].Image; got != "gitlab.example.com/g/dependency_proxy/containers/library/nginx" {
		t.Fatalf("the more specific cache gave %s", got)
	}
}

// kubectl debug adds an ephemeral container through the pods/ephemeralcontainers subresource:
// only the new container may change, and only when the cache's pull secret is already in the pod
// (it cannot be added there).
func TestPullThroughEphemeralContainers(t *testing.T) {
	rec := newCounting()
	m, err := inject.New(inject.Config{
		Namespaces: fakeNamespaces{"team-a": namespace("team-a", optedIn, nil)},
		Registries: fakeTable{registrytable.Build(pullThroughRegistries())}, Secrets: &fakeSecrets{}, Metrics: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	review := func(old, updated *corev1.Pod) *corev1.Pod {
		t.Helper()
		oldRaw, _ := json.Marshal(old)
		raw, _ := json.Marshal(updated)
		ar := model.NewAdmissionReviewV1(&admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{
			UID: "1", Operation: admissionv1.Update, SubResource: "ephemeralcontainers", Namespace: "team-a",
			Object: runtimeRaw(raw), OldObject: runtimeRaw(oldRaw),
		}})
		res, err := inject.Webhook{Mutator: m}.Review(context.Background(), ar)
		if err != nil {
			t.Fatal(err)
		}
		return applyPatch(t, raw, res.(*model.MutatingAdmissionResponse).JSONPatchPatch)
	}
	old := pod(podSpec{containers: []string{hub + "library/nginx"}, ephemeral: []string{"busybox"}, secrets: []string{"pullpass-hub-cache"}})
	old.Namespace = "team-a"
	updated := old.DeepCopy()
	updated.Spec.EphemeralContainers = append(updated.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox:1.36"}})
	got := review(old, updated)
	if got.Spec.EphemeralContainers[0].Image != "busybox" || got.Spec.EphemeralContainers[1].Image != hub+"library/busybox:1.36" {
		t.Fatalf("ephemeral containers %+v: want only the new one rewritten", got.Spec.EphemeralContainers)
	}
	if rec.rewritten["hub-cache"] != 1 {
		t.Fatalf("rewrites %v", rec.rewritten)
	}

	// Without the cache's pull secret in the pod the image stays: Docker Hub may serve it.
	noSecret := old.DeepCopy()
	noSecret.Spec.ImagePullSecrets = nil
	updated = noSecret.DeepCopy()
	updated.Spec.EphemeralContainers = append(updated.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox:1.36"}})
	if got := review(noSecret, updated); got.Spec.EphemeralContainers[1].Image != "busybox:1.36" {
		t.Fatalf("rewrote an ephemeral container whose pod lacks the cache's pull secret: %s", got.Spec.EphemeralContainers[1].Image)
	}
	// A node-served cache needs no pull secret.
	updated.Spec.EphemeralContainers[1].Image = "registry.k8s.io/e2e-test-images/agnhost:2.53"
	if got := review(noSecret, updated); got.Spec.EphemeralContainers[1].Image != "mirror.internal:5000/k8s/e2e-test-images/agnhost:2.53" {
		t.Fatalf("node-served cache: %s", got.Spec.EphemeralContainers[1].Image)
	}
}

func runtimeRaw(b []byte) runtime.RawExtension { return runtime.RawExtension{Raw: b} }

// The annotation is JSON written by hand: it decodes to what was there (when that was an object
// of strings) plus each new container's original image, whatever the strings hold.
func FuzzOriginalImages(f *testing.F) {
	f.Add(`{"a":"nginx"}`, "b", "redis:7")
	f.Add(``, "main", "docker.io/library/nginx@"+dgst)
	f.Add(`not json`, "c\"x", "a\\b\u0001\u2028é")
	f.Add(`{"a":"nginx"}`, "a", "other")
	f.Fuzz(func(t *testing.T, current, name, img string) {
		if !utf8.ValidString(current) || !utf8.ValidString(name) || !utf8.ValidString(img) {
			return // pods arrive as JSON: their strings are valid UTF-8
		}
		want := map[string]string{}
		if json.Unmarshal([]byte(current), &want) != nil || want == nil {
			want = map[string]string{}
		}
		if _, ok := want[name]; !ok {
			want[name] = img
		}
		out := inject.OriginalImages(current, []inject.Rewrite{{Container: name, From: img}})
		var got map[string]string
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("OriginalImages(%q, %q: %q) = %s: %v", current, name, img, out, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("OriginalImages(%q, %q: %q) = %s (-want +got):\n%s", current, name, img, out, diff)
		}
	})
}
