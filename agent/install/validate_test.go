package install_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/agent/install"
	"github.com/pullpass/pullpass/agent/nodecache"
)

// A config the kubelet would refuse keeps it from starting, and every pod of the node with it:
// the installer never writes one. Each case fails the write and leaves the config dir as it was.
func TestConfigTheKubeletWouldRefuseIsNeverWritten(t *testing.T) {
	for name, c := range map[string]struct {
		install  bool // the plugin binaries installed
		mode     os.FileMode
		match    []string
		other    string // another file of the config dir
		wantText string
	}{
		"plugin binary missing":        {install: false, wantText: "no executable pullpass-credential-provider"},
		"plugin binary not executable": {install: true, mode: 0o644, wantText: "no executable pullpass-credential-provider"},
		"a pattern the kubelet reads as URL syntax": {install: true, match: []string{"registry.internal:5000/team?x"},
			wantText: "only '*' is a glob"},
		"a provider name used by another file": {install: true, wantText: "used twice",
			other: "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: pullpass-credential-provider\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  matchImages: [x.example.com]\n  defaultCacheDuration: 1m\n"},
	} {
		t.Run(name, func(t *testing.T) {
			n := newNode(t)
			cfgDir := filepath.Join(n.dir, "config")
			if err := os.MkdirAll(cfgDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if c.other != "" {
				if err := os.WriteFile(filepath.Join(cfgDir, "other.yaml"), []byte(c.other), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			in, err := install.New(install.Config{PluginSource: n.plugin, BinDir: n.bin, ConfigPath: cfgDir, CachePath: n.cache,
				CacheDuration: 30 * time.Second, MatchImages: c.match})
			if err != nil {
				t.Fatal(err)
			}
			if c.install {
				if err := in.InstallPlugin(); err != nil {
					t.Fatal(err)
				}
				if c.mode != 0 {
					if err := os.Chmod(filepath.Join(n.bin, install.DefaultPluginName), c.mode); err != nil {
						t.Fatal(err)
					}
				}
			}
			_, err = in.Configure([]string{"ghcr.io/acme"})
			if !errors.Is(err, install.ErrRefused) || !strings.Contains(err.Error(), c.wantText) {
				t.Fatalf("Configure: %v, want a refusal naming %q", err, c.wantText)
			}
			if _, err := os.Stat(filepath.Join(cfgDir, install.DropInName)); !os.IsNotExist(err) {
				t.Fatalf("the drop-in was written (%v)", err)
			}
		})
	}
}

// Validate's rules, each as the kubelet 1.37 states it (pkg/credentialprovider/plugin/config.go).
func TestValidate(t *testing.T) {
	bin := t.TempDir()
	for _, b := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const head = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
	const a = "- name: a\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  matchImages: ['*']\n  defaultCacheDuration: 1m\n"
	const tok = a + "  tokenAttributes:\n    serviceAccountTokenAudience: pullpass.io\n    cacheType: ServiceAccount\n    requireServiceAccount: true\n"
	for name, c := range map[string]struct{ doc, want string }{
		"valid":                    {head + a, ""},
		"valid with tokens":        {head + tok + "    optionalServiceAccountAnnotationKeys: [pullpass.io/registries]\n", ""},
		"config apiVersion":        {strings.Replace(head, "kubelet.config.k8s.io/v1", "v1", 1) + a, "apiVersion \"v1\""},
		"kind":                     {strings.Replace(head, "CredentialProviderConfig", "KubeletConfiguration", 1) + a, "kind"},
		"no providers":             {strings.Replace(head, "providers:\n", "providers: []\n", 1), "at least one is required"},
		"duplicate name":           {head + a + a, "used twice"},
		"name with a slash":        {head + strings.Replace(a, "name: a", "name: a/b", 1), "without '/'"},
		"binary missing":           {head + strings.Replace(a, "name: a", "name: c", 1), "no executable c"},
		"provider apiVersion":      {head + strings.Replace(a, "kubelet.k8s.io/v1", "kubelet.k8s.io/v2", 1), "apiVersion \"credentialprovider.kubelet.k8s.io/v2\""},
		"no matchImages":           {head + strings.Replace(a, "['*']", "[]", 1), "matchImages: at least one"},
		"matchImages not a URL":    {head + strings.Replace(a, "['*']", "['%zz']", 1), "not a valid pattern"},
		"no defaultCacheDuration":  {head + strings.Replace(a, "  defaultCacheDuration: 1m\n", "", 1), "defaultCacheDuration is required"},
		"bad defaultCacheDuration": {head + strings.Replace(a, "1m", "soon", 1), "defaultCacheDuration \"soon\""},
		"negative duration":        {head + strings.Replace(a, "1m", "-1m", 1), "defaultCacheDuration \"-1m\""},
		"tokens without audience":  {head + strings.Replace(tok, "pullpass.io", "''", 1), "serviceAccountTokenAudience is required"},
		"tokens bad cacheType":     {head + strings.Replace(tok, "ServiceAccount", "Pod", 1), "cacheType \"Pod\""},
		"tokens no requireSA":      {head + strings.Replace(tok, "    requireServiceAccount: true\n", "", 1), "requireServiceAccount is required"},
		"tokens on v1beta1":        {head + strings.Replace(tok, "kubelet.k8s.io/v1\n", "kubelet.k8s.io/v1beta1\n", 1), "only for apiVersion"},
		"tokens bad annotation":    {head + tok + "    optionalServiceAccountAnnotationKeys: ['a b']\n", "optionalServiceAccountAnnotationKeys \"a b\""},
		"tokens required but not required SA": {head + strings.Replace(tok, "requireServiceAccount: true", "requireServiceAccount: false", 1) +
			"    requiredServiceAccountAnnotationKeys: [x.io/y]\n", "needs requireServiceAccount true"},
		"tokens key both required and optional": {head + tok + "    requiredServiceAccountAnnotationKeys: [x.io/y]\n    optionalServiceAccountAnnotationKeys: [x.io/y]\n",
			"both required and optional"},
	} {
		t.Run(name, func(t *testing.T) {
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(c.doc), &doc); err != nil {
				t.Fatal(err)
			}
			err := install.Validate(doc, bin, nil, nil)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (!errors.Is(err, install.ErrRefused) || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("err = %v, want a refusal naming %q", err, c.want)
			}
		})
	}
}

// A kubelet restart is judged on the config it was made for: nothing is written while it is
// held. A config the kubelet did not come back with is put back to what the kubelet ran before
// and never written again, by this agent or the next one on the node.
func TestRollbackNeverWritesTheConfigAgain(t *testing.T) {
	n := newNode(t)
	cfgDir := filepath.Join(n.dir, "config")
	in := n.installer(t, cfgDir)
	dropIn := filepath.Join(cfgDir, install.DropInName)
	if need, err := in.Configure([]string{"a.example.com:5000"}); err != nil || !need {
		t.Fatalf("first install: need %v, err %v", need, err)
	}
	gen, need := in.Hold(time.Time{})
	if !need || gen == "" {
		t.Fatal("Hold: no restart needed after a first install")
	}
	written, _ := os.ReadFile(dropIn)
	if _, err := in.Configure([]string{"a.example.com:5000", "b.example.com:5000"}); err != nil {
		t.Fatal(err)
	}
	if now, _ := os.ReadFile(dropIn); string(now) != string(written) {
		t.Fatal("the config changed while a restart was held")
	}
	if err := in.Rollback(gen); err != nil {
		t.Fatal(err)
	}
	// The hosts asked for meanwhile make another config, which is written on release.
	if ps := providersOf(t, dropIn); !strings.Contains(strings.Join(matchImages(ps[install.DefaultPluginName]), ","), "b.example.com:5000") {
		t.Fatalf("after the rollback, the config asked for meanwhile was not written: %v", ps)
	}
	// The rolled back one never again.
	for _, in := range []*install.Installer{in, n.installer(t, cfgDir)} {
		if _, err := in.Configure([]string{"a.example.com:5000"}); err != nil {
			t.Fatal(err)
		}
		if ps := providersOf(t, dropIn); strings.Contains(strings.Join(matchImages(ps[install.DefaultPluginName]), ","), "a.example.com:5000") &&
			!strings.Contains(strings.Join(matchImages(ps[install.DefaultPluginName]), ","), "b.example.com:5000") {
			t.Fatal("the rolled back config was written again")
		}
		if !in.Rejected(gen) {
			t.Fatal("the rolled back generation is not remembered")
		}
	}
}

// With no entry of pullpass's before, a rollback takes the entry out; a confirmed restart
// counts as the kubelet running the config before the plugin's first call.
func TestRollbackOfAFirstInstallAndConfirm(t *testing.T) {
	n := newNode(t)
	cfgDir := filepath.Join(n.dir, "config")
	in := n.installer(t, cfgDir)
	if _, err := in.Configure(nil); err != nil {
		t.Fatal(err)
	}
	gen, _ := in.Hold(time.Time{})
	if err := in.Rollback(gen); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfgDir, install.DropInName)); !os.IsNotExist(err) {
		t.Fatalf("the first install's entry is still there (%v)", err)
	}
	if in.RestartNeeded() {
		t.Fatal("restart needed after the rollback of a first install")
	}

	in2 := n.installer(t, filepath.Join(n.dir, "config2"))
	if _, err := in2.Configure([]string{"c.example.com:5000"}); err != nil {
		t.Fatal(err)
	}
	gen2, need := in2.Hold(time.Time{})
	if !need {
		t.Fatal("no restart needed after a first install")
	}
	if g, need := in2.Hold(time.Time{}); need || g != "" {
		t.Fatal("a second Hold while one is held")
	}
	if err := in2.Confirm(gen2); err != nil {
		t.Fatal(err)
	}
	if in2.RestartNeeded() {
		t.Fatal("restart still needed after a confirmed restart")
	}
}

