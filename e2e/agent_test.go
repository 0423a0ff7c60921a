//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/nodesecret"
)

// The node agent's tests run against the agent the chart deployed (provider mode: the kubelet
// execs the plugin it installed). Every test leaves the node serving no credentials, which the
// negative tests of the suite rely on: see nodeServesNothingAfter.

// plugin answers are cached by the kubelet for agent.pluginCacheDuration (5 s in the harness).
const pluginCache = 5 * time.Second

func script(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(framework.Script(name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func agentCache(t *testing.T, e *framework.Env) map[string]nodecache.Entry {
	t.Helper()
	f, err := nodecache.Read(e.AgentCache())
	if err != nil {
		t.Fatalf("reading the node cache: %v", err)
	}
	out := map[string]nodecache.Entry{}
	for _, en := range f.Entries {
		out[en.Registry] = en
	}
	return out
}

// nodeServesNothingAfter registers a cleanup (run after the test's own, which delete its
// registries) that waits for the node cache to be empty and the kubelet's cached answers to
// expire.
func nodeServesNothingAfter(t *testing.T, e *framework.Env) {
	t.Cleanup(func() {
		waitFor(t, time.Minute, "node cache empty", func() bool { return len(agentCache(t, e)) == 0 })
		time.Sleep(pluginCache + time.Second)
	})
}

// A Cluster-scope registry: a pod in a namespace that never opted in, with no pull secret, pulls
// the private image, served by the kubelet's credential provider plugin from the node cache.
func TestAgentServesClusterRegistryWithNoPullSecret(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	nodeServesNothingAfter(t, e)
	ns := e.Namespace(t, "node-served", nil)

	// Nothing serves the node yet.
	before := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	e.WaitPullFailure(t, ns, before.Name)

	hits := framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_plugin_requests_total", map[string]string{"result": "hit"})
	e.CreateRegistry(t, framework.RegistryOptions{Name: "node-wide", Scope: v1alpha1.ScopeCluster})
	start := time.Now()
	waitFor(t, time.Minute, "registry served by the node", func() bool {
		return framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_registry_served", map[string]string{"registry": "node-wide"}) == 1
	})
	t.Logf("the node cache served the new registry %s after it was created", time.Since(start).Round(100*time.Millisecond))
	if c := agentCache(t, e)["node-wide"]; c.Password != e.RegistryPassword {
		t.Fatalf("node cache entry %v does not hold the registry's password", c)
	}
	time.Sleep(pluginCache) // the kubelet's cached "no credentials" for the host expires

	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	if len(pod.Spec.ImagePullSecrets) != 0 {
		t.Fatalf("pod has pull secrets %v", pod.Spec.ImagePullSecrets)
	}
	e.WaitRunning(t, ns, pod.Name)
	secrets, err := e.Kube.CoreV1().Secrets(ns).List(framework.Context(t, time.Minute), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if s.Type == corev1.SecretTypeDockerConfigJson {
			t.Fatalf("a pull secret %s was written into the namespace", s.Name)
		}
	}
	if got := framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_plugin_requests_total", map[string]string{"result": "hit"}); got <= hits {
		t.Fatalf("plugin hits %v -> %v: the kubelet did not get the credentials from the plugin", hits, got)
	}
	if got := framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_refreshes_total", map[string]string{"registry": "node-wide", "result": "success"}); got < 1 {
		t.Fatalf("refreshes{success} = %v", got)
	}
	// It served it from a sync of the node Secret as listed.
	if got := framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_syncs_total", map[string]string{"registries": "listed"}); got < 1 {
		t.Fatalf("syncs{registries=listed} = %v", got)
	}
	// The agent logged the registry (it did: cache written) and never its password.
	agents, err := e.Kube.CoreV1().Pods(framework.PullpassNamespace).List(framework.Context(t, time.Minute), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
	if err != nil || len(agents.Items) == 0 {
		t.Fatalf("no agent pod: %v", err)
	}
	logs := e.Logs(t, framework.PullpassNamespace, agents.Items[0].Name, "agent")
	if !strings.Contains(logs, "node-wide") {
		t.Fatalf("the agent's log does not mention the registry; is this the right log?\n%s", logs)
	}
	if strings.Contains(logs, e.RegistryPassword) {
		t.Fatal("the agent logged the registry password")
	}
}

// basicAuthStatus is the registry's answer to credentials.
func basicAuthStatus(t *testing.T, e *framework.Env, user, password string) int {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(e.RegistryCA)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+e.RegistryFromHere()+"/v2/", nil)
	req.SetBasicAuth(user, password)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// The source password is rotated and the old one revoked at the registry: a fresh pull works
// again as soon as the new password is in the cache and the kubelet's cached answer expired.
func TestAgentRotatedPasswordReachesTheNextPull(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	user := "rotator-" + rand.String(4)
	oldPass, newPass := "old-"+rand.String(12), "new-"+rand.String(12)
	script(t, "registry-user.sh", user, oldPass)
	t.Cleanup(func() { script(t, "registry-user.sh", "-D", user) })
	nodeServesNothingAfter(t, e)
	e.CreateRegistry(t, framework.RegistryOptions{Name: "node-rotate", Scope: v1alpha1.ScopeCluster, Username: user, Password: oldPass})
	waitFor(t, time.Minute, "old password in the node cache", func() bool { return agentCache(t, e)["node-rotate"].Password == oldPass })
	time.Sleep(pluginCache)
	ns := e.Namespace(t, "node-rotate", nil)
	first := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	e.WaitRunning(t, ns, first.Name)

	// Revoke the old password at the registry, then rotate the source.
	script(t, "registry-user.sh", user, newPass)
	if code := basicAuthStatus(t, e, user, oldPass); code != http.StatusUnauthorized {
		t.Fatalf("the registry answers %d to the old password; want 401", code)
	}
	rotated := time.Now()
	e.SetSourceCredentials(t, "node-rotate", e.Registry, user, newPass)
	waitFor(t, time.Minute, "new password in the node cache", func() bool { return agentCache(t, e)["node-rotate"].Password == newPass })
	t.Logf("the new password reached the node cache %s after the source changed", time.Since(rotated).Round(100*time.Millisecond))
	time.Sleep(pluginCache)
	second := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	e.WaitRunning(t, ns, second.Name)
	t.Logf("a fresh pull worked %s after the rotation", time.Since(rotated).Round(100*time.Millisecond))
}

// A Namespaced registry is the webhook's: the node never serves it.
func TestAgentDoesNotServeNamespacedRegistry(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	nodeServesNothingAfter(t, e)
	e.CreateRegistry(t, framework.RegistryOptions{Name: "ns-only", Scope: v1alpha1.ScopeNamespaced})
	misses := framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_plugin_requests_total", map[string]string{"result": "miss"})
	ns := e.Namespace(t, "not-opted-in", nil)
	time.Sleep(2 * time.Second) // the agent has seen the registry (and must ignore it)
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	e.WaitPullFailure(t, ns, pod.Name)
	if _, ok := agentCache(t, e)["ns-only"]; ok {
		t.Fatal("a Namespaced registry is in the node cache")
	}
	if got := framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_plugin_requests_total", map[string]string{"result": "miss"}); got <= misses {
		t.Fatalf("plugin misses %v -> %v: the kubelet did not ask the plugin", misses, got)
	}
}

