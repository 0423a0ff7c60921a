//go:build e2e

package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/ecr/ecrtest"
	"github.com/pullpass/pullpass/pkg/pullthrough"
)

// pullThroughCache makes the test registry a "cache" of Docker Hub: the test image is copied to
// PREFIX/library/pphello:1 there, as an ECR pull-through rule or a Harbor proxy project would
// hold Docker Hub's pphello:1. It returns the prefix and the namespace label the cache selects.
func pullThroughCache(t *testing.T, e *framework.Env) (prefix string, selector map[string]string) {
	t.Helper()
	id := rand.String(6)
	prefix = "e2e-cache-" + id
	e.CopyImage(t, e.Image, e.Registry+"/"+prefix+"/library/pphello:1")
	return prefix, map[string]string{"pullpass.io/e2e-cache": id}
}

// labelled creates a namespace with the cache's label, opted in or not.
func labelled(t *testing.T, e *framework.Env, prefix string, annotations, labels map[string]string) string {
	t.Helper()
	name := e.Namespace(t, prefix, annotations)
	ctx := framework.Context(t, time.Minute)
	ns, err := e.Kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range labels {
		ns.Labels[k] = v
	}
	if _, err := e.Kube.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// waitRewritten waits until the webhook, whose registry table follows Registry objects a moment
// behind, rewrites pphello:1 in a dry run in ns, and returns the image it rewrites it to.
func waitRewritten(t *testing.T, e *framework.Env, ns string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := e.Kube.CoreV1().Pods(ns).Create(framework.Context(t, time.Minute), e.Pod(ns, framework.PodOptions{Image: "pphello:1"}),
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("dry-run pod: %v", err)
		}
		if img := out.Spec.Containers[0].Image; img != "pphello:1" {
			return img
		}
		if time.Now().After(deadline) {
			t.Fatal("the webhook did not start rewriting pphello:1 within 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func originalImages(t *testing.T, p *corev1.Pod) map[string]string {
	t.Helper()
	var m map[string]string
	if v, ok := p.Annotations[pullthrough.AnnotationOriginalImages]; ok {
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			t.Fatalf("annotation %s: %v", v, err)
		}
	}
	return m
}

// The promise: with the test registry as a pull-through cache of Docker Hub, a pod of an
// opted-in namespace asking for pphello:1 (in its container and its init container) runs
// REGISTRY/PREFIX/library/pphello:1 with the cache's pull secret, and says what it asked for; a
// debug container added later too; a namespace that did not opt in, and a pod that opted out of
// rewriting, keep pphello:1.
func TestPullThroughCacheRewritesDockerHubImages(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	ctx := framework.Context(t, 5*time.Minute)
	prefix, sel := pullThroughCache(t, e)
	reg := e.CreateRegistry(t, framework.RegistryOptions{
		Name: "e2e-pt-" + sel["pullpass.io/e2e-cache"], NamespaceSelector: &metav1.LabelSelector{MatchLabels: sel},
		PullThrough: &v1alpha1.PullThrough{Upstream: "docker.io", Prefix: prefix},
	})
	secret := "pullpass-" + reg.Name
	want := e.Registry + "/" + prefix + "/library/pphello:1"

	ns := labelled(t, e, "pt", optIn, sel)
	if got := waitRewritten(t, e, ns); got != want {
		t.Fatalf("pphello:1 rewritten to %s, want %s", got, want)
	}
	before := e.WebhookMetric(t, ep, "pullpass_webhook_image_rewrites_total", map[string]string{"cache": reg.Name})
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: "pphello:1", InitImage: "pphello:1"}))
	if got := pod.Spec.Containers[0].Image; got != want {
		t.Fatalf("container image %s, want %s", got, want)
	}
	if got := pod.Spec.InitContainers[0].Image; got != want {
		t.Fatalf("init container image %s, want %s", got, want)
	}
	if got := names(pod.Spec.ImagePullSecrets); !slices.Equal(got, []string{secret}) {
		t.Fatalf("pull secrets %v, want [%s]", got, secret)
	}
	if got := originalImages(t, pod); got["main"] != "pphello:1" || got["init"] != "pphello:1" || len(got) != 2 {
		t.Fatalf("annotation %s = %v, want main and init at pphello:1", pullthrough.AnnotationOriginalImages, got)
	}
	e.WaitRunning(t, ns, pod.Name)
	if ev := e.FailedPullEvents(t, ns, pod.Name); len(ev) != 0 {
		t.Fatalf("pulls failed before succeeding: %v", ev)
	}
	if after := e.WebhookMetric(t, ep, "pullpass_webhook_image_rewrites_total", map[string]string{"cache": reg.Name}); after != before+2 {
		t.Fatalf("pullpass_webhook_image_rewrites_total{cache=%q} went %v -> %v, want +2", reg.Name, before, after)
	}

	// kubectl debug: an ephemeral container added through the subresource goes through the
	// cache too, with the pull secret the pod already has.
	running, err := e.Kube.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	running.Spec.EphemeralContainers = append(running.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debugger", Image: "pphello:1", Command: []string{"/hello"}, ImagePullPolicy: corev1.PullAlways,
	}})
	debugged, err := e.Kube.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, pod.Name, running, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := debugged.Spec.EphemeralContainers[0].Image; got != want {
		t.Fatalf("ephemeral container image %s, want %s", got, want)
	}
	e.WaitPod(t, ns, pod.Name, 2*time.Minute, "with its debug container done", func(p *corev1.Pod) bool {
		for _, s := range p.Status.EphemeralContainerStatuses {
			if w := s.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				t.Fatalf("the debug container's pull failed: %s", w.Message)
			}
			if done := s.State.Terminated; done != nil {
				if done.ExitCode != 0 {
					t.Fatalf("the debug container exited %d: %s", done.ExitCode, done.Message)
				}
				return true
			}
		}
		return false
	})

	// Untouched: a namespace with the cache's label that did not opt in, and a pod that opted
	// out of rewriting alone (it still gets the pull secret for the cache's host).
	plain := labelled(t, e, "pt-plain", nil, sel)
	p := e.CreatePod(t, e.Pod(plain, framework.PodOptions{Image: "pphello:1", InitImage: "pphello:1"}))
	if p.Spec.Containers[0].Image != "pphello:1" || p.Spec.InitContainers[0].Image != "pphello:1" || len(p.Spec.ImagePullSecrets) != 0 || originalImages(t, p) != nil {
		t.Fatalf("a namespace that did not opt in: images %s, %s, secrets %v, annotations %v", p.Spec.Containers[0].Image, p.Spec.InitContainers[0].Image, p.Spec.ImagePullSecrets, p.Annotations)
	}
	out := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: "pphello:1", Annotations: map[string]string{pullthrough.AnnotationOptOut: "disabled"}}))
	if out.Spec.Containers[0].Image != "pphello:1" || originalImages(t, out) != nil {
		t.Fatalf("a pod that opted out of rewriting: image %s, annotations %v", out.Spec.Containers[0].Image, out.Annotations)
	}

	// The CLI says the same, reading the namespace from the cluster.
	r := runCLI(t, e, "", "explain", "pphello:1", "--namespace", ns)
	if r.code != 0 || !strings.Contains(r.out, "\nrewritten: "+want+"\n") || !strings.Contains(r.out, "\npull secret: "+reg.Name+" ") {
		t.Fatalf("explain: exit %d\n%s%s", r.code, r.out, r.errOut)
	}
	waitFor(t, 30*time.Second, "the PullThrough condition Active", func() bool {
		got, err := e.Registries.Get(ctx, reg.Name, metav1.GetOptions{})
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionPullThrough)
		return err == nil && c != nil && c.Status == metav1.ConditionTrue && c.Reason == pullthrough.ReasonActive
	})
}

