//go:build e2e

package e2e

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

var optIn = map[string]string{"pullpass.io/inject": "enabled"}

// The promise: in a namespace that opts in the moment before its first pod, a pod whose
// container and init container use the private image runs, with no pull secret written by the
// user and not one failed pull.
func TestWebhookFirstPodInFreshNamespacePulls(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "wh-fresh"})
	secret := "pullpass-" + reg.Name
	e.WaitServed(t, e.Namespace(t, "warmup", optIn), secret)
	before := e.WebhookMetric(t, ep, "pullpass_webhook_injections_total", map[string]string{"registry": reg.Name})

	ns := e.Namespace(t, "fresh", optIn)
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{InitImage: e.Image}))
	if got := names(pod.Spec.ImagePullSecrets); !slices.Equal(got, []string{secret}) {
		t.Fatalf("admitted pod has pull secrets %v, want [%s]", got, secret)
	}
	e.WaitRunning(t, ns, pod.Name)
	if ev := e.FailedPullEvents(t, ns, pod.Name); len(ev) != 0 {
		t.Fatalf("the first pull failed before succeeding: %v", ev)
	}
	if after := e.WebhookMetric(t, ep, "pullpass_webhook_injections_total", map[string]string{"registry": reg.Name}); after != before+1 {
		t.Fatalf("pullpass_webhook_injections_total{registry=%q} went %v -> %v, want +1", reg.Name, before, after)
	}
}

// Only what the user asked for: namespaces that did not opt in and pods that opted out are left
// alone (and their pulls fail, as without pullpass), and the user's own secrets are kept.
func TestWebhookRespectsOptInOptOutAndUserSecrets(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "wh-opt"})
	secret := "pullpass-" + reg.Name
	opted := e.Namespace(t, "opted", optIn)
	e.WaitServed(t, opted, secret)

	plain := e.Namespace(t, "plain", nil)
	p := e.CreatePod(t, e.Pod(plain, framework.PodOptions{}))
	if len(p.Spec.ImagePullSecrets) != 0 {
		t.Fatalf("pod in a namespace that did not opt in got %v", p.Spec.ImagePullSecrets)
	}
	if msg := e.WaitPullFailure(t, plain, p.Name); !authFailure.MatchString(msg) {
		t.Fatalf("pull in a plain namespace failed, but not for authentication: %s", msg)
	}
	if !e.SecretGone(t, plain, secret) {
		t.Fatal("a pull secret was written into a namespace that did not opt in")
	}

	out := e.CreatePod(t, e.Pod(opted, framework.PodOptions{Annotations: map[string]string{"pullpass.io/inject": "disabled"}}))
	if len(out.Spec.ImagePullSecrets) != 0 {
		t.Fatalf("pod that opted out got %v", out.Spec.ImagePullSecrets)
	}

	e.DockerConfigSecret(t, opted, "users-own", e.RegistryUsername, "wrong")
	mine := e.CreatePod(t, e.Pod(opted, framework.PodOptions{PullSecrets: []string{"users-own", "also-mine"}}))
	if got, want := names(mine.Spec.ImagePullSecrets), []string{"users-own", "also-mine", secret}; !slices.Equal(got, want) {
		t.Fatalf("pull secrets %v, want %v (the user's kept first, in order)", got, want)
	}
	e.WaitRunning(t, opted, mine.Name)
}

