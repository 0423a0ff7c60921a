package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/agent/refresher"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/nodesecret"
	"github.com/pullpass/pullpass/pkg/registryclient"
	"github.com/pullpass/pullpass/pkg/registrywatch"
	"github.com/pullpass/pullpass/pkg/testenv"
	"github.com/pullpass/pullpass/webhook/nodecreds"
)

// chartAgentRules are the rules of the chart's RBAC for the agents, rendered by `helm template`
// (helm pinned in hack/build-tools.sh) at the chart's defaults: the ClusterRole pullpass-agent and
// the Role of the node Secrets.
var chartAgentRules = sync.OnceValues(func() (map[string][]rbacv1.PolicyRule, error) {
	const root = "../.."
	out, err := exec.Command(filepath.Join(root, "hack/build-tools.sh"), "helm").Output()
	if err != nil {
		return nil, fmt.Errorf("building helm: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	cmd := exec.Command(filepath.Join(lines[len(lines)-1], "helm"), "template", "pullpass", filepath.Join(root, "charts/pullpass"), "--namespace", ns)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	manifests, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template: %w\n%s", err, stderr.String())
	}
	rules := map[string][]rbacv1.PolicyRule{}
	for _, doc := range bytes.Split(manifests, []byte("\n---\n")) {
		var role rbacv1.Role // a ClusterRole's rules read the same
		if err := yaml.Unmarshal(doc, &role); err != nil {
			continue
		}
		if key := role.Kind + "/" + role.Name; key == "ClusterRole/pullpass-agent" || key == "Role/pullpass-agent-node-credentials" {
			rules[key] = role.Rules
		}
	}
	if len(rules) != 2 {
		return nil, fmt.Errorf("the chart renders %d of the agents' ClusterRole pullpass-agent and Role pullpass-agent-node-credentials", len(rules))
	}
	return rules, nil
})

// chartRules are the rules of one of the chart's agent roles ("ClusterRole/pullpass-agent",
// "Role/pullpass-agent-node-credentials").
func chartRules(t *testing.T, key string) []rbacv1.PolicyRule {
	t.Helper()
	rules, err := chartAgentRules()
	if err != nil {
		t.Fatal(err)
	}
	return rules[key]
}

// apiSecrets reads sources from the API server, as the controller's caches do.
type apiSecrets struct{ kube kubernetes.Interface }

func (s apiSecrets) Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	return s.kube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
}

// startWriter runs what the controller's leader runs for the nodes: the node Secret's writer, as
// an admin, resyncing often instead of following the source informers. It returns a func that
// stops it.
func startWriter(t *testing.T, env *testenv.Env) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	table := registrywatch.New(env.Registries, log)
	w, err := nodecreds.New(nodecreds.Config{Store: nodecreds.Secrets{API: env.Kube.CoreV1().Secrets(ns)}, Registries: table,
		Sources: apiSecrets{env.Kube}, Namespace: ns, Reserved: []string{"pullpass-webhook-tls"}, Resync: 200 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { table.Run(ctx) })
	wg.Go(func() {
		for !table.HasSynced() && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		w.Run(ctx)
	})
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

// password is what the node cache serves for registry ("" and an error when nothing).
func (a *agent) password(registry string) (string, error) {
	f, err := nodecache.Read(a.opts.CachePath)
	if err != nil {
		return "", err
	}
	for _, e := range f.Entries {
		if e.Registry == registry {
			return e.Password, nil
		}
	}
	return "", fmt.Errorf("%s not in the cache", registry)
}

func (a *agent) servesPassword(t *testing.T, registry, want string) {
	t.Helper()
	testenv.Eventually(t, 15*time.Second, func() error {
		got, err := a.password(registry)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s served with another password", registry)
		}
		return nil
	})
}

func (a *agent) withdrawn(t *testing.T, registry string) {
	t.Helper()
	testenv.Eventually(t, 15*time.Second, func() error {
		if a.serves(registry) == nil {
			return fmt.Errorf("%s still served", registry)
		}
		return nil
	})
}

