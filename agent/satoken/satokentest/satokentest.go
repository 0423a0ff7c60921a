// Package satokentest mints service account tokens as the API server does, for tests: RS256 with
// fixed test keys (testdata, made for these tests and used nowhere else), so the same claims
// always give the same token and golden files stay byte-for-byte.
package satokentest

import (
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/pullpass/pullpass/agent/satoken"
)

var (
	//go:embed testdata/issuer.key
	issuerKey []byte
	//go:embed testdata/impostor.key
	impostorKey []byte
)

// KeyID is the key ID both test keys are published and signed under: an impostor's token names
// the real key and fails on its signature alone.
const KeyID = "pullpass-test-key"

// Issuer signs tokens.
type Issuer struct {
	URL string
	key *rsa.PrivateKey
}

// New returns the cluster's issuer at url.
func New(url string) *Issuer { return &Issuer{URL: url, key: parse(issuerKey)} }

// Impostor returns an issuer at url that signs with another key under the same key ID.
func Impostor(url string) *Issuer { return &Issuer{URL: url, key: parse(impostorKey)} }

func parse(data []byte) *rsa.PrivateKey {
	b, _ := pem.Decode(data)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		panic(fmt.Sprintf("satokentest: test key: %v", err))
	}
	return k.(*rsa.PrivateKey)
}

// Keys is what the node agent would write for this issuer on node.
func (i *Issuer) Keys(node string) satoken.Keys {
	return satoken.Keys{
		Issuer: i.URL,
		JWKS:   jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &i.key.PublicKey, KeyID: KeyID, Algorithm: string(jose.RS256), Use: "sig"}}},
		Node:   node,
	}
}

// Claims of a token; the zero values of Issuer and Subject are the issuer's and the one the
// API server writes.
type Claims struct {
	Issuer                    string
	Subject                   string
	Audience                  []string
	Namespace, ServiceAccount string
	Pod, Node                 string
	IssuedAt, Expiry          time.Time
	// NoExpiry leaves exp out.
	NoExpiry bool
}

// Token signs c.
func (i *Issuer) Token(c Claims) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: i.key}, (&jose.SignerOptions{}).WithHeader("kid", KeyID).WithType("JWT"))
	if err != nil {
		panic(err)
	}
	public := jwt.Claims{Issuer: c.Issuer, Subject: c.Subject, Audience: c.Audience, IssuedAt: jwt.NewNumericDate(c.IssuedAt), NotBefore: jwt.NewNumericDate(c.IssuedAt)}
	if public.Issuer == "" {
		public.Issuer = i.URL
	}
	if public.Subject == "" && c.Namespace != "" {
		public.Subject = "system:serviceaccount:" + c.Namespace + ":" + c.ServiceAccount
	}
	if !c.NoExpiry {
		public.Expiry = jwt.NewNumericDate(c.Expiry)
	}
	k := map[string]any{}
	if c.Namespace != "" {
		k["namespace"] = c.Namespace
	}
	if c.ServiceAccount != "" {
		k["serviceaccount"] = map[string]string{"name": c.ServiceAccount, "uid": "00000000-0000-0000-0000-00000000000a"}
	}
	if c.Pod != "" {
		k["pod"] = map[string]string{"name": c.Pod, "uid": "00000000-0000-0000-0000-00000000000b"}
	}
	if c.Node != "" {
		k["node"] = map[string]string{"name": c.Node, "uid": "00000000-0000-0000-0000-00000000000c"}
	}
	tok, err := jwt.Signed(signer).Claims(public).Claims(map[string]any{"kubernetes.io": k}).Serialize()
	if err != nil {
		panic(err)
	}
	return tok
}
