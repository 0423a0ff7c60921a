package satoken_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullpass/pullpass/agent/satoken"
	"github.com/pullpass/pullpass/agent/satoken/satokentest"
)

const (
	issuerURL = "https://kubernetes.default.svc.cluster.local"
	audience  = "pullpass.io"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func claims(mutate func(*satokentest.Claims)) satokentest.Claims {
	c := satokentest.Claims{
		Audience: []string{audience}, Namespace: "team-a", ServiceAccount: "builder", Pod: "app-1", Node: "node-1",
		IssuedAt: now.Add(-time.Minute), Expiry: now.Add(10 * time.Minute),
	}
	if mutate != nil {
		mutate(&c)
	}
	return c
}

func TestVerify(t *testing.T) {
	issuer := satokentest.New(issuerURL)
	v, err := satoken.NewVerifier(issuer.Keys("node-1"), audience)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"valid", issuer.Token(claims(nil)), nil},
		{"valid among other audiences", issuer.Token(claims(func(c *satokentest.Claims) { c.Audience = []string{"vault", audience} })), nil},
		{"valid without a node claim", issuer.Token(claims(func(c *satokentest.Claims) { c.Node = "" })), nil},
		{"expired", issuer.Token(claims(func(c *satokentest.Claims) { c.IssuedAt, c.Expiry = now.Add(-time.Hour), now.Add(-2*time.Minute) })), satoken.ErrExpired},
		{"expired within the API server's leeway", issuer.Token(claims(func(c *satokentest.Claims) { c.Expiry = now.Add(-30 * time.Second) })), nil},
		{"not valid yet", issuer.Token(claims(func(c *satokentest.Claims) { c.IssuedAt = now.Add(5 * time.Minute) })), satoken.ErrNotYetValid},
		{"wrong audience", issuer.Token(claims(func(c *satokentest.Claims) { c.Audience = []string{"https://kubernetes.default.svc"} })), satoken.ErrAudience},
		{"bad signature", satokentest.Impostor(issuerURL).Token(claims(nil)), satoken.ErrSignature},
		{"another issuer", satokentest.New("https://oidc.example.com").Token(claims(nil)), satoken.ErrIssuer},
		{"missing namespace claim", issuer.Token(claims(func(c *satokentest.Claims) { c.Namespace, c.Subject = "", "system:serviceaccount:team-a:builder" })), satoken.ErrClaims},
		{"missing service account claim", issuer.Token(claims(func(c *satokentest.Claims) { c.ServiceAccount = "" })), satoken.ErrClaims},
		{"subject of another namespace", issuer.Token(claims(func(c *satokentest.Claims) { c.Subject = "system:serviceaccount:team-b:builder" })), satoken.ErrClaims},
		{"no expiry", issuer.Token(claims(func(c *satokentest.Claims) { c.NoExpiry = true })), satoken.ErrClaims},
		{"bound to a pod of another node", issuer.Token(claims(func(c *satokentest.Claims) { c.Node = "node-2" })), satoken.ErrNode},
		{"not a JWT", "hello", satoken.ErrMalformed},
		{"unsigned", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", satoken.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(tt.token, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %+v, %v; want %v", c, err, tt.want)
			}
			if err != nil && len(tt.token) > 20 && strings.Contains(err.Error(), tt.token[len(tt.token)-20:]) {
				t.Fatalf("the error %q quotes the token", err)
			}
			if tt.want == nil && (c.Namespace != "team-a" || c.ServiceAccount != "builder") {
				t.Fatalf("claims %+v", c)
			}
		})
	}
}

func TestKeysFile(t *testing.T) {
	path := satoken.KeysPath(filepath.Join(t.TempDir(), "credentials.json"))
	if _, err := satoken.ReadKeys(path); !errors.Is(err, satoken.ErrNoKeys) {
		t.Fatalf("no file: %v", err)
	}
	issuer := satokentest.New(issuerURL)
	if err := satoken.WriteKeys(path, issuer.Keys("node-1")); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	keys, err := satoken.ReadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := satoken.NewVerifier(keys, audience)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(issuer.Token(claims(nil)), now); err != nil {
		t.Fatalf("keys read back do not verify: %v", err)
	}
	if err := os.WriteFile(path, []byte(`{"version":7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := satoken.ReadKeys(path); err == nil || !strings.Contains(err.Error(), "format version 7") {
		t.Fatalf("newer format: %v", err)
	}
	if _, err := satoken.NewVerifier(satoken.Keys{Issuer: issuerURL}, audience); err == nil {
		t.Fatal("a verifier without keys")
	}
}