// A Cluster-scope registry's credentials reach the node cache through the node Secret, which the
// agent reads with the chart's Role alone; a rotated password follows; a source emptied or
// deleted withdraws them, and one put back serves again.
func TestNodeSecretCarriesClusterRegistries(t *testing.T) {
	env, a, _, _ := setup(t, "carried", "")
	a.servesPassword(t, "carried", "p")
	host, src := "carried.example.com", "carried-src"
	env.SourceSecret(t, ns, src, host, "rotated")
	a.servesPassword(t, "carried", "rotated")

	api := env.Kube.CoreV1().Secrets(ns)
	cur, err := api.Get(t.Context(), src, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Data = map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}
	if _, err := api.Update(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	a.withdrawn(t, "carried")

	env.SourceSecret(t, ns, src, host, "back")
	a.servesPassword(t, "carried", "back")
	if err := api.Delete(t.Context(), src, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a.withdrawn(t, "carried")
}

// The node Secret missing (deleted by hand, not written yet by a new leader) is no word from
// the sources: the node keeps what it serves, and gets it back once the Secret is written.
func TestMissingNodeSecretKeepsTheLastGood(t *testing.T) {
	env, a, _, stopWriter := setup(t, "kept", "")
	stopWriter() // a leader gone, none elected yet
	for _, name := range nodesecret.ShardNames() {
		if err := env.Kube.CoreV1().Secrets(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	// The agent resyncs on the deletion: once a sync without the node Secret has written what
	// it would, the node still serves.
	testenv.Poll(t, 30*time.Second, 20*time.Millisecond, func() error {
		n, err := a.metric("pullpass_agent_syncs_total", map[string]string{"registries": refresher.SyncLastListed})
		if err == nil && n < 1 {
			err = errors.New("no sync of the last listed registries yet")
		}
		return err
	})
	if err := a.serves("kept"); err != nil {
		t.Fatalf("the node Secret missing withdrew the credentials: %v", err)
	}
	startWriter(t, env) // the next leader
	a.servesPassword(t, "kept", "p")
}

// The agent's ServiceAccount, with the chart's RBAC, reads the node Secrets and no other Secret:
// not a registry's source, not the webhook's TLS Secret, not a list of the namespace, whatever
// Registries name.
func TestAgentReadsOnlyTheNodeSecret(t *testing.T) {
	env, _, _, _ := setup(t, "rbac", "")
	env.CreateRegistry(t, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "rbac-anything"}, Spec: v1alpha1.RegistrySpec{
		Hosts: []string{"anything.example.com"}, Scope: v1alpha1.ScopeCluster,
		Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: "anything"}}}})
	create(t, env.Kube.CoreV1().Secrets(ns).Create, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pullpass-webhook-tls"},
		StringData: map[string]string{"tls.key": "not a key"}})
	t.Cleanup(func() {
		_ = env.Kube.CoreV1().Secrets(ns).Delete(context.Background(), "pullpass-webhook-tls", metav1.DeleteOptions{})
	})
	cfg, err := env.ServiceAccountConfig(ns, agentName)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	api := kube.CoreV1().Secrets(ns)
	// The registry of setup names rbac-src, and has been served from the node Secret meanwhile.
	for _, name := range nodesecret.ShardNames() {
		if _, err := api.Get(t.Context(), name, metav1.GetOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("the agent cannot get %s: %v", name, err)
		}
	}
	for _, name := range []string{"rbac-src", "pullpass-webhook-tls", "anything"} {
		if _, err := api.Get(t.Context(), name, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("the agent's get of secret %s: %v, want forbidden", name, err)
		}
	}
	if _, err := api.List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the agent's list of the namespace's secrets: %v, want forbidden", err)
	}
	if _, err := kube.CoreV1().Secrets("default").List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the agent's list of another namespace's secrets: %v, want forbidden", err)
	}
	// The node Secret carries the registries' specs: the agent reads no Registry.
	regs, err := registryclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := regs.List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the agent's list of Registries: %v, want forbidden", err)
	}
}
