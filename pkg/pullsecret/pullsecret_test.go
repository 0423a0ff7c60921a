package pullsecret_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/secrets"
)

func TestBuild(t *testing.T) {
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "hub"}, Spec: v1alpha1.RegistrySpec{Hosts: []string{"https://index.docker.io/v1/", "*.example.com:5000/team"}}}
	s, err := pullsecret.Build("shop", reg, userpass.Credentials{Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "pullpass-hub" || s.Namespace != "shop" || s.Type != corev1.SecretTypeDockerConfigJson {
		t.Fatalf("secret %s/%s type %s", s.Namespace, s.Name, s.Type)
	}
	cfg, err := dockerconfig.Parse(s.Data[corev1.DockerConfigJsonKey])
	if err != nil {
		t.Fatal(err)
	}
	// One key per pattern, canonical (the kubelet globs pull secret keys too).
	for _, key := range []string{"docker.io", "*.example.com:5000/team"} {
		e, ok := cfg.Auths[key]
		if !ok || e.Username != "u" || e.Password != "p" {
			t.Errorf("key %q: %v %t", key, e, ok)
		}
	}
	if len(cfg.Auths) != 2 {
		t.Errorf("keys %v", cfg.Hosts())
	}
	if !pullsecret.UpToDate(s, s) {
		t.Fatal("a secret is not up to date with itself")
	}
	changed, _ := pullsecret.Build("shop", reg, userpass.Credentials{Username: "u", Password: "rotated"})
	if pullsecret.UpToDate(s, changed) {
		t.Fatal("a rotated password counts as up to date")
	}
	foreign := s.DeepCopy()
	delete(foreign.Labels, secrets.LabelManagedBy)
	if pullsecret.UpToDate(foreign, s) {
		t.Fatal("a secret pullpass does not own counts as up to date")
	}
	if n := pullsecret.Name(strings.Repeat("a", 300)); len(n) > 253 {
		t.Fatalf("name of %d characters", len(n))
	}
}

func TestKeys(t *testing.T) {
	for host, want := range map[string]string{
		"docker.io":                   "docker.io",
		"index.docker.io":             "docker.io",
		"registry-1.docker.io":        "docker.io",
		"https://index.docker.io/v1/": "docker.io",
		"docker.io/myorg":             "docker.io/myorg",
		"https://ghcr.io/":            "ghcr.io",
		"localhost:5443":              "localhost:5443",
	} {
		if got := strings.Join(pullsecret.Keys(host), " "); got != want {
			t.Errorf("Keys(%q) = %q, want %q", host, got, want)
		}
	}
}

// Only pullpass's own pull secret of a registry is one: a tenant can put any of the labels on a
// Secret of theirs, and a Registry can be named after another of pullpass's Secrets.
func TestIsTellsPullpassesPullSecretsFromLookAlikes(t *testing.T) {
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ghcr"}, Spec: v1alpha1.RegistrySpec{Hosts: []string{"ghcr.io"}}}
	built, err := pullsecret.Build("shop", reg, userpass.Credentials{Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	withLabels := func(l map[string]string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pullpass-ghcr", Namespace: "shop", Labels: l}}
	}
	cases := []struct {
		name string
		s    *corev1.Secret
		want bool
	}{
		{"built", built, true},
		{"withdrawn", pullsecret.Withdrawn("shop", reg), true},
		{"a tenant's, without managed-by", withLabels(map[string]string{secrets.LabelRegistry: "ghcr", secrets.LabelRole: secrets.RolePullSecret}), false},
		{"another registry's", withLabels(pullsecret.Labels("quay")), false},
		{"the webhook's TLS Secret", withLabels(map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRole: secrets.RoleWebhookTLS, secrets.LabelRegistry: "ghcr"}), false},
		{"a source the CLI made", withLabels(map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRole: secrets.RoleSource, secrets.LabelRegistry: "ghcr"}), false},
		{"no labels", withLabels(nil), false},
	}
	for _, c := range cases {
		if got := pullsecret.Is(c.s, "ghcr"); got != c.want {
			t.Errorf("%s: Is = %v, want %v", c.name, got, c.want)
		}
	}
	// The selectors find every pull secret of the registry, and of all registries; Is then
	// decides, since a selector cannot tell a tenant's look-alike.
	if !pullsecret.Selector("ghcr").Matches(labels.Set(built.Labels)) || !pullsecret.Selector("").Matches(labels.Set(built.Labels)) {
		t.Fatalf("the selectors miss the registry's own pull secret: %v", built.Labels)
	}
	if pullsecret.Selector("quay").Matches(labels.Set(built.Labels)) {
		t.Fatal("the selector of another registry matches")
	}
	if !pullsecret.HasRole(built) || pullsecret.HasRole(withLabels(map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue})) {
		t.Fatal("HasRole does not tell a pull secret's role")
	}
}