// An ECR pull-through cache is an ordinary ECR registry for pullpass: its token comes from the
// local ECR API through the real AWS SDK in the deployed webhook, and a pod asking for pphello:1
// runs the cache's image with it.
func TestPullThroughCacheOnECR(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	prefix, sel := pullThroughCache(t, e)
	srv := startECR(t, ecrtest.Reply{Username: e.RegistryUsername, Password: e.RegistryPassword, ExpiresAt: time.Now().Add(time.Hour)})
	reg := createECRRegistry(t, e, "e2e-ecr-pt-"+sel["pullpass.io/e2e-cache"], v1alpha1.ScopeNamespaced, func(r *v1alpha1.Registry) {
		r.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: sel}
		r.Spec.PullThrough = &v1alpha1.PullThrough{Upstream: "docker.io", Prefix: prefix}
	})
	ns := labelled(t, e, "pt-ecr", optIn, sel)
	want := e.Registry + "/" + prefix + "/library/pphello:1"
	if got := waitRewritten(t, e, ns); got != want {
		t.Fatalf("pphello:1 rewritten to %s, want %s", got, want)
	}
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: "pphello:1"}))
	if got := names(pod.Spec.ImagePullSecrets); pod.Spec.Containers[0].Image != want || !slices.Equal(got, []string{"pullpass-" + reg.Name}) {
		t.Fatalf("image %s, pull secrets %v", pod.Spec.Containers[0].Image, got)
	}
	e.WaitRunning(t, ns, pod.Name)
	if _, signed := srv.Calls(); signed == 0 {
		t.Fatal("no SigV4-signed GetAuthorizationToken reached the local ECR API")
	}
}