// A host with a port cannot be matched by a glob: a registry naming one new to the kubelet's
// config is written into it, the agent says a kubelet restart is needed, the node does not serve
// it until then, and does after.
func TestAgentHostWithPortNeedsKubeletRestart(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	alias := e.Var("REGISTRY_ALIAS")
	if alias == "" {
		t.Fatal("REGISTRY_ALIAS is not in registry.env: run make cluster-down cluster-up")
	}
	// Whatever happens, the kubelet ends with the config the agent writes once the registry
	// is gone (this cleanup runs after the registry's deletion).
	t.Cleanup(func() {
		waitFor(t, time.Minute, "the alias out of the provider config", func() bool {
			data, _ := os.ReadFile(filepath.Join(e.Var("CREDENTIAL_PROVIDER_CONFIG"), "pullpass.yaml"))
			return len(data) > 0 && !strings.Contains(string(data), alias)
		})
		script(t, "restart-kubelet.sh")
		time.Sleep(2 * time.Second)
	})
	nodeServesNothingAfter(t, e)
	restart := func() float64 {
		return framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_kubelet_restart_required", nil)
	}
	// The kubelet runs the plugin on any pull (the globs match every host): then the agent
	// knows which config the kubelet has.
	ns := e.Namespace(t, "port-host", nil)
	warm := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: "localhost/none:1", RestartNever: true}))
	e.WaitPullFailure(t, ns, warm.Name)
	waitFor(t, 30*time.Second, "restart not required", func() bool { return restart() == 0 })

	image := strings.Replace(e.Image, e.Registry, alias, 1)
	e.CreateRegistry(t, framework.RegistryOptions{Name: "node-alias", Scope: v1alpha1.ScopeCluster, Hosts: []string{alias}, SourceHost: alias})
	waitFor(t, time.Minute, "restart required", func() bool { return restart() == 1 })
	before := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: image}))
	e.WaitPullFailure(t, ns, before.Name)

	script(t, "restart-kubelet.sh")
	time.Sleep(2 * time.Second)
	after := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: image}))
	e.WaitRunning(t, ns, after.Name)
	waitFor(t, 30*time.Second, "restart no longer required", func() bool { return restart() == 0 })
}

