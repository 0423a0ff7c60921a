package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/agent/install"
	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/agent/nodetaint"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// The agent with --remove-startup-taint keeps the taint while the kubelet runs an older config
// than the one it wrote (a first install), and removes it once the kubelet runs that config (the
// plugin records its generation, as the kubelet's first call after a restart does).
func TestAgentRemovesStartupTaintOnceTheKubeletRunsItsConfig(t *testing.T) {
	env := controlPlane.Env(t)
	if _, err := env.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	agentRBAC(t, env)
	rb := env.Kube.RbacV1()
	// What the chart adds with agent.startupTaint.
	create(t, rb.ClusterRoles().Create, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "agent-taint"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "patch"}}}})
	create(t, rb.ClusterRoleBindings().Create, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "agent-taint"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "agent-taint"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: agentUser}}})
	t.Cleanup(func() {
		_ = rb.ClusterRoleBindings().Delete(context.Background(), "agent-taint", metav1.DeleteOptions{})
		_ = rb.ClusterRoles().Delete(context.Background(), "agent-taint", metav1.DeleteOptions{})
	})
	const node = "new-node"
	create(t, env.Kube.CoreV1().Nodes().Create, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: nodetaint.Key, Effect: corev1.TaintEffectNoSchedule}}}})
	t.Cleanup(func() { _ = env.Kube.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
	tainted := func() bool {
		n, err := env.Kube.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(n.Spec.Taints, func(tt corev1.Taint) bool { return tt.Key == nodetaint.Key })
	}

	a := startAgent(t, env, func(o *Options) { o.NodeName, o.RemoveStartupTaint = node, true })
	dropIn := filepath.Join(a.opts.ProviderConfig, install.DropInName)
	var gen string
	testenv.Eventually(t, 30*time.Second, func() error {
		data, err := os.ReadFile(dropIn)
		if err != nil {
			return err
		}
		_, rest, ok := strings.Cut(string(data), "--generation=")
		if !ok {
			return fmt.Errorf("no generation in %s", data)
		}
		gen = strings.Fields(rest)[0]
		return nil
	})
	// Written, but the kubelet has not run it: the taint is there (a sanity check, not proof
	// that the remover looked; the removal below is the assertion).
	if !tainted() {
		t.Fatal("the taint went before the kubelet ran the config written")
	}
	nodecache.RecordGeneration(a.opts.CachePath, gen)
	testenv.Eventually(t, 30*time.Second, func() error {
		if tainted() {
			return fmt.Errorf("the startup taint is still on %s", node)
		}
		return nil
	})
}
