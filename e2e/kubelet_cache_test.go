//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// The node path under the kubelet's cache at the chart's own cache durations (issue #23). The
// suite's values shorten the plugin's caches to 5 s so that rotations reach the next pull
// within seconds; this test puts the chart's defaults back (helm upgrade, kubelet restart),
// because a short cache hides what the kubelet does with an answer it keeps: it reuses an answer
// cached under the image's host for every later image of that host.

// chartCacheDefaults are the chart's own plugin cache durations (values.yaml).
func chartCacheDefaults(t *testing.T) (plugin, token string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "charts", "pullpass", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Agent struct {
			PluginCacheDuration  string `json:"pluginCacheDuration"`
			ServiceAccountTokens struct {
				CacheDuration string `json:"cacheDuration"`
			} `json:"serviceAccountTokens"`
		} `json:"agent"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if v.Agent.PluginCacheDuration == "" || v.Agent.ServiceAccountTokens.CacheDuration == "" {
		t.Fatal("the chart's values.yaml has no agent.pluginCacheDuration or agent.serviceAccountTokens.cacheDuration")
	}
	return v.Agent.PluginCacheDuration, v.Agent.ServiceAccountTokens.CacheDuration
}

// setAgentCaches sets the agent's cache durations (helm upgrade, reusing the suite's values),
// waits for every agent to write its provider config with them, and restarts the kubelets,
// which read that config at start only.
func setAgentCaches(t *testing.T, e *framework.Env, plugin, token string) {
	t.Helper()
	out, err := e.HelmUpgrade(t, e.Deployed(t),
		"--set", "agent.pluginCacheDuration="+plugin, "--set", "agent.serviceAccountTokens.cacheDuration="+token,
		"--wait", "--timeout", "3m").CombinedOutput()
	if err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	want, err := time.ParseDuration(plugin)
	if err != nil {
		t.Fatal(err)
	}
	arg := "--max-cache-duration=" + want.String()
	waitFor(t, 2*time.Minute, "the agents rolled out and the provider config at "+plugin, func() bool {
		ds, err := e.Kube.AppsV1().DaemonSets(framework.PullpassNamespace).Get(context.Background(), "pullpass-agent", metav1.GetOptions{})
		if err != nil {
			return false
		}
		s := ds.Status
		if s.ObservedGeneration < ds.Generation || s.UpdatedNumberScheduled != s.DesiredNumberScheduled || s.NumberReady != s.DesiredNumberScheduled {
			return false
		}
		data, _ := os.ReadFile(filepath.Join(e.Var("CREDENTIAL_PROVIDER_CONFIG"), "pullpass.yaml"))
		return strings.Contains(string(data), arg)
	})
	script(t, "restart-kubelet.sh")
}

// podsPullAtFirstTry creates the pods together and waits for each to run, with no failed pull
// on the way: the first pull of each succeeded.
func podsPullAtFirstTry(t *testing.T, e *framework.Env, pods ...*corev1.Pod) {
	t.Helper()
	var wg sync.WaitGroup
	created := make([]*corev1.Pod, len(pods))
	for i, p := range pods {
		wg.Go(func() {
			c, err := e.Kube.CoreV1().Pods(p.Namespace).Create(framework.Context(t, time.Minute), p, metav1.CreateOptions{})
			if err != nil {
				t.Errorf("creating pod %s/%s: %v", p.Namespace, p.Name, err)
				return
			}
			created[i] = c
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, p := range created {
		e.WaitRunning(t, p.Namespace, p.Name)
		if failed := e.FailedPullEvents(t, p.Namespace, p.Name); len(failed) > 0 {
			t.Fatalf("pod %s/%s (%s) ran, but only after failed pulls:\n%s", p.Namespace, p.Name, p.Spec.Containers[0].Image, strings.Join(failed, "\n"))
		}
	}
}

// pluginExecs is the number of times the kubelet ran the plugin on the node (both entries).
func pluginExecs(t *testing.T, e *framework.Env, ep framework.Endpoints) float64 {
	t.Helper()
	var n float64
	for _, r := range []string{"hit", "miss", "error"} {
		n += framework.Metric(t, e.AgentMetricsURL(t, ep), "pullpass_agent_plugin_requests_total", map[string]string{"result": r})
	}
	return n
}

// Several registries of one host, public images beside private ones, at the chart's cache
// durations: every pod's first pull gets the credentials of its own registry, whatever the node
// pulled of that host just before.
func TestNodePathAtChartCacheDefaults(t *testing.T) {
	e := framework.Load(t)
	ep := e.Deployed(t)
	plugin, token := chartCacheDefaults(t)
	nodeServesNothingAfter(t, e)
	nodeGrantsNothingAfter(t, e)
	suite := func() (string, string) {
		data, err := os.ReadFile(filepath.Join(e.Var("CREDENTIAL_PROVIDER_CONFIG"), "pullpass.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		p, tk := pluginCache.String(), tokenCache.String()
		if !strings.Contains(string(data), "--max-cache-duration="+p) {
			t.Fatalf("the provider config does not have the suite's %s cache: %s", p, data)
		}
		return p, tk
	}
	suitePlugin, suiteToken := suite()

	// Images of four repositories of the test registry's host: two teams, their service
	// accounts' two, and one no registry serves.
	id := rand.String(5)
	images := map[string]string{}
	for _, path := range []string{"team-a", "team-b", "sa-a", "sa-b", "unserved"} {
		images[path] = e.Registry + "/" + path + "-" + id + "/hello:1"
		e.CopyImage(t, e.Image, images[path])
	}
	hostOf := func(path string) []string { return []string{e.Registry + "/" + path + "-" + id + "/"} }
	ns := e.Namespace(t, "cache-defaults", nil)
	for _, sa := range []string{"puller-a", "puller-b"} {
		if _, err := e.Kube.CoreV1().ServiceAccounts(ns).Create(framework.Context(t, time.Minute),
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.CreateRegistry(t, framework.RegistryOptions{Name: "cache-team-a", Scope: v1alpha1.ScopeCluster, Hosts: hostOf("team-a")})
	e.CreateRegistry(t, framework.RegistryOptions{Name: "cache-team-b", Scope: v1alpha1.ScopeCluster, Hosts: hostOf("team-b")})
	e.CreateRegistry(t, framework.RegistryOptions{Name: "cache-sa-a", Scope: v1alpha1.ScopeNamespaced, Delivery: v1alpha1.DeliveryNode,
		Hosts: hostOf("sa-a"), ServiceAccounts: &v1alpha1.ServiceAccountSelector{Names: []string{"puller-a"}}})
	e.CreateRegistry(t, framework.RegistryOptions{Name: "cache-sa-b", Scope: v1alpha1.ScopeNamespaced, Delivery: v1alpha1.DeliveryNode,
		Hosts: hostOf("sa-b"), ServiceAccounts: &v1alpha1.ServiceAccountSelector{Names: []string{"puller-b"}}})
	waitFor(t, time.Minute, "the four registries served by the node", func() bool {
		c, g := agentCache(t, e), grantsOnNode(t, e)
		_, a := c["cache-team-a"]
		_, b := c["cache-team-b"]
		_, sa := g["cache-sa-a"]
		_, sb := g["cache-sa-b"]
		return a && b && sa && sb
	})

	// The chart's caches; the kubelets restart with them, and with nothing cached.
	t.Cleanup(func() { setAgentCaches(t, e, suitePlugin, suiteToken) })
	setAgentCaches(t, e, plugin, token)
	before := pluginExecs(t, e, ep)

	t.Run("two registries of one host, pods together", func(t *testing.T) {
		podsPullAtFirstTry(t, e,
			e.Pod(ns, framework.PodOptions{Image: images["team-a"]}),
			e.Pod(ns, framework.PodOptions{Image: images["team-b"]}))
	})
	t.Run("an image no registry serves, then a private one of the host", func(t *testing.T) {
		unserved := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: images["unserved"], RestartNever: true}))
		e.WaitPullFailure(t, ns, unserved.Name)
		podsPullAtFirstTry(t, e, e.Pod(ns, framework.PodOptions{Image: images["team-b"]}))
	})
	t.Run("the token entry: two service accounts, a registry each", func(t *testing.T) {
		podsPullAtFirstTry(t, e,
			e.Pod(ns, framework.PodOptions{Image: images["sa-a"], ServiceAccount: "puller-a"}),
			e.Pod(ns, framework.PodOptions{Image: images["sa-b"], ServiceAccount: "puller-b"}))
		// Each service account only its own registry's image.
		refused := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: images["sa-a"], ServiceAccount: "puller-b", RestartNever: true}))
		e.WaitPullFailure(t, ns, refused.Name)
	})
	t.Run("the token entry: an image no registry serves, then a private one", func(t *testing.T) {
		unserved := e.CreatePod(t, e.Pod(ns, framework.PodOptions{Image: images["unserved"], ServiceAccount: "puller-a", RestartNever: true}))
		e.WaitPullFailure(t, ns, unserved.Name)
		podsPullAtFirstTry(t, e, e.Pod(ns, framework.PodOptions{Image: images["sa-a"], ServiceAccount: "puller-a"}))
	})
	// 7 pods, each one image of the registry's host; the token entry is asked per service
	// account, the Cluster entry per host (docs/benchmarks.md).
	t.Logf("plugin execs on the node for 7 pods at the chart's caches: %v", pluginExecs(t, e, ep)-before)
}
