package install_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/agent/install"
	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/pkg/match"
)

// An EKS node's provider config, as its bootstrap writes it.
const eksConfig = `{
  "apiVersion": "kubelet.config.k8s.io/v1",
  "kind": "CredentialProviderConfig",
  "providers": [
    {
      "name": "ecr-credential-provider",
      "matchImages": ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn"],
      "defaultCacheDuration": "12h",
      "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
      "env": [{"name": "AWS_REGION", "value": "eu-west-1"}]
    }
  ]
}
`

type node struct {
	dir, bin, cache, plugin, tokenPlugin string
}

func newNode(t *testing.T) node {
	t.Helper()
	d := t.TempDir()
	n := node{dir: d, bin: filepath.Join(d, "bin"), cache: filepath.Join(d, "pullpass", "credentials.json"), plugin: filepath.Join(d, "plugin-src"), tokenPlugin: filepath.Join(d, "token-plugin-src")}
	if err := os.MkdirAll(filepath.Dir(n.cache), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.plugin, []byte("#!/bin/sh\necho plugin v1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.tokenPlugin, []byte("#!/bin/sh\necho token plugin v1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The other provider of eksConfig: the kubelet refuses a config naming a missing binary.
	if err := os.MkdirAll(n.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.bin, "ecr-credential-provider"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n node) installer(t *testing.T, configPath string, extra ...string) *install.Installer {
	t.Helper()
	in, err := install.New(install.Config{PluginSource: n.plugin, BinDir: n.bin, ConfigPath: configPath, CachePath: n.cache,
		CacheDuration: 30 * time.Second, MatchImages: extra})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.InstallPlugin(); err != nil {
		t.Fatal(err)
	}
	return in
}

// providersOf reads a config file's providers by name.
func providersOf(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Kind      string           `json:"kind"`
		Providers []map[string]any `json:"providers"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	if doc.Kind != "CredentialProviderConfig" {
		t.Fatalf("%s: kind %q", path, doc.Kind)
	}
	out := map[string]map[string]any{}
	for _, p := range doc.Providers {
		out[p["name"].(string)] = p
	}
	return out
}

func matchImages(p map[string]any) []string {
	var out []string
	for _, m := range p["matchImages"].([]any) {
		out = append(out, m.(string))
	}
	return out
}

func TestDirectoryModeWritesADropInAndThePlugin(t *testing.T) {
	n := newNode(t)
	cfgDir := filepath.Join(n.dir, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(cfgDir, "00-other.yaml")
	if err := os.WriteFile(other, []byte("# someone else's\nkind: CredentialProviderConfig\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := n.installer(t, cfgDir)
	if err := in.InstallPlugin(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(n.bin, install.DefaultPluginName))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("plugin not installed executable: %v %v", st, err)
	}
	need, err := in.Configure([]string{"ghcr.io/acme", "registry.internal:5000"})
	if err != nil {
		t.Fatal(err)
	}
	if !need {
		t.Fatal("a first install must ask for a kubelet restart")
	}
	p := providersOf(t, filepath.Join(cfgDir, install.DropInName))[install.DefaultPluginName]
	if p == nil {
		t.Fatal("no pullpass provider in the drop-in")
	}
	got := matchImages(p)
	want := []string{"*", "*.*", "*.*.*", "*.*.*.*", "*.*.*.*.*", "*.*.*.*.*.*", "*.*.*.*.*.*.*", "*.*.*.*.*.*.*.*", "registry.internal:5000"}
	if !slices.Equal(got, want) {
		t.Fatalf("matchImages %v, want %v", got, want)
	}
	if p["defaultCacheDuration"] != "30s" || p["apiVersion"] != "credentialprovider.kubelet.k8s.io/v1" {
		t.Fatalf("entry %v", p)
	}
	if data, _ := os.ReadFile(other); string(data) != "# someone else's\nkind: CredentialProviderConfig\n" {
		t.Fatalf("another provider's file changed: %q", data)
	}
}

// The globs, read with the kubelet's matching rules, match every port-less host a registry may
// have, and no host with a port.
func TestGlobsMatchEveryPortlessHost(t *testing.T) {
	n := newNode(t)
	in := n.installer(t, filepath.Join(n.dir, "config"))
	if _, err := in.Configure(nil); err != nil {
		t.Fatal(err)
	}
	var patterns []match.Pattern
	for _, s := range matchImages(providersOf(t, filepath.Join(n.dir, "config", install.DropInName))[install.DefaultPluginName]) {
		p, err := match.ParsePattern(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		patterns = append(patterns, p)
	}
	matches := func(img string) bool {
		return slices.ContainsFunc(patterns, func(p match.Pattern) bool { return p.Matches(img) })
	}
	for _, img := range []string{"localhost/app", "ghcr.io/acme/app", "docker.io/library/nginx", "us-docker.pkg.dev/p/r/i",
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app",
		"123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app", "registry.gitlab.com/g/p"} {
		if !matches(img) {
			t.Errorf("%s is not matched", img)
		}
	}
	for _, img := range []string{"localhost:5000/app", "registry.internal:5000/app"} {
		if matches(img) {
			t.Errorf("%s (a port) is matched by a glob", img)
		}
	}
}

func TestFileModeKeepsOtherProviders(t *testing.T) {
	n := newNode(t)
	path := filepath.Join(n.dir, "config.json")
	if err := os.WriteFile(path, []byte(eksConfig), 0o640); err != nil {
		t.Fatal(err)
	}
	var before map[string]any
	_ = json.Unmarshal([]byte(eksConfig), &before)
	in := n.installer(t, path)
	if _, err := in.Configure([]string{"a.example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Configure([]string{"a.example.com", "b.example.com:5000"}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "{") {
		t.Fatalf("a JSON config was rewritten as something else:\n%s", data)
	}
	ps := providersOf(t, path)
	if len(ps) != 2 {
		t.Fatalf("providers %v, want the EKS one and pullpass's once", ps)
	}
	eks := before["providers"].([]any)[0]
	if !reflect.DeepEqual(ps["ecr-credential-provider"], eks) {
		t.Fatalf("the EKS provider changed:\n got %v\nwant %v", ps["ecr-credential-provider"], eks)
	}
	if got := matchImages(ps[install.DefaultPluginName]); got[len(got)-1] != "b.example.com:5000" {
		t.Fatalf("matchImages %v: the host with a port is missing", got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want the file's own 0640", st.Mode().Perm())
	}

	// Uninstall leaves the EKS provider alone.
	if err := in.InstallPlugin(); err != nil {
		t.Fatal(err)
	}
	if err := in.Remove(); err != nil {
		t.Fatal(err)
	}
	ps = providersOf(t, path)
	if len(ps) != 1 || !reflect.DeepEqual(ps["ecr-credential-provider"], eks) {
		t.Fatalf("after Remove: %v", ps)
	}
	if _, err := os.Stat(filepath.Join(n.bin, install.DefaultPluginName)); !os.IsNotExist(err) {
		t.Fatalf("plugin binary left: %v", err)
	}
}

func TestUnreadableConfigIsLeftAlone(t *testing.T) {
	n := newNode(t)
	for name, content := range map[string]string{
		"broken.yaml":   "providers: [\n",
		"other.yaml":    "kind: KubeletConfiguration\n",
		"notalist.json": `{"kind":"CredentialProviderConfig","providers":{"a":1}}`,
	} {
		path := filepath.Join(n.dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := n.installer(t, path).Configure(nil)
		if err == nil || !strings.Contains(err.Error(), "left as it is") {
			t.Errorf("%s: err = %v, want a clear refusal", name, err)
		}
		if data, _ := os.ReadFile(path); string(data) != content {
			t.Errorf("%s was changed to %q", name, data)
		}
	}
}

// The kubelet restart is known to be needed until the plugin reports it runs with the config
// the agent wrote; a restarted agent that finds its own entry does not ask again.
func TestRestartNeededFollowsThePlugin(t *testing.T) {
	n := newNode(t)
	cfgDir := filepath.Join(n.dir, "config")
	in := n.installer(t, cfgDir)
	if need, _ := in.Configure([]string{"a.example.com"}); !need {
		t.Fatal("first install: want restart needed")
	}
	gen := func() string {
		p := providersOf(t, filepath.Join(cfgDir, install.DropInName))[install.DefaultPluginName]
		for _, a := range p["args"].([]any) {
			if s, ok := strings.CutPrefix(a.(string), "--generation="); ok {
				return s
			}
		}
		t.Fatal("no --generation argument")
		return ""
	}
	g1 := gen()
	nodecache.RecordGeneration(n.cache, g1) // the restarted kubelet ran the plugin
	if in.RestartNeeded() {
		t.Fatal("restart still needed after the plugin ran with the written config")
	}
	// A new port-less registry changes nothing.
	if need, _ := in.Configure([]string{"a.example.com", "b.example.com"}); need || gen() != g1 {
		t.Fatalf("a port-less host changed the config (need=%v)", need)
	}
	// A host with a port does.
	if need, _ := in.Configure([]string{"a.example.com", "c.example.com:8443"}); !need || gen() == g1 {
		t.Fatal("a host with a port must change the config and need a restart")
	}
	// A new agent on a node whose kubelet already runs the current config.
	nodecache.RecordGeneration(n.cache, gen())
	in2 := n.installer(t, cfgDir)
	if need, _ := in2.Configure([]string{"a.example.com", "c.example.com:8443"}); need {
		t.Fatal("a restarted agent asks for a restart the kubelet already had")
	}
}

// Token mode: a second entry, with its own copy of the plugin, that the kubelet runs with the
// pod's service account token; the Cluster entry stays without tokenAttributes, so its pulls
// stay node-wide (KEP-2535). Both go with an uninstall.
func TestTokenModeAddsASecondEntry(t *testing.T) {
	n := newNode(t)
	cfg := filepath.Join(n.dir, "config.json")
	if err := os.WriteFile(cfg, []byte(eksConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := install.New(install.Config{PluginSource: n.plugin, TokenPluginSource: n.tokenPlugin, BinDir: n.bin, ConfigPath: cfg, CachePath: n.cache,
		CacheDuration: 30 * time.Second, Tokens: &install.Tokens{Audience: "pullpass.io"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.InstallPlugin(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Configure([]string{"ghcr.io/team"}); err != nil {
		t.Fatal(err)
	}
	ps := providersOf(t, cfg)
	if len(ps) != 3 || ps["ecr-credential-provider"] == nil {
		t.Fatalf("providers %v", ps)
	}
	cluster, token := ps[install.DefaultPluginName], ps[install.DefaultPluginName+install.TokenPluginSuffix]
	if cluster["tokenAttributes"] != nil {
		t.Fatalf("the Cluster entry has tokenAttributes: %v", cluster)
	}
	want := map[string]any{
		"serviceAccountTokenAudience": "pullpass.io", "cacheType": "ServiceAccount", "requireServiceAccount": true,
		"optionalServiceAccountAnnotationKeys": []any{"pullpass.io/registries", "pullpass.io/ecr-role-arn", "eks.amazonaws.com/ecr-role-arn"},
	}
	if !reflect.DeepEqual(token["tokenAttributes"], want) {
		t.Fatalf("tokenAttributes %v", token["tokenAttributes"])
	}
	if token["defaultCacheDuration"] != "10s" || !slices.Equal(matchImages(token), matchImages(cluster)) {
		t.Fatalf("token entry %v", token)
	}
	args := fmt.Sprint(token["args"])
	if !strings.Contains(args, "--service-account-token-audience=pullpass.io") || !strings.Contains(args, "--max-cache-duration=10s") {
		t.Fatalf("token entry args %s", args)
	}
	// Each entry runs its own binary: the Cluster entry's links no token verification.
	for name, src := range map[string]string{install.DefaultPluginName: n.plugin, install.DefaultPluginName + install.TokenPluginSuffix: n.tokenPlugin} {
		if st, err := os.Stat(filepath.Join(n.bin, name)); err != nil || st.Mode().Perm() != 0o755 {
			t.Fatalf("plugin %s: %v", name, err)
		}
		got, _ := os.ReadFile(filepath.Join(n.bin, name))
		if want, _ := os.ReadFile(src); !bytes.Equal(got, want) {
			t.Fatalf("plugin %s is %q, want the binary of %s", name, got, src)
		}
	}
	// Token mode off again: the token entry goes, the rest stays.
	off := n.installer(t, cfg)
	if _, err := off.Configure(nil); err != nil {
		t.Fatal(err)
	}
	if ps := providersOf(t, cfg); len(ps) != 2 || ps[install.DefaultPluginName+install.TokenPluginSuffix] != nil {
		t.Fatalf("providers after token mode off %v", ps)
	}
	if _, err := in.Configure(nil); err != nil {
		t.Fatal(err)
	}
	if err := in.Remove(); err != nil {
		t.Fatal(err)
	}
	if ps := providersOf(t, cfg); len(ps) != 1 || ps["ecr-credential-provider"] == nil {
		t.Fatalf("providers after removal %v", ps)
	}
	if entries, _ := os.ReadDir(n.bin); len(entries) != 1 || entries[0].Name() != "ecr-credential-provider" {
		t.Fatalf("bin dir after removal %v, want only the other provider's binary", entries)
	}
}
