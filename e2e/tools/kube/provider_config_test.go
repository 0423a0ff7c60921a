package kube

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/credentialprovider/plugin"

	"github.com/pullpass/pullpass/agent/install"
)

// The provider config the agent writes in token mode is one the kubelet itself accepts: its own
// loader and validation (with KubeletServiceAccountTokenForCredentialProviders on, its default
// since 1.34) register both of pullpass's providers. A config the kubelet refused would keep it
// from starting.
func TestKubeletAcceptsTheProviderConfig(t *testing.T) {
	d := t.TempDir()
	src := filepath.Join(d, "plugin")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []bool{true, false} {
		// The kubelet's registry of providers is global: one plugin name per round.
		cfg, name := filepath.Join(d, "config.yaml"), "pullpass-file"
		if dir {
			cfg, name = filepath.Join(d, "config.d"), "pullpass-dir"
		}
		in, err := install.New(install.Config{PluginSource: src, TokenPluginSource: src, BinDir: filepath.Join(d, "bin"), ConfigPath: cfg, PluginName: name,
			CachePath: filepath.Join(d, "cache", "credentials.json"), CacheDuration: time.Minute, MatchImages: []string{"localhost:5443"},
			Tokens: &install.Tokens{Audience: "pullpass.io"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := in.InstallPlugin(); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Configure([]string{"registry.example.com:5000/team"}); err != nil {
			t.Fatal(err)
		}
		err = plugin.RegisterCredentialProviderPlugins(cfg, filepath.Join(d, "bin"),
			func(string, string, *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
				return nil, nil
			},
			func(string, string) (*corev1.ServiceAccount, error) { return nil, nil })
		if err != nil {
			t.Fatalf("the kubelet refuses the config (directory %v): %v", dir, err)
		}
	}
}