// A registry with a namespaceSelector is given only to the namespaces it selects.
func TestWebhookNamespaceSelector(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "wh-selector", NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "payments"}}})
	secret := "pullpass-" + reg.Name

	selected := e.Namespace(t, "payments", optIn)
	nsObj, err := e.Kube.CoreV1().Namespaces().Get(framework.Context(t, time.Minute), selected, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["team"] = "payments"
	if _, err := e.Kube.CoreV1().Namespaces().Update(framework.Context(t, time.Minute), nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitServed(t, selected, secret)

	other := e.Namespace(t, "other-team", optIn)
	if got := e.DryRunSecrets(t, other, e.Pod(other, framework.PodOptions{})); len(got) != 0 {
		t.Fatalf("a namespace the selector does not select got %v", got)
	}
	p := e.CreatePod(t, e.Pod(selected, framework.PodOptions{}))
	e.WaitRunning(t, selected, p.Name)
}

// Cluster-scope registries are served by the node agent, not by pull secrets.
func TestWebhookIgnoresClusterScope(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	ns := e.Namespace(t, "cluster-scope", optIn)
	e.CreateRegistry(t, framework.RegistryOptions{Name: "wh-cluster", Scope: v1alpha1.ScopeCluster})
	// The Namespaced marker registry proves the webhook's table has caught up.
	marker := e.CreateRegistry(t, framework.RegistryOptions{Name: "wh-marker", Hosts: []string{"marker.pullpass-e2e.invalid"}})
	markerPod := e.Pod(ns, framework.PodOptions{Image: "marker.pullpass-e2e.invalid/x:1"})
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Contains(e.DryRunSecrets(t, ns, markerPod), "pullpass-"+marker.Name) {
		if time.Now().After(deadline) {
			t.Fatal("the webhook never served the marker registry")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := e.DryRunSecrets(t, ns, e.Pod(ns, framework.PodOptions{})); len(got) != 0 {
		t.Fatalf("a Cluster-scope registry was injected as %v", got)
	}
}

// Dry runs see the mutation but write nothing.
func TestWebhookDryRunWritesNothing(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "wh-dryrun"})
	warm := e.Namespace(t, "warm", optIn)
	e.WaitServed(t, warm, "pullpass-"+reg.Name)
	ns := e.Namespace(t, "dryrun", optIn)
	got := e.DryRunSecrets(t, ns, e.Pod(ns, framework.PodOptions{}))
	if !slices.Equal(got, []string{"pullpass-" + reg.Name}) {
		t.Fatalf("dry run gave %v", got)
	}
	if !e.SecretGone(t, ns, "pullpass-"+reg.Name) {
		t.Fatal("a dry run wrote a pull secret")
	}
}

// When the webhook cannot write a pod's pull secret (here: the registry's source secret is
// missing), the pod is admitted at once all the same, never blocked, with the reference to the
// secret (a pod's pull secrets can never be added later), and that is counted (issue #24);
// TestSlowSourceFirstPodGetsItsReferenceAndRuns sees such a secret land and the pod run.
func TestWebhookAdmitsWithTheReferenceWhenASourceFails(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	ns := e.Namespace(t, "failopen", optIn)
	e.CreateRegistry(t, framework.RegistryOptions{Name: "wh-broken", NoSource: true})
	secret := "pullpass-wh-broken"
	labels := map[string]string{"registry": "wh-broken"}
	before := e.WebhookMetric(t, ep, "pullpass_webhook_pods_admitted_ahead_of_secret_total", labels)
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Until the webhook sees the registry the pod is simply not matched; once it does, it
		// gets the reference to a secret that cannot be written yet.
		created := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
		if len(created.Spec.ImagePullSecrets) != 0 {
			if got := names(created.Spec.ImagePullSecrets); len(got) != 1 || got[0] != secret {
				t.Fatalf("pod got %v, want only %s", got, secret)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no pod got the registry's reference within 30 s")
		}
		time.Sleep(300 * time.Millisecond)
	}
	waitFor(t, 30*time.Second, "the pod counted as admitted ahead of its secret", func() bool {
		return e.WebhookMetric(t, ep, "pullpass_webhook_pods_admitted_ahead_of_secret_total", labels) > before
	})
	if !e.SecretGone(t, ns, secret) {
		t.Fatalf("a pull secret %s was written with no source", secret)
	}
}

func names(refs []corev1.LocalObjectReference) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Name)
	}
	return out
}
