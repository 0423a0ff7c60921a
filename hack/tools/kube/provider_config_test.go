package kube

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kubernetes/pkg/credentialprovider/plugin"

	"sigs.k8s.io/yaml"

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
			// The kubelet's registry of providers is the process's: other tests of this package
			// look images up through these providers too, so they answer as an API server would.
			func(string, string, *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
				return &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{Token: "not-a-token",
					ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Hour))}}, nil
			},
			func(namespace, name string) (*corev1.ServiceAccount, error) {
				return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: "uid"}}, nil
			})
		if err != nil {
			t.Fatalf("the kubelet refuses the config (directory %v): %v", dir, err)
		}
	}
}

// install.Validate, which keeps the agent from writing a config the kubelet would refuse (and
// so from restarting a kubelet into a crash loop), agrees with the kubelet's own loader and
// validation on configs it accepts and on each rule it refuses by.
func TestValidateAgreesWithTheKubelet(t *testing.T) {
	d := t.TempDir()
	const head = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
	const a = "- name: NAME\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  matchImages: ['*', '*.*', 'registry.internal:5000/team']\n  defaultCacheDuration: 1m\n"
	const tok = a + "  tokenAttributes:\n    serviceAccountTokenAudience: pullpass.io\n    cacheType: ServiceAccount\n    requireServiceAccount: true\n"
	cases := map[string]struct {
		doc    string
		accept bool
	}{
		"valid":                  {head + a, true},
		"valid with tokens":      {head + tok + "    optionalServiceAccountAnnotationKeys: [pullpass.io/registries, eks.amazonaws.com/ecr-role-arn]\n", true},
		"duplicate name":         {head + a + a, false},
		"binary missing":         {head + strings.Replace(a, "name: NAME", "name: NAME-missing", 1), false},
		"provider apiVersion":    {head + strings.Replace(a, "kubelet.k8s.io/v1", "kubelet.k8s.io/v2", 1), false},
		"no matchImages":         {head + strings.Replace(a, "['*', '*.*', 'registry.internal:5000/team']", "[]", 1), false},
		"no cache duration":      {head + strings.Replace(a, "  defaultCacheDuration: 1m\n", "", 1), false},
		"negative duration":      {head + strings.Replace(a, "1m", "-1m", 1), false},
		"tokens, no audience":    {head + strings.Replace(tok, "pullpass.io", "''", 1), false},
		"tokens, bad cache type": {head + strings.Replace(tok, "ServiceAccount", "Pod", 1), false},
		"tokens, no requireSA":   {head + strings.Replace(tok, "    requireServiceAccount: true\n", "", 1), false},
		"tokens, bad annotation": {head + tok + "    optionalServiceAccountAnnotationKeys: ['a b']\n", false},
		"tokens, key twice":      {head + tok + "    requiredServiceAccountAnnotationKeys: [x.io/y]\n    optionalServiceAccountAnnotationKeys: [x.io/y]\n", false},
	}
	i := 0
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			// The kubelet's registry of providers is global: a name of its own per case.
			i++
			pname := fmt.Sprintf("validate-%d", i)
			doc := strings.ReplaceAll(c.doc, "NAME", pname)
			bin := filepath.Join(d, pname+"-bin")
			if err := os.MkdirAll(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(bin, pname), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(d, pname+".yaml")
			if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				t.Fatal(err)
			}
			ours := install.Validate(m, bin, nil, nil)
			kubelet := plugin.RegisterCredentialProviderPlugins(path, bin,
				func(string, string, *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
					return nil, nil
				},
				func(string, string) (*corev1.ServiceAccount, error) { return nil, nil })
			if (kubelet == nil) != c.accept || (ours == nil) != c.accept {
				t.Fatalf("want accepted %v; the kubelet: %v; install.Validate: %v", c.accept, kubelet, ours)
			}
		})
	}
}
