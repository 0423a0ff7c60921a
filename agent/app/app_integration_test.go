package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/testenv"
)

// The agent's wiring against a real API server, with the RBAC the chart and the webhook's
// leader give it.
var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

const (
	ns        = "pullpass"
	agentName = "pullpass-agent"
	agentUser = "system:serviceaccount:" + ns + ":" + agentName
)

func create[T any](t *testing.T, f func(context.Context, T, metav1.CreateOptions) (T, error), obj T) {
	t.Helper()
	if _, err := f(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// agentRBAC grants what the chart grants, its ClusterRole and the node Secrets' Role as the chart
// renders them; it returns a func that revokes it all.
func agentRBAC(t *testing.T, env *testenv.Env) (revoke func()) {
	t.Helper()
	rb, subj := env.Kube.RbacV1(), []rbacv1.Subject{{Kind: "User", Name: agentUser}}
	suffix := "-" + t.Name()[len(t.Name())-8:]
	create(t, rb.ClusterRoles().Create, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "agent" + suffix},
		Rules: chartRules(t, "ClusterRole/pullpass-agent")})
	create(t, rb.ClusterRoleBindings().Create, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "agent" + suffix},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "agent" + suffix}, Subjects: subj})
	create(t, rb.Roles(ns).Create, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "agent" + suffix},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, ResourceNames: []string{agentName}, Verbs: []string{"get", "list", "watch"}}}})
	create(t, rb.RoleBindings(ns).Create, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "agent" + suffix},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "agent" + suffix}, Subjects: subj})
	create(t, rb.Roles(ns).Create, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "nodecreds" + suffix}, Rules: chartRules(t, "Role/pullpass-agent-node-credentials")})
	create(t, rb.RoleBindings(ns).Create, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "nodecreds" + suffix},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "nodecreds" + suffix}, Subjects: subj})
	revoke = func() {
		bg := context.Background()
		_ = rb.ClusterRoleBindings().Delete(bg, "agent"+suffix, metav1.DeleteOptions{})
		_ = rb.ClusterRoles().Delete(bg, "agent"+suffix, metav1.DeleteOptions{})
		for _, n := range []string{"agent" + suffix, "nodecreds" + suffix} {
			_ = rb.RoleBindings(ns).Delete(bg, n, metav1.DeleteOptions{})
			_ = rb.Roles(ns).Delete(bg, n, metav1.DeleteOptions{})
		}
	}
	t.Cleanup(revoke)
	return revoke
}

func daemonSet() *appsv1.DaemonSet {
	labels := map[string]string{"app": agentName}
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: agentName}, Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "pullpass-agent"}}}},
	}}
}

type agent struct {
	opts *Options
	stop context.CancelFunc
	done chan error
}

// startAgent runs the agent as its ServiceAccount, in provider mode, on node paths of its own.
func startAgent(t *testing.T, env *testenv.Env, mutate ...func(*Options)) *agent {
	t.Helper()
	sa, err := env.ServiceAccountConfig(ns, agentName)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plugin := filepath.Join(dir, "plugin")
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	_ = l.Close()
	o := DefaultOptions()
	o.Kubeconfig, o.Namespace, o.DaemonSetName, o.MetricsAddress = env.KubeconfigFile(t, sa), ns, agentName, addr
	o.CachePath = filepath.Join(dir, "cache", "credentials.json")
	o.PluginSource, o.TokenPluginSource, o.ProviderBinDir, o.ProviderConfig = plugin, plugin, filepath.Join(dir, "bin"), filepath.Join(dir, "config")
	o.ECREndpoint = os.Getenv("TEST_ECR_ENDPOINT")
	for _, m := range mutate {
		m(o)
	}
	a := &agent{opts: o, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	go func() { a.done <- Run(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-a.done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	return a
}

// metric is the sum of a metric's samples with these labels on the agent's /metrics.
func (a *agent) metric(name string, labels map[string]string) (float64, error) {
	resp, err := http.Get("http://" + a.opts.MetricsAddress + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	families, err := testenv.ParseMetrics(string(text))
	if err != nil {
		return 0, err
	}
	v, _ := testenv.MetricValue(families, name, labels)
	return v, nil
}

func (a *agent) serves(registry string) error {
	f, err := nodecache.Read(a.opts.CachePath)
	if err != nil {
		return err
	}
	for _, e := range f.Entries {
		if e.Registry == registry {
			return nil
		}
	}
	return fmt.Errorf("%s not in the cache (%d entries)", registry, len(f.Entries))
}

func (a *agent) shutdown(t *testing.T) {
	t.Helper()
	a.stop()
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("agent: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop")
	}
	a.done <- nil // for the cleanup
}

func setup(t *testing.T, registry string, ecrEndpoint string) (_ *testenv.Env, _ *agent, revoke, stopWriter func()) {
	t.Helper()
	env := controlPlane.Env(t)
	if _, err := env.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ds, err := env.Kube.AppsV1().DaemonSets(ns).Create(t.Context(), daemonSet(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Kube.AppsV1().DaemonSets(ns).Delete(context.Background(), ds.Name, metav1.DeleteOptions{})
	})
	src := registry + "-src"
	data, _ := dockerconfig.ForHost(registry+".example.com", "u", "p").Marshal()
	create(t, env.Kube.CoreV1().Secrets(ns).Create, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: src},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}})
	t.Cleanup(func() { _ = env.Kube.CoreV1().Secrets(ns).Delete(context.Background(), src, metav1.DeleteOptions{}) })
	revoke = agentRBAC(t, env)
	stopWriter = startWriter(t, env)
	env.CreateRegistry(t, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: registry}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{registry + ".example.com"}, Scope: v1alpha1.ScopeCluster,
		Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: src}}}})
	t.Setenv("TEST_ECR_ENDPOINT", ecrEndpoint)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true") // no instance role here: the SDK must not look
	a := startAgent(t, env)
	testenv.Eventually(t, 30*time.Second, func() error { return a.serves(registry) })
	return env, a, revoke, stopWriter
}

