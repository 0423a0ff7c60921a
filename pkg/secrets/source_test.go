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
		{"docker config, glob host", dockerSecret(t, two), []string{"*.gitlab.com"}, "gl", "glp"},
		{"docker config, only entry", dockerSecret(t, dockerconfig.ForHost("x.io", "u", "p")), []string{"*.azurecr.io"}, "u", "p"},
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
		"no entry":          {dockerSecret(t, two), []string{"c.io"}, "no entry for [c.io]"},
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
	if s := fmt.Sprint(secrets.Credentials{Username: "u", Password: pw}); strings.Contains(s, pw) {
		t.Fatalf("Credentials print their password: %s", s)
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
