package certs_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pullpass/pullpass/webhook/certs"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func setup(t *testing.T) (*fake.Clientset, *clock, func() *certs.Manager) {
	client := fake.NewClientset(&admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "pullpass"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a.pullpass.io"}, {Name: "b.pullpass.io"}},
	})
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	mk := func() *certs.Manager {
		m, err := certs.New(certs.Config{
			Client: client, Namespace: "pullpass", SecretName: "tls", WebhookConfigName: "pullpass",
			DNSNames: []string{"pullpass-webhook.pullpass.svc"}, IPs: []net.IP{net.ParseIP("127.0.0.1")},
			CAValidity: 300 * 24 * time.Hour, CertValidity: 30 * 24 * time.Hour, Now: clk.now,
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	return client, clk, mk
}

// verify checks that the served certificate chains to the bundle in the webhook configuration,
// as the API server would check it, at the given time.
func verify(t *testing.T, client *fake.Clientset, m *certs.Manager, at time.Time) *x509.Certificate {
	t.Helper()
	cert, err := m.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), "pullpass", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, wh := range cfg.Webhooks {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(wh.ClientConfig.CABundle) {
			t.Fatalf("webhook %s has no CA bundle", wh.Name)
		}
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "pullpass-webhook.pullpass.svc", CurrentTime: at}); err != nil {
			t.Fatalf("webhook %s: the served certificate does not verify: %v", wh.Name, err)
		}
	}
	return cert.Leaf
}

func TestEnsureCreatesRenewsAndSharesTheSecret(t *testing.T) {
	client, clk, mk := setup(t)
	ctx := context.Background()
	m := mk()
	if m.Ready() {
		t.Fatal("ready before Ensure")
	}
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	first := verify(t, client, m, clk.t)
	if !first.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Fatalf("IP SANs %v", first.IPAddresses)
	}

	// A second replica uses the same Secret rather than making its own.
	m2 := mk()
	if err := m2.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if c := verify(t, client, m2, clk.t); !c.Equal(first) {
		t.Fatal("a second replica made a new certificate instead of sharing the Secret")
	}

	// Nothing changes while the certificate is fresh.
	clk.t = clk.t.Add(10 * 24 * time.Hour)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if c := verify(t, client, m, clk.t); !c.Equal(first) {
		t.Fatal("renewed a fresh certificate")
	}

	// Within RenewBefore of expiry (a third of 30 days), it renews, without a restart.
	clk.t = clk.t.Add(11 * 24 * time.Hour)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	renewed := verify(t, client, m, clk.t)
	if renewed.Equal(first) || !renewed.NotAfter.After(first.NotAfter) {
		t.Fatal("the certificate was not renewed before expiry")
	}

	// Near the CA's end, a new CA is made and the old one stays in the bundle meanwhile.
	clk.t = clk.t.Add(270 * 24 * time.Hour)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	verify(t, client, m, clk.t)
	s, _ := client.CoreV1().Secrets("pullpass").Get(ctx, "tls", metav1.GetOptions{})
	if pool := bytes.Count(s.Data[certs.KeyCACert], []byte("BEGIN CERTIFICATE")); pool != 2 {
		t.Fatalf("CA bundle holds %d certificates during the CA overlap, want 2", pool)
	}
}

func TestEnsureReplacesAGarbledSecret(t *testing.T) {
	client, clk, mk := setup(t)
	ctx := context.Background()
	_, err := client.CoreV1().Secrets("pullpass").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tls", Namespace: "pullpass"},
		Data:       map[string][]byte{"tls.crt": []byte("garbage"), "ca.crt": []byte("junk")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := mk()
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	verify(t, client, m, clk.t)
}

// A Secret of another type (the CLI once wrote a docker config over it, #24) cannot be updated
// into a TLS Secret, its type being immutable: the manager replaces it, says why at warn, and
// serves.
func TestEnsureReplacesASecretOfAnotherType(t *testing.T) {
	client, clk, _ := setup(t)
	// As the API server does: an update never changes a Secret's type.
	client.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.UpdateAction).GetObject().(*corev1.Secret)
		old, err := client.Tracker().Get(corev1.SchemeGroupVersion.WithResource("secrets"), s.Namespace, s.Name)
		if err == nil && old.(*corev1.Secret).Type != s.Type {
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: "Secret"}, s.Name,
				field.ErrorList{field.Invalid(field.NewPath("type"), s.Type, "field is immutable")})
		}
		return false, nil, nil
	})
	ctx := context.Background()
	data := `{"auths":{"registry.example.org":{"username":"bot","password":"old-s3cret-pw"}}}`
	_, err := client.CoreV1().Secrets("pullpass").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tls", Namespace: "pullpass", Labels: map[string]string{"app.kubernetes.io/managed-by": "pullpass"}},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(data)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	m, err := certs.New(certs.Config{
		Client: client, Namespace: "pullpass", SecretName: "tls", WebhookConfigName: "pullpass",
		DNSNames: []string{"pullpass-webhook.pullpass.svc"}, Now: clk.now,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ensure(ctx); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	verify(t, client, m, clk.t)
	s, err := client.CoreV1().Secrets("pullpass").Get(ctx, "tls", metav1.GetOptions{})
	if err != nil || s.Type != corev1.SecretTypeTLS || len(s.Data[corev1.DockerConfigJsonKey]) != 0 {
		t.Fatalf("secret after Ensure: %v, type %s", err, s.Type)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "kubernetes.io/dockerconfigjson") {
		t.Fatalf("no warning saying why the secret was replaced:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "old-s3cret-pw") {
		t.Fatalf("the old secret's contents were logged:\n%s", logs.String())
	}
}
