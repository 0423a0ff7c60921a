//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// waitFor polls cond every second for up to d (testenv.Poll, the project's one "eventually").
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Poll(t, d, time.Second, testenv.Until(what, cond))
}

// A new password in a registry's source reaches the namespaces' pull secrets within a minute,
// and the next pod pulls with it.
func TestKeeperRotatesSourcePassword(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	ctx := framework.Context(t, 5*time.Minute)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "keep-rotate", Password: "old-wrong-password", Username: e.RegistryUsername})
	secret := "pullpass-" + reg.Name
	ns := e.Namespace(t, "rotate", optIn)
	e.WaitServed(t, ns, secret)

	first := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	if msg := e.WaitPullFailure(t, ns, first.Name); !authFailure.MatchString(msg) {
		t.Fatalf("the old password failed, but not for authentication: %s", msg)
	}

	// Rotate the source.
	e.SetSourcePassword(t, reg.Name, e.RegistryPassword)
	rotated := time.Now()
	waitFor(t, time.Minute, "rotated into the namespace", func() bool {
		pw, _ := e.PullSecretPassword(t, ns, secret)
		return pw == e.RegistryPassword
	})
	t.Logf("the new password reached the namespace %s after the source changed", time.Since(rotated).Round(100*time.Millisecond))
	second := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	e.WaitRunning(t, ns, second.Name)

	waitFor(t, time.Minute, "Ready with one namespace in the status", func() bool {
		r, err := e.Registries.Get(ctx, reg.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionTrue && r.Status.Namespaces == 1 && r.Status.LastRefreshTime != nil
	})
}

// A namespace that opts out, and a registry that goes, take their pull secrets with them; a
// registry whose source is missing says so in its status.
func TestKeeperCleansUpAndReportsStatus(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	ctx := framework.Context(t, 5*time.Minute)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "keep-clean"})
	secret := "pullpass-" + reg.Name
	optOut := e.Namespace(t, "opt-out", optIn)
	stay := e.Namespace(t, "stay", optIn)
	e.WaitServed(t, stay, secret)
	for _, ns := range []string{optOut, stay} {
		e.WaitRunning(t, ns, e.CreatePod(t, e.Pod(ns, framework.PodOptions{})).Name)
	}

	nsObj, err := e.Kube.CoreV1().Namespaces().Get(ctx, optOut, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(nsObj.Annotations, "pullpass.io/inject")
	if _, err := e.Kube.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "deleted from the namespace that opted out", func() bool { return e.SecretGone(t, optOut, secret) })
	if e.SecretGone(t, stay, secret) {
		t.Fatal("the pull secret went from a namespace that still opts in")
	}

	if err := e.Registries.Delete(ctx, reg.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "deleted after its registry was removed", func() bool { return e.SecretGone(t, stay, secret) })

	broken := e.CreateRegistry(t, framework.RegistryOptions{Name: "keep-broken", Hosts: []string{"broken.pullpass-e2e.invalid"}, NoSource: true})
	waitFor(t, time.Minute, "reported as not Ready for want of its source", func() bool {
		r, err := e.Registries.Get(context.Background(), broken.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == "SourceSecretMissing"
	})
}

// The controller's pods restart: the pull secrets stay, and a source changed while they were down
// reaches the namespace once a replica leads again.
func TestKeeperRestartLosesNothing(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	ctx := framework.Context(t, 5*time.Minute)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "keep-restart"})
	secret := "pullpass-" + reg.Name
	ns := e.Namespace(t, "restart", optIn)
	e.WaitServed(t, ns, secret)
	e.WaitRunning(t, ns, e.CreatePod(t, e.Pod(ns, framework.PodOptions{})).Name)
	before, err := e.Kube.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	pods := e.Kube.CoreV1().Pods(framework.PullpassNamespace)
	sel := metav1.ListOptions{LabelSelector: controllerSelector}
	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil {
		t.Fatal(err)
	}
	e.SetSourcePassword(t, reg.Name, "changed-while-down")
	waitFor(t, 2*time.Minute, "a controller pod ready again", func() bool {
		list, err := pods.List(ctx, sel)
		if err != nil {
			return false
		}
		for _, p := range list.Items {
			for _, c := range p.Status.Conditions {
				if p.DeletionTimestamp == nil && c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return true
				}
			}
		}
		return false
	})
	waitFor(t, time.Minute, "the change made while down in the namespace", func() bool {
		pw, uid := e.PullSecretPassword(t, ns, secret)
		if uid != "" && uid != string(before.UID) {
			t.Fatalf("the pull secret was recreated (uid %s -> %s)", before.UID, uid)
		}
		return pw == "changed-while-down"
	})
}

// A pull secret somebody deletes (kubectl delete secret) comes back within seconds while its
// namespace is served: pods admitted with it before keep pulling (on a restart, on another node).
func TestKeeperMakesADeletedPullSecretAgain(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "keep-deleted"})
	secret := "pullpass-" + reg.Name
	ns := e.Namespace(t, "keep-deleted", optIn)
	e.WaitServed(t, ns, secret)
	e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	waitFor(t, 30*time.Second, "the pull secret made", func() bool { return !e.SecretGone(t, ns, secret) })
	_, before := e.PullSecretPassword(t, ns, secret)
	if err := e.Kube.CoreV1().Secrets(ns).Delete(framework.Context(t, time.Minute), secret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	waitFor(t, 30*time.Second, "the pull secret made again", func() bool {
		pw, uid := e.PullSecretPassword(t, ns, secret)
		return uid != "" && uid != before && pw == e.RegistryPassword
	})
	t.Logf("made again %s after it was deleted", time.Since(deleted).Round(100*time.Millisecond))
	// No admission made it (none happened since): the keeper did. A pod whose image no node has
	// yet (a tag of its own) pulls with it.
	img := e.Registry + "/e2e/keep-deleted:" + rand.String(6)
	e.CopyImage(t, e.Image, img)
	p := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: img}))
	e.WaitRunning(t, ns, p.Name)
}
