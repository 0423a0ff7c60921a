// Package satoken verifies the service account tokens the kubelet hands the credential provider
// plugin (KEP-4412), so that the plugin answers for the namespace and service account a token
// proves, never for what a caller says. The node agent fetches the cluster's service account
// issuer and its public keys from the API server (OIDC discovery) and writes them beside the
// node cache (Keys); the plugin reads them and verifies each token offline: signature, issuer,
// audience, expiry (with the API server's own leeway of one minute), and the namespace and
// service account claims. The token's text never appears in an error.
package satoken

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/pullpass/pullpass/agent/atomicfile"
)

// KeysVersion is the format version of the keys file; a reader refuses others.
const KeysVersion = 1

// Keys is what the plugin needs to verify tokens: the issuer and its public keys as the API
// server publishes them (/.well-known/openid-configuration, /openid/v1/jwks), and the node's
// name (a pod-bound token names its node; one from another node is refused).
type Keys struct {
	Version int                `json:"version"`
	Issuer  string             `json:"issuer"`
	JWKS    jose.JSONWebKeySet `json:"jwks"`
	Node    string             `json:"node,omitempty"`
	// FetchedAt is when the agent read them from the API server.
	FetchedAt time.Time `json:"fetchedAt"`
}

// KeysPath is the keys file beside the node cache.
func KeysPath(cachePath string) string {
	return filepath.Join(filepath.Dir(cachePath), "issuer-keys.json")
}

// WriteKeys replaces path with k atomically (mode 0600: the plugin runs as root).
func WriteKeys(path string, k Keys) error {
	k.Version = KeysVersion
	return atomicfile.WriteJSON(path, k, 0o600)
}

// ErrNoKeys is returned by ReadKeys when the agent has not written keys yet.
var ErrNoKeys = errors.New("issuer keys: not fetched by the node agent yet")

// ReadKeys reads the keys file.
func ReadKeys(path string) (Keys, error) {
	var k Keys
	if err := atomicfile.ReadJSON(path, "issuer keys", &k); errors.Is(err, os.ErrNotExist) {
		return Keys{}, ErrNoKeys
	} else if err != nil {
		return Keys{}, err
	}
	if k.Version != KeysVersion {
		return Keys{}, fmt.Errorf("issuer keys %s: format version %d, this reader knows %d", path, k.Version, KeysVersion)
	}
	return k, nil
}

// Claims are what a verified token proves.
type Claims struct {
	Namespace         string
	ServiceAccount    string
	ServiceAccountUID string
	Pod               string
	Node              string
	Expiry            time.Time
}

// Reasons a token is refused. Each error of Verify wraps one of them.
var (
	ErrMalformed   = errors.New("the token is not a signed JWT")
	ErrSignature   = errors.New("the token's signature is not the cluster issuer's")
	ErrIssuer      = errors.New("the token is from another issuer")
	ErrAudience    = errors.New("the token is not for pullpass's audience")
	ErrExpired     = errors.New("the token has expired")
	ErrNotYetValid = errors.New("the token is not valid yet")
	ErrClaims      = errors.New("the token names no service account")
	ErrNode        = errors.New("the token is bound to a pod of another node")
)

// Signature algorithms the API server signs with (RSA or ECDSA keys).
var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512}

// Verifier checks tokens against one issuer's keys.
type Verifier struct {
	keys     Keys
	audience string
}

// NewVerifier returns a Verifier for tokens of keys' issuer with audience.
func NewVerifier(keys Keys, audience string) (*Verifier, error) {
	if keys.Issuer == "" || len(keys.JWKS.Keys) == 0 {
		return nil, errors.New("invalid configuration: the issuer and its keys are required")
	}
	if audience == "" {
		return nil, errors.New("invalid configuration: the audience is required")
	}
	return &Verifier{keys: keys, audience: audience}, nil
}

// the claims of a Kubernetes service account token that pullpass reads.
type private struct {
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
		Pod *struct {
			Name string `json:"name"`
		} `json:"pod"`
		Node *struct {
			Name string `json:"name"`
		} `json:"node"`
	} `json:"kubernetes.io"`
}

// Verify checks token at now and returns what it proves.
func (v *Verifier) Verify(token string, now time.Time) (Claims, error) {
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil || len(tok.Headers) != 1 {
		return Claims{}, ErrMalformed
	}
	var public jwt.Claims
	var priv private
	if err := v.claims(tok, &public, &priv); err != nil {
		return Claims{}, err
	}
	err = public.Validate(jwt.Expected{Issuer: v.keys.Issuer, AnyAudience: jwt.Audience{v.audience}, Time: now})
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return Claims{}, ErrIssuer
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Claims{}, ErrAudience
	case errors.Is(err, jwt.ErrExpired):
		return Claims{}, ErrExpired
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Claims{}, ErrNotYetValid
	default:
		return Claims{}, fmt.Errorf("%w: its time claims are not valid", ErrClaims)
	}
	if public.Expiry == nil {
		return Claims{}, fmt.Errorf("%w: it has no expiry", ErrClaims)
	}
	k := priv.Kubernetes
	if k.Namespace == "" || k.ServiceAccount.Name == "" {
		return Claims{}, fmt.Errorf("%w: no namespace or service account claim", ErrClaims)
	}
	// The subject says the same, as the API server writes it.
	if public.Subject != "system:serviceaccount:"+k.Namespace+":"+k.ServiceAccount.Name {
		return Claims{}, fmt.Errorf("%w: the subject and the namespace claims disagree", ErrClaims)
	}
	c := Claims{Namespace: k.Namespace, ServiceAccount: k.ServiceAccount.Name, ServiceAccountUID: k.ServiceAccount.UID, Expiry: public.Expiry.Time()}
	if k.Pod != nil {
		c.Pod = k.Pod.Name
	}
	if k.Node != nil {
		c.Node = k.Node.Name
		if v.keys.Node != "" && c.Node != v.keys.Node {
			return Claims{}, ErrNode
		}
	}
	return c, nil
}

// claims checks the signature with the key the header names (every key when it names none)
// and decodes the claims.
func (v *Verifier) claims(tok *jwt.JSONWebToken, dest ...any) error {
	kid := tok.Headers[0].KeyID
	for i := range v.keys.JWKS.Keys {
		k := &v.keys.JWKS.Keys[i]
		if kid != "" && k.KeyID != kid {
			continue
		}
		if err := tok.Claims(k.Key, dest...); err == nil {
			return nil
		}
	}
	return ErrSignature
}