// A kubelet started on a config without pullpass's entry (a node's bootstrap rewrote the file
// on reboot; a node whose disk kept the plugin's old record) runs an older entry than the one
// the agent writes again, though the plugin's record names the same generation: its start
// time, from systemd, tells. The record counts only once made after the kubelet started.
func TestRestartNeededSinceTheKubeletStarted(t *testing.T) {
	n := newNode(t)
	cfgDir := filepath.Join(n.dir, "config")
	in := n.installer(t, cfgDir)
	if _, err := in.Configure([]string{"a.example.com:5000"}); err != nil {
		t.Fatal(err)
	}
	gen, _ := in.Hold(time.Time{})
	if err := in.Release(); err != nil {
		t.Fatal(err)
	}
	nodecache.RecordGeneration(n.cache, gen) // the plugin ran it, long ago
	t0 := time.Now().Add(-time.Hour)
	kubeletStarted := t0.Add(time.Minute)
	touch := func(path string, at time.Time) {
		t.Helper()
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	touch(nodecache.GenerationPath(n.cache), t0)
	dropIn := filepath.Join(cfgDir, install.DropInName)
	// The entry written before the kubelet started: it runs it.
	touch(dropIn, t0)
	if in.RestartNeededSince(kubeletStarted) {
		t.Fatal("restart needed for an entry written before the kubelet started")
	}
	// Written again after the kubelet started on a config without it: the record is older.
	touch(dropIn, kubeletStarted.Add(time.Minute))
	if !in.RestartNeededSince(kubeletStarted) {
		t.Fatal("no restart needed for an entry written after the kubelet started, with an older record of the plugin")
	}
	// The plugin ran since with that generation: the kubelet runs it.
	touch(nodecache.GenerationPath(n.cache), kubeletStarted.Add(2*time.Minute))
	if in.RestartNeededSince(kubeletStarted) {
		t.Fatal("restart needed though the plugin recorded the entry's generation after the kubelet started")
	}
	// Or the kubelet restarted after the write.
	touch(nodecache.GenerationPath(n.cache), t0)
	if in.RestartNeededSince(kubeletStarted.Add(5 * time.Minute)) {
		t.Fatal("restart needed for a kubelet started after the write")
	}
}
