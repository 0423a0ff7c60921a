package secrets_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/secrets"
)

func dockerSecret(t *testing.T, cfg *dockerconfig.Config) *corev1.Secret {
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "n"}, Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
}

func TestFromSecret(t *testing.T) {
	two := &dockerconfig.Config{Auths: map[string]dockerconfig.AuthEntry{
		"https://ghcr.io":     {Username: "gh", Password: "ghp"},
		"registry.gitlab.com": {Username: "gl", Password: "glp"},
	}}
	tests := []struct {
		name   string
		secret *corev1.Secret
		hosts  []string
		user   string
		pass   string
	}{
		{"docker config, exact key", dockerSecret(t, two), []string{"registry.gitlab.com"}, "gl", "glp"},
		{"docker config, key with scheme", dockerSecret(t, two), []string{"ghcr.io"}, "gh", "ghp"},
		{"docker config, glob key", dockerSecret(t, dockerconfig.ForHost("*.gitlab.com", "gl", "glp")), []string{"*.gitlab.com"}, "gl", "glp"},
		{"basic-auth", &corev1.Secret{Type: corev1.SecretTypeBasicAuth, Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}}, []string{"r.io"}, "u", "p"},
		{"opaque", &corev1.Secret{Data: map[string][]byte{"username": []byte("$oauthtoken"), "password": []byte("nvapi-x")}}, []string{"nvcr.io"}, "$oauthtoken", "nvapi-x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := secrets.FromSecret(tt.secret, tt.hosts)
			if err != nil || c.Username != tt.user || c.Password != tt.pass {
				t.Fatalf("FromSecret = %v, %v; want %s/%s", c, err, tt.user, tt.pass)
			}
		})
	}
}

func TestFromSecretErrorsNeverLeak(t *testing.T) {
	const pw = "hunter2-very-secret"
	bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "n"}, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"r.io":{"auth":"` + pw + `"}}}`)}}
	two := &dockerconfig.Config{Auths: map[string]dockerconfig.AuthEntry{"a.io": {Username: "u", Password: pw}, "b.io": {Username: "u", Password: pw}}}
	for name, tt := range map[string]struct {
		s     *corev1.Secret
		hosts []string
		want  string
	}{
		"bad docker config": {bad, []string{"r.io"}, `secret n/s: docker config: entry "r.io"`},
		"no entry":          {dockerSecret(t, two), []string{"c.io"}, "no entry names the registry's hosts [c.io] (it has entries for [a.io b.io])"},
		"no keys":           {&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "n"}, Data: map[string][]byte{"token": []byte(pw)}}, nil, "has neither"},
	} {
		_, err := secrets.FromSecret(tt.s, tt.hosts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Errorf("%s: error leaks the password: %v", name, err)
		}
	}
}

// Pullpass's own Secrets are told apart from credential sources, and the CLI's source for one
// registry from everything else that carries the managed-by label.
func TestPullpassOwnSecrets(t *testing.T) {
	labelled := func(name string, labels map[string]string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "pullpass", Labels: labels},
			Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}}
	}
	managed := map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue}
	source := func(reg string) map[string]string {
		return map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRegistry: reg, secrets.LabelRole: secrets.RoleSource}
	}
	pull := map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRegistry: "ghcr.io", secrets.LabelRole: secrets.RolePullSecret}
	for _, tt := range []struct {
		name     string
		s        *corev1.Secret
		source   bool // CheckSource accepts it
		madeForA bool // MadeFor(s, "a")
	}{
		{"a user's own", labelled("creds", nil), true, false},
		{"the CLI's, for a", labelled("a", source("a")), true, true},
		{"the CLI's, for b", labelled("a", source("b")), true, false},
		{"the webhook's TLS Secret", labelled("pullpass-webhook-tls", managed), false, false},
		{"the webhook's TLS Secret renamed", labelled("webhook-cert", managed), false, false},
		{"the TLS Secret with its role", labelled("webhook-cert", map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRole: secrets.RoleWebhookTLS}), false, false},
		{"a pull secret", labelled("pullpass-ghcr.io", pull), false, false},
		{"a pull secret's name, unlabelled", labelled("pullpass-ghcr.io", nil), false, false},
		{"registry and role without managed-by", labelled("a", map[string]string{secrets.LabelRegistry: "a", secrets.LabelRole: secrets.RoleSource}), true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := secrets.CheckSource(tt.s)
			if (err == nil) != tt.source {
				t.Errorf("CheckSource = %v, want source %t", err, tt.source)
			}
			if _, ferr := secrets.FromSecret(tt.s, []string{"r.io"}); (ferr == nil) != tt.source {
				t.Errorf("FromSecret: %v, want source %t", ferr, tt.source)
			}
			if got := secrets.MadeFor(tt.s, "a"); got != tt.madeForA {
				t.Errorf("MadeFor(a) = %t, want %t", got, tt.madeForA)
			}
		})
	}
}

// An entry is used only for the hosts its key names, in any form docker, podman or the kubelet
// read alike; never the only entry for another host, nor a narrower key for a wider pattern: the
// verifier and the kubelet would send those credentials to the registry's hosts.
func TestFromSecretUsesAnEntryOnlyForItsHosts(t *testing.T) {
	const pw = "p4ss-for-the-key"
	for _, tt := range []struct {
		key   string
		hosts []string
		ok    bool
	}{
		{"https://index.docker.io/v1/", []string{"docker.io"}, true},
		{"docker.io", []string{"index.docker.io"}, true},
		{"registry-1.docker.io", []string{"https://index.docker.io/v1/"}, true},
		{"index.docker.io", []string{"docker.io/library"}, true},
		{"https://ghcr.io/", []string{"ghcr.io"}, true},
		{"ghcr.io", []string{"ghcr.io/org/"}, true},
		{"http://reg.local:5000/v2/team", []string{"reg.local:5000/team/app"}, true},
		{"my.docker.registry.io", []string{"https://my.docker.registry.io"}, true}, // Koyeb's
		{"*.azurecr.io", []string{"team.azurecr.io"}, true},
		{"*.gitlab.com", []string{"*.gitlab.com"}, true},
		{"ghcr.io", []string{"quay.io", "ghcr.io"}, true},

		{"x.io", []string{"*.azurecr.io"}, false}, // the only entry, of another host
		{"evil.example.com", []string{"ghcr.io"}, false},
		{"registry.gitlab.com", []string{"*.gitlab.com"}, false}, // a wider pattern: other hosts too
		{"ghcr.io/org", []string{"ghcr.io"}, false},
		{"ghcr.io/org/", []string{"ghcr.io/other"}, false},
		{"reg.local:5000", []string{"reg.local"}, false},
		{"reg.local", []string{"reg.local:5000"}, false},
		{"quay.io", []string{"docker.io"}, false},
		{"a*.example.com", []string{"*.example.com"}, false},
	} {
		s := dockerSecret(t, dockerconfig.ForHost(tt.key, "u", pw))
		c, err := secrets.FromSecret(s, tt.hosts)
		switch {
		case tt.ok && (err != nil || c.Password != pw):
			t.Errorf("key %q for hosts %v: %v, %v; want its entry", tt.key, tt.hosts, c, err)
		case !tt.ok && err == nil:
			t.Errorf("key %q for hosts %v: its entry was used", tt.key, tt.hosts)
		case !tt.ok && (!strings.Contains(err.Error(), fmt.Sprint(tt.hosts)) || strings.Contains(err.Error(), pw)):
			t.Errorf("key %q for hosts %v: error %q should name the hosts, never the password", tt.key, tt.hosts, err)
		}
	}
}