// pullpass is uninstalled while a sync is under way (an ECR call hanging): the agent stops the
// sync and waits for it before it cleans the node, so nothing writes the cache back afterwards.
func TestUninstallDuringSyncLeavesNothing(t *testing.T) {
	var hanging, inFlight atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hanging.Add(1)
		inFlight.Add(1)
		defer inFlight.Add(-1)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		http.Error(w, "slow", http.StatusServiceUnavailable)
	}))
	t.Cleanup(slow.Close)
	env, a, _, _ := setup(t, "uninstall", slow.URL)
	create(t, env.Kube.CoreV1().Secrets(ns).Create, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "uninstall-keys"},
		StringData: map[string]string{"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "secret"}})
	t.Cleanup(func() {
		_ = env.Kube.CoreV1().Secrets(ns).Delete(context.Background(), "uninstall-keys", metav1.DeleteOptions{})
	})
	// A registry whose source hangs: the next sync is under way when the uninstall comes.
	env.CreateRegistry(t, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "uninstall-ecr"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{"123456789012.dkr.ecr.us-east-1.amazonaws.com"}, Scope: v1alpha1.ScopeCluster,
		Auth: v1alpha1.RegistryAuth{ECR: &v1alpha1.ECRSource{AccessKeySecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: "uninstall-keys"}}}}})
	testenv.Eventually(t, 10*time.Second, func() error {
		if hanging.Load() == 0 {
			return errors.New("no ECR call under way yet")
		}
		return nil
	})
	if err := env.Kube.AppsV1().DaemonSets(ns).Delete(t.Context(), agentName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a.shutdown(t) // the agent sees the deletion by its watch or, at the latest, by its last read
	// Nothing of the sync may run on to write after the clean-up: once the hanging call has
	// ended at the server and no goroutine is in the refresher (one that ran on would write
	// first), the node must still be clean.
	testenv.Poll(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := inFlight.Load(); n > 0 {
			return fmt.Errorf("%d ECR calls still under way", n)
		}
		if n := goroutinesIn("github.com/pullpass/pullpass/agent/refresher."); n > 0 {
			return fmt.Errorf("%d goroutines still in the refresher", n)
		}
		return nil
	})
	if _, err := os.Stat(a.opts.CachePath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the node cache is there after the uninstall (%v)", err)
	}
	if entries, _ := os.ReadDir(a.opts.ProviderConfig); len(entries) != 0 {
		t.Fatalf("the kubelet config entry is there after the uninstall: %v", entries)
	}
}

// goroutinesIn counts the goroutines with a frame of a function whose name starts with prefix.
func goroutinesIn(prefix string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte(prefix)) {
			count++
		}
	}
	return count
}

// The API server refuses the agent (its RBAC gone, a token problem) when it stops: that proves
// nothing about an uninstall, and the node keeps its credentials.
func TestRefusedAgentKeepsTheNodesCredentials(t *testing.T) {
	_, a, revoke, _ := setup(t, "refused", "")
	revoke()
	a.shutdown(t)
	if err := a.serves("refused"); err != nil {
		t.Fatalf("the node lost its credentials on a refusal: %v", err)
	}
}
