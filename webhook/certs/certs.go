// Package certs gives the webhook its TLS without manual steps: it keeps a CA and a serving
// certificate in a Secret, writes the CA bundle into the MutatingWebhookConfiguration, and renews
// the certificate before it expires, without a restart. Several replicas share the Secret.
package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pullpass/pullpass/pkg/secrets"
)

// Keys of the Secret. It is a kubernetes.io/tls Secret with the CA beside the pair.
const (
	KeyCACert = "ca.crt"
	KeyCAKey  = "ca.key"
)

// Config configures the Manager.
type Config struct {
	Client     kubernetes.Interface
	Namespace  string
	SecretName string
	// DNSNames and IPs go into the serving certificate.
	DNSNames []string
	IPs      []net.IP
	// WebhookConfigName is the MutatingWebhookConfiguration whose caBundle is kept current.
	WebhookConfigName string
	CAValidity        time.Duration // default 10 years
	CertValidity      time.Duration // default 1 year
	// RenewBefore renews a certificate when it has less than this left (default a third of
	// its validity). The CA is renewed the same way, and the old CA stays in the bundle until it
	// expires, so clients never see a certificate they cannot verify.
	RenewBefore   time.Duration
	CheckInterval time.Duration // default 1 minute
	Now           func() time.Time
	Logger        *slog.Logger
}

func (c *Config) defaults() error {
	if c.Client == nil || c.Namespace == "" || c.SecretName == "" {
		return errors.New("client, namespace and secret name are required")
	}
	if len(c.DNSNames) == 0 && len(c.IPs) == 0 {
		return errors.New("at least one DNS name or IP is required")
	}
	if c.CAValidity == 0 {
		c.CAValidity = 10 * 365 * 24 * time.Hour
	}
	if c.CertValidity == 0 {
		c.CertValidity = 365 * 24 * time.Hour
	}
	if c.RenewBefore == 0 {
		c.RenewBefore = c.CertValidity / 3
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Manager keeps the serving certificate current.
type Manager struct {
	cfg  Config
	cert atomic.Pointer[tls.Certificate]
}

// New returns a Manager.
func New(cfg Config) (*Manager, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	return &Manager{cfg: cfg}, nil
}

// GetCertificate serves the current certificate (for tls.Config).
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := m.cert.Load()
	if c == nil {
		return nil, errors.New("no serving certificate yet")
	}
	return c, nil
}

// Ready reports whether a certificate is loaded.
func (m *Manager) Ready() bool { return m.cert.Load() != nil }

// Run ensures the certificate now and then every CheckInterval until ctx ends. It returns the
// first error only if no certificate could ever be loaded and ctx ended.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.CheckInterval)
	defer t.Stop()
	for {
		if err := m.Ensure(ctx); err != nil {
			m.cfg.Logger.Error("keeping the serving certificate", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ensure makes the Secret hold a valid CA and serving certificate, loads the certificate and
// writes the CA bundle into the webhook configuration.
func (m *Manager) Ensure(ctx context.Context) error {
	api := m.cfg.Client.CoreV1().Secrets(m.cfg.Namespace)
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := api.Get(ctx, m.cfg.SecretName, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading secret %s/%s: %w", m.cfg.Namespace, m.cfg.SecretName, err)
		}
		exists := err == nil
		if exists && cur.Type != corev1.SecretTypeTLS {
			// A Secret's type is immutable, so no update can ever make this one usable: without
			// replacing it, no replica would become Ready.
			m.cfg.Logger.Warn("replacing the serving certificate secret: it is not a kubernetes.io/tls Secret",
				"secret", m.cfg.SecretName, "type", string(cur.Type))
			err := api.Delete(ctx, m.cfg.SecretName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return fmt.Errorf("deleting secret %s/%s to replace it: %w", m.cfg.Namespace, m.cfg.SecretName, err)
			}
			continue // gone, or changed since it was read (another replica): read it again
		}
		var data map[string][]byte
		if exists {
			data = cur.Data
		}
		next, changed, err := m.renew(data)
		if err != nil {
			return err
		}
		if changed {
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: m.cfg.SecretName, Namespace: m.cfg.Namespace, Labels: map[string]string{
					secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRole: secrets.RoleWebhookTLS}},
				Type: corev1.SecretTypeTLS,
				Data: next,
			}
			if exists {
				s.ResourceVersion = cur.ResourceVersion
				_, err = api.Update(ctx, s, metav1.UpdateOptions{})
			} else {
				_, err = api.Create(ctx, s, metav1.CreateOptions{})
			}
			if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
				continue // another replica wrote it: use theirs
			}
			if err != nil {
				return fmt.Errorf("writing secret %s/%s: %w", m.cfg.Namespace, m.cfg.SecretName, err)
			}
			m.cfg.Logger.Info("wrote the webhook's serving certificate", "secret", m.cfg.SecretName)
		}
		pair, err := tls.X509KeyPair(next[corev1.TLSCertKey], next[corev1.TLSPrivateKeyKey])
		if err != nil {
			return fmt.Errorf("loading the serving certificate: %w", err)
		}
		if old := m.cert.Load(); old == nil || !bytes.Equal(old.Certificate[0], pair.Certificate[0]) {
			m.cert.Store(&pair)
			m.cfg.Logger.Info("serving certificate loaded", "notAfter", pair.Leaf.NotAfter)
		}
		return m.patchCABundle(ctx, next[KeyCACert])
	}
	return errors.New("the serving certificate secret kept changing under us")
}

