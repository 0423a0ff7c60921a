package certs_test

import (
	"crypto/tls"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/pullpass/pullpass/webhook/certs"
)

// Files (the cert-manager path) serves the pair on disk and picks up a renewed one.
func TestFilesReloads(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(serial int) []byte {
		client := fake.NewClientset()
		m, err := certs.New(certs.Config{Client: client, Namespace: "ns", SecretName: "s", IPs: []net.IP{net.ParseIP("127.0.0.1")}})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Ensure(t.Context()); err != nil {
			t.Fatal(err)
		}
		c, _ := m.GetCertificate(&tls.ClientHelloInfo{})
		s, _ := client.CoreV1().Secrets("ns").Get(t.Context(), "s", metaGet)
		if err := os.WriteFile(certFile, s.Data["tls.crt"], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, s.Data["tls.key"], 0o600); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(time.Duration(serial) * time.Second)
		_ = os.Chtimes(certFile, mt, mt)
		return c.Certificate[0]
	}
	f := &certs.Files{CertFile: certFile, KeyFile: keyFile}
	if f.Ready() {
		t.Fatal("ready before loading")
	}
	first := write(1)
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	if c, err := f.GetCertificate(nil); err != nil || string(c.Certificate[0]) != string(first) {
		t.Fatalf("serving %v, %v; want the first certificate", c, err)
	}
	second := write(2)
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.GetCertificate(nil); string(c.Certificate[0]) != string(second) {
		t.Fatal("the renewed certificate was not picked up")
	}
}

var metaGet = metav1.GetOptions{}
