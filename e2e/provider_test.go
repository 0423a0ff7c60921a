//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pullpass/pullpass/e2e/framework"
	"github.com/pullpass/pullpass/pkg/nodecache"
)

// The credential provider plugin with the harness's real kubelet: a pod in a namespace that never
// opted in, with no pull secret, pulls the private image with what the node cache holds. (The
// node agent that fills the cache comes later; here the test writes it as the agent will.)
func TestCredentialProviderServesTheKubelet(t *testing.T) {
	e := framework.Load(t)
	cfgDir, binDir := os.Getenv("CREDENTIAL_PROVIDER_CONFIG"), os.Getenv("CREDENTIAL_PROVIDER_BIN")
	if cfgDir == "" {
		cfgDir, binDir = e.Var("CREDENTIAL_PROVIDER_CONFIG"), e.Var("CREDENTIAL_PROVIDER_BIN")
	}
	if _, err := os.Stat(cfgDir); err != nil {
		t.Skipf("the kubelet's credential provider dirs are not on this machine (%v): this test needs the harness node", err)
	}
	restart := func() {
		out, err := exec.Command(filepath.Join(framework.RepoRoot(), "e2e/cluster/restart-kubelet.sh")).CombinedOutput()
		if err != nil {
			t.Fatalf("restarting the kubelet: %v\n%s", err, out)
		}
	}
	cache := filepath.Join(filepath.Dir(cfgDir), "credentials.json")
	build := exec.Command("go", "build", "-o", filepath.Join(binDir, "pullpass-credential-provider"), "./cmd/pullpass-credential-provider")
	build.Dir, build.Env = framework.RepoRoot(), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	config := filepath.Join(cfgDir, "10-pullpass.yaml")
	if err := os.WriteFile(config, []byte(`apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
- name: pullpass-credential-provider
  apiVersion: credentialprovider.kubelet.k8s.io/v1
  matchImages: ["`+e.Registry+`"]
  defaultCacheDuration: 1m
  args: ["--cache", "`+cache+`"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// Whatever happens, the kubelet goes back to serving no credentials: the negative tests
	// of this suite rely on it.
	t.Cleanup(func() {
		_ = os.Remove(config)
		_ = os.Remove(cache)
		restart()
	})
	if err := nodecache.Write(cache, nodecache.File{Entries: []nodecache.Entry{{
		Registry: "harness", Hosts: []string{e.Registry}, Username: e.RegistryUsername, Password: e.RegistryPassword,
		ExpiresAt: time.Now().Add(time.Hour),
	}}}); err != nil {
		t.Fatal(err)
	}
	restart()
	// The kubelet registers again after a restart; give the API server a moment to see it ready
	// to run pods.
	time.Sleep(2 * time.Second)

	ns := e.Namespace(t, "node-served", nil)
	pod := e.CreatePod(t, e.Pod(ns, framework.PodOptions{}))
	if len(pod.Spec.ImagePullSecrets) != 0 {
		t.Fatalf("pod has pull secrets %v", pod.Spec.ImagePullSecrets)
	}
	e.WaitRunning(t, ns, pod.Name)
}