// renew returns the Secret's data with anything missing, invalid or expiring replaced.
func (m *Manager) renew(data map[string][]byte) (map[string][]byte, bool, error) {
	now := m.cfg.Now()
	out := map[string][]byte{}
	for k, v := range data {
		out[k] = v
	}
	changed := false
	ca, caKey, caOK := parseCA(data, now.Add(m.cfg.RenewBefore))
	if !caOK {
		var err error
		var caPEM, keyPEM []byte
		if ca, caKey, caPEM, keyPEM, err = newCA(now, m.cfg.CAValidity); err != nil {
			return nil, false, err
		}
		// Keep still-valid old CAs in the bundle for the overlap.
		bundle := caPEM
		for _, old := range certsIn(data[KeyCACert]) {
			if now.Before(old.NotAfter) {
				bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: old.Raw})...)
			}
		}
		out[KeyCACert], out[KeyCAKey] = bundle, keyPEM
		changed = true
	}
	if changed || !m.certValid(data, ca, now) {
		certPEM, keyPEM, err := newServingCert(now, m.cfg.CertValidity, ca, caKey, m.cfg.DNSNames, m.cfg.IPs)
		if err != nil {
			return nil, false, err
		}
		out[corev1.TLSCertKey], out[corev1.TLSPrivateKeyKey] = certPEM, keyPEM
		changed = true
	}
	return out, changed, nil
}

// certValid reports whether the serving certificate is signed by ca, names what it must, and
// is not due for renewal.
func (m *Manager) certValid(data map[string][]byte, ca *x509.Certificate, now time.Time) bool {
	pair, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return false
	}
	leaf := pair.Leaf
	if leaf.CheckSignatureFrom(ca) != nil || now.Add(m.cfg.RenewBefore).After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return false
	}
	for _, d := range m.cfg.DNSNames {
		if !slices.Contains(leaf.DNSNames, d) {
			return false
		}
	}
	for _, ip := range m.cfg.IPs {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func (m *Manager) patchCABundle(ctx context.Context, bundle []byte) error {
	if m.cfg.WebhookConfigName == "" {
		return nil
	}
	api := m.cfg.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	for attempt := 0; attempt < 5; attempt++ {
		cfg, err := api.Get(ctx, m.cfg.WebhookConfigName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", m.cfg.WebhookConfigName, err)
		}
		changed := false
		for i := range cfg.Webhooks {
			if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, bundle) {
				cfg.Webhooks[i].ClientConfig.CABundle = bundle
				changed = true
			}
		}
		if !changed {
			return nil
		}
		_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing the CA bundle into %s: %w", m.cfg.WebhookConfigName, err)
		}
		m.cfg.Logger.Info("CA bundle written", "webhookConfiguration", m.cfg.WebhookConfigName)
		return nil
	}
	return fmt.Errorf("MutatingWebhookConfiguration %s kept changing", m.cfg.WebhookConfigName)
}

// parseCA returns the newest CA of the bundle with its key, if it is valid past validUntil.
func parseCA(data map[string][]byte, validUntil time.Time) (*x509.Certificate, *ecdsa.PrivateKey, bool) {
	cas := certsIn(data[KeyCACert])
	block, _ := pem.Decode(data[KeyCAKey])
	if len(cas) == 0 || block == nil {
		return nil, nil, false
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, false
	}
	ca := cas[0]
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) || !ca.IsCA || validUntil.After(ca.NotAfter) {
		return nil, nil, false
	}
	return ca, key, true
}

func certsIn(bundle []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, bundle = pem.Decode(bundle)
		if block == nil {
			return out
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newCA(now time.Time, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("pullpass-webhook-ca@%d", now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return ca, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func newServingCert(now time.Time, validity time.Duration, ca *x509.Certificate, caKey *ecdsa.PrivateKey, dns []string, ips []net.IP) ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	cn := "pullpass-webhook"
	if len(dns) > 0 {
		cn = dns[0]
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}