// Legacy mode, for kubelets whose flags cannot change: an agent writes pullpass's entries into
// the kubelet's config.json, keeping the entries it does not own, and the kubelet pulls with them.
// The agent runs on the host here, beside the deployed one, serving a registry whose source the
// deployed agents are not served (another allowed source namespace, not the release's: the
// controller writes nothing of it into their node Secret), from a node Secret of that namespace
// the test writes, so only the legacy path can serve it.
func TestAgentLegacyModeServesThroughKubeletDockerConfig(t *testing.T) {
	e := framework.Load(t)
	e.Deployed(t)
	if !e.HostNetwork {
		t.Skip("legacy mode is proved on the harness, whose kubelet's root dir is on this machine; a kind node's is inside its container")
	}
	alias := e.Var("REGISTRY_ALIAS")
	kubeletRoot := filepath.Join(framework.RepoRoot(), "_output/e2e/kubelet")
	config := filepath.Join(kubeletRoot, "config.json")
	if _, err := os.Stat(config); err == nil {
		t.Fatalf("%s exists before the test: the negative tests would pull with it", config)
	}
	foreign := dockerconfig.ForHost("other.example.com", "someone", "their-secret")
	data, _ := foreign.Marshal()
	if err := os.WriteFile(config, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// The kubelet caches config.json for 5 minutes: a restart after removing it makes sure
	// nothing of it stays.
	t.Cleanup(func() {
		_ = os.Remove(config)
		script(t, "restart-kubelet.sh")
		time.Sleep(2 * time.Second)
	})

	srcNS := legacySourceNamespace(t, e)
	src, _ := dockerconfig.ForHost(alias, e.RegistryUsername, e.RegistryPassword).Marshal()
	if _, err := e.Kube.CoreV1().Secrets(srcNS).Create(framework.Context(t, time.Minute), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy-src"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: src},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Kube.CoreV1().Secrets(srcNS).Delete(context.Background(), "legacy-src", metav1.DeleteOptions{})
	})
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "node-legacy"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{alias}, Scope: v1alpha1.ScopeCluster,
		Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: srcNS, Name: "legacy-src"}},
	}}
	// The agent reads what it serves, the registries' specs and credentials, from the node Secret
	// of its namespace only. The deployed controller writes the release namespace's; here the test
	// writes it, as the controller would.
	if _, err := e.Kube.CoreV1().Secrets(srcNS).Create(framework.Context(t, time.Minute), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: nodesecret.Name, Labels: nodesecret.Labels()}, Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{nodesecret.FormatKey: []byte(nodesecret.FormatVersion), "node-legacy": nodesecret.Encode(nodesecret.Entry{Spec: &reg.Spec, Username: e.RegistryUsername, Password: e.RegistryPassword,
			Source: nodesecret.SourceRef{Namespace: srcNS, Name: "legacy-src"}, Version: "e2e"})},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Kube.CoreV1().Secrets(srcNS).Delete(context.Background(), nodesecret.Name, metav1.DeleteOptions{})
	})
	if _, err := e.Registries.Create(framework.Context(t, time.Minute), reg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Registries.Delete(framework.Context(t, time.Minute), reg.Name, metav1.DeleteOptions{}) })

	bin := filepath.Join(t.TempDir(), "pullpass-agent")
	build := exec.Command("go", "build", "-o", bin, "./cmd/pullpass-agent")
	build.Dir = framework.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
	cacheDir := t.TempDir()
	agent := exec.Command(bin, "--mode=legacy", "--kubeconfig="+e.Kubeconfig, "--namespace="+srcNS,
		"--cache="+filepath.Join(cacheDir, "credentials.json"), "--kubelet-docker-config="+config,
		"--metrics-address=127.0.0.1:28082")
	agent.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true")
	logs, _ := os.Create(filepath.Join(cacheDir, "agent.log"))
	agent.Stdout, agent.Stderr = logs, logs
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = agent.Process.Signal(syscall.SIGTERM)
			_ = agent.Wait()
		}
	}
	t.Cleanup(stop)

	var cfg *dockerconfig.Config
	waitFor(t, time.Minute, "the registry in the kubelet's config.json", func() bool {
		data, err := os.ReadFile(config)
		if err != nil {
			return false
		}
		if cfg, err = dockerconfig.Parse(data); err != nil {
			t.Fatalf("config.json unreadable: %v", err)
		}
		_, ok := cfg.Auths[alias]
		return ok
	})
	if en, _ := cfg.Lookup("other.example.com"); en.Password != "their-secret" {
		t.Fatalf("the foreign entry was not kept: %v", en)
	}
	script(t, "restart-kubelet.sh") // rather than wait up to 5 minutes for the kubelet to re-read it
	time.Sleep(2 * time.Second)
	ns := e.Namespace(t, "legacy", nil)
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: strings.Replace(e.Image, e.Registry, alias, 1)}))
	e.WaitRunning(t, ns, pod.Name)

	// The registry goes, and with it its entry of the node Secret (as the controller writes it):
	// its config.json entry goes, the foreign one stays.
	if err := e.Registries.Delete(framework.Context(t, time.Minute), reg.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	nodeSecret, err := e.Kube.CoreV1().Secrets(srcNS).Get(framework.Context(t, time.Minute), nodesecret.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(nodeSecret.Data, reg.Name)
	if _, err := e.Kube.CoreV1().Secrets(srcNS).Update(framework.Context(t, time.Minute), nodeSecret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the registry out of config.json", func() bool {
		data, _ := os.ReadFile(config)
		c, err := dockerconfig.Parse(data)
		if err != nil {
			return false
		}
		_, ours := c.Auths[alias]
		_, theirs := c.Auths["other.example.com"]
		return !ours && theirs
	})
	stop()
	if out, _ := os.ReadFile(filepath.Join(cacheDir, "agent.log")); strings.Contains(string(out), e.RegistryPassword) {
		t.Fatal("the agent logged the password")
	}
}

