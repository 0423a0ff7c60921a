//go:build e2e

package e2e

import (
	"regexp"
	"strings"
	"testing"

	"github.com/pullpass/pullpass/e2e/framework"
)

// authFailure matches what containerd and the kubelet say when a registry refuses a pull for
// want of credentials.
var authFailure = regexp.MustCompile(`(?i)401 unauthorized|authorization failed|no basic auth credentials|authentication required`)

// The harness's registry is private: a pod with a hand-written pull secret pulls and runs.
func TestPullWithHandMadeSecret(t *testing.T) {
	e := framework.Load(t)
	ns := e.Namespace(t, "handmade", nil)
	e.DockerConfigSecret(t, ns, "regcred", e.RegistryUsername, e.RegistryPassword)

	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{PullSecrets: []string{"regcred"}}))
	e.WaitRunning(t, ns, pod.Name)
	if logs := e.Logs(t, ns, pod.Name, "main"); !strings.Contains(logs, "hello from the pullpass e2e image") {
		t.Fatalf("pod log %q lacks the image's greeting", logs)
	}

	// The image's /hello runs as a command and exits 0.
	job := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Command: []string{"/hello"}, PullSecrets: []string{"regcred"}, RestartNever: true}))
	e.WaitSucceeded(t, ns, job.Name)
	if ev := e.FailedPullEvents(t, ns, job.Name); len(ev) != 0 {
		t.Fatalf("a pod that pulled had failed pull events: %v", ev)
	}
}

// The same pod without a pull secret fails with an authentication error, so no pull in this
// suite can pass for the wrong reason (anonymous access, a stray docker config on the node).
func TestPullWithoutSecretFailsAuth(t *testing.T) {
	e := framework.Load(t)
	ns := e.Namespace(t, "nosecret", nil)
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	msg := e.WaitPullFailure(t, ns, pod.Name)
	t.Logf("kubelet: %s", msg)
	if !authFailure.MatchString(msg) {
		t.Fatalf("pull failed, but not for authentication: %s", msg)
	}
}

// A wrong password fails the same way.
func TestPullWithWrongPasswordFailsAuth(t *testing.T) {
	e := framework.Load(t)
	ns := e.Namespace(t, "wrongpw", nil)
	e.DockerConfigSecret(t, ns, "regcred", e.RegistryUsername, "not-the-password")
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{PullSecrets: []string{"regcred"}}))
	msg := e.WaitPullFailure(t, ns, pod.Name)
	t.Logf("kubelet: %s", msg)
	if !authFailure.MatchString(msg) {
		t.Fatalf("pull failed, but not for authentication: %s", msg)
	}
}
