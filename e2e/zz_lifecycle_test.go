//go:build e2e

package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// The last test of the suite (by its file name): `helm upgrade` to the same chart loses no Registry
// and keeps pods pulling; `helm uninstall` leaves only what the README says stays, and the node
// agents take their credentials off the nodes; then pullpass is deployed again, so the harness is
// as the suite found it.
func TestZZHelmUpgradeThenUninstall(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	h := helm(t)
	ctx := framework.Context(t, 10*time.Minute)
	deploy := func() {
		out, err := exec.Command(framework.Script("deploy.sh")).CombinedOutput()
		if err != nil {
			t.Fatalf("deploy: %v\n%s", err, out)
		}
	}
	redeployed := false
	t.Cleanup(func() {
		if !redeployed {
			deploy()
		}
	})
	helmRun := func(args ...string) string {
		out, err := exec.Command(h, append(args, "--kubeconfig", e.Kubeconfig, "--namespace", framework.PullpassNamespace)...).CombinedOutput()
		if err != nil {
			t.Fatalf("helm %v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	reg := e.CreateRegistry(t, framework.RegistryOptions{Name: "lifecycle"})
	node := e.CreateRegistry(t, framework.RegistryOptions{Name: "lifecycle-node", Scope: v1alpha1.ScopeCluster})
	ns := e.Namespace(t, "lifecycle", optIn)
	e.WaitServed(t, ns, "pullpass-lifecycle")
	waitFor(t, time.Minute, "the Cluster-scope registry in the node cache", func() bool { _, ok := agentCache(t, e)["lifecycle-node"]; return ok })
	before, err := e.Registries.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	revisions := strings.Count(helmRun("history", "pullpass"), "\n")

	// Upgrade to the same chart (deploy runs `helm upgrade --install`).
	deploy()
	if got := strings.Count(helmRun("history", "pullpass"), "\n"); got <= revisions {
		t.Fatalf("helm history has %d lines, had %d: no new revision", got, revisions)
	}
	after, err := e.Registries.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Items) != len(before.Items) {
		t.Fatalf("%d registries after the upgrade, %d before", len(after.Items), len(before.Items))
	}
	for _, r := range []*v1alpha1.Registry{reg, node} {
		got, err := e.Registries.Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil || got.UID != r.UID {
			t.Fatalf("registry %s after the upgrade: %v (uid %v, was %v)", r.Name, err, got, r.UID)
		}
	}
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	e.WaitRunning(t, ns, pod.Name)

	// Uninstall.
	helmRun("uninstall", "pullpass", "--wait", "--timeout", "3m")
	if _, err := e.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "pullpass", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the webhook configuration is still there: %v", err)
	}
	for _, name := range []string{"pullpass-webhook", "pullpass-controller", "pullpass-agent"} {
		if _, err := e.Kube.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("ClusterRole %s is still there: %v", name, err)
		}
	}
	// The agent took its credentials and its kubelet config entry off the node.
	cache := e.AgentCache()
	waitFor(t, time.Minute, "the node cache removed", func() bool { _, err := os.Stat(cache); return os.IsNotExist(err) })
	if _, err := os.Stat(filepath.Join(e.Var("CREDENTIAL_PROVIDER_CONFIG"), "pullpass.yaml")); !os.IsNotExist(err) {
		t.Fatalf("the kubelet config entry is still on the node: %v", err)
	}
	if _, err := nodecache.Read(cache); !errors.Is(err, nodecache.ErrNoCache) {
		t.Fatalf("node cache: %v", err)
	}
	// What stays, as the README says: the CRD and the Registry objects, the source secrets, the
	// pull secrets in namespaces; nothing of pullpass runs.
	if _, err := e.Registries.Get(ctx, reg.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("a Registry was lost on uninstall: %v", err)
	}
	if e.SecretGone(t, ns, "pullpass-lifecycle") {
		t.Fatal("the pull secret in the namespace went with the uninstall; the README says it stays")
	}
	waitFor(t, 2*time.Minute, "no pullpass pod left", func() bool {
		pods, err := e.Kube.CoreV1().Pods(framework.PullpassNamespace).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{"app.kubernetes.io/name": "pullpass"}.String()})
		return err == nil && len(pods.Items) == 0
	})
	// Pods are still admitted (no webhook configuration is left to call a webhook that is gone).
	plain := e.Namespace(t, "after-uninstall", nil)
	e.CreatePod(t, e.Pod(plain, framework.PodOptions{Image: e.Image, RestartNever: true}))

	deploy()
	redeployed = true
	waitFor(t, time.Minute, "the Cluster-scope registry back in the node cache", func() bool { _, ok := agentCache(t, e)["lifecycle-node"]; return ok })
}