// agentPID finds the deployed agent's process on this machine (the harness's node), by its cache.
func agentPID(t *testing.T, e *framework.Env, cache string) int {
	t.Helper()
	// On a cluster of several nodes the agents' flags are alike: find the one of the suite's
	// node by its container's ID, in the cgroup of its process.
	container := ""
	if !e.HostNetwork {
		pods, err := e.Kube.CoreV1().Pods(framework.PullpassNamespace).List(framework.Context(t, time.Minute), metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/component=agent", FieldSelector: "spec.nodeName=" + e.NodeName})
		if err != nil || len(pods.Items) != 1 || len(pods.Items[0].Status.ContainerStatuses) != 1 {
			return 0
		}
		_, container, _ = strings.Cut(pods.Items[0].Status.ContainerStatuses[0].ContainerID, "://")
		if container == "" {
			return 0
		}
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if !strings.HasSuffix(args[0], "pullpass-agent") {
			continue
		}
		if container != "" {
			cg, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "cgroup"))
			if !strings.Contains(string(cg), container) {
				continue
			}
		} else if !strings.Contains(string(data), "--cache="+cache) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		return pid
	}
	return 0
}

// The agent killed (SIGKILL) again and again while registries keep coming, so while it writes:
// after every kill the cache reads, the installed plugin answers the kubelet's request from it,
// and once the agent is back it serves every registry and has cleaned up the temp files.
func TestAgentKilledWhileWritingLeavesAReadableCache(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	nodeServesNothingAfter(t, e)
	cache := e.AgentCache()
	plugin := filepath.Join(e.Var("CREDENTIAL_PROVIDER_BIN"), "pullpass-credential-provider")
	readyz := strings.TrimSuffix(e.AgentMetricsURL(t, ep), "/metrics") + "/readyz" // the pod's address outlives its container
	ready := func() bool {
		resp, err := http.Get(readyz)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}

	const n = 40
	created := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("kill-%02d", i)
			data, _ := dockerconfig.ForHost(fmt.Sprintf("r%02d.kill.example.com", i), "u", "p-"+name).Marshal()
			ctx := context.Background()
			if _, err := e.Kube.CoreV1().Secrets(framework.PullpassNamespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + name},
				Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}, metav1.CreateOptions{}); err != nil {
				created <- err
				return
			}
			if _, err := e.Registries.Create(ctx, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{
				Hosts: []string{fmt.Sprintf("r%02d.kill.example.com", i)}, Scope: v1alpha1.ScopeCluster,
				Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: framework.PullpassNamespace, Name: "e2e-" + name}},
			}}, metav1.CreateOptions{}); err != nil {
				created <- err
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		created <- nil
	}()
	t.Cleanup(func() {
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("kill-%02d", i)
			_ = e.Registries.Delete(context.Background(), name, metav1.DeleteOptions{})
			_ = e.Kube.CoreV1().Secrets(framework.PullpassNamespace).Delete(context.Background(), "e2e-"+name, metav1.DeleteOptions{})
		}
	})

	for kill := 0; kill < 3; kill++ {
		waitFor(t, 2*time.Minute, "the agent running and ready", func() bool { return agentPID(t, e, cache) != 0 && ready() })
		time.Sleep(time.Duration(300+kill*400) * time.Millisecond) // into the churn
		pid := agentPID(t, e, cache)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("killing the agent (pid %d): %v", pid, err)
		}
		f, err := nodecache.Read(cache)
		if err != nil {
			t.Fatalf("after kill %d the cache does not read: %v", kill+1, err)
		}
		if len(f.Entries) == 0 {
			continue
		}
		req := `{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"` + f.Entries[0].Hosts[0] + `/app:1"}`
		cmd := exec.Command(plugin, "--cache="+cache, "--no-record")
		cmd.Stdin = strings.NewReader(req)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), f.Entries[0].Hosts[0]) {
			t.Fatalf("after kill %d the plugin does not answer from the cache: %v\n%s", kill+1, err, out)
		}
		t.Logf("kill %d: the cache held %d registries and the plugin answered", kill+1, len(f.Entries))
	}
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "every registry served after the kills", func() bool {
		c := agentCache(t, e)
		for i := 0; i < n; i++ {
			if _, ok := c[fmt.Sprintf("kill-%02d", i)]; !ok {
				return false
			}
		}
		return true
	})
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(cache), ".credentials.json.*")); len(left) != 0 {
		t.Fatalf("temp files left beside the cache: %v", left)
	}
}

// legacySourceNamespace is a namespace the deployed webhook allows sources in besides its own
// (values-harness.yaml's sourceNamespaces), which the deployed agents never read.
func legacySourceNamespace(t *testing.T, e *framework.Env) string {
	t.Helper()
	const ns = "pullpass-e2e-legacy"
	_, err := e.Kube.CoreV1().Namespaces().Create(framework.Context(t, time.Minute), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return ns
}
