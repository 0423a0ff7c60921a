package issuer_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pullpass/pullpass/agent/issuer"
	"github.com/pullpass/pullpass/agent/satoken"
	"github.com/pullpass/pullpass/agent/satoken/satokentest"
)

// api answers discovery paths from a map.
type api map[string]string

func (a api) Get(_ context.Context, path string) ([]byte, error) {
	v, ok := a[path]
	if !ok {
		return nil, errors.New("forbidden")
	}
	return []byte(v), nil
}

func TestKeysReachTheVerifier(t *testing.T) {
	iss := satokentest.New("https://kubernetes.default.svc.cluster.local")
	jwks, _ := json.Marshal(iss.Keys("").JWKS)
	a := api{issuer.ConfigurationPath: `{"issuer":"https://kubernetes.default.svc.cluster.local","jwks_uri":"https://x/openid/v1/jwks"}`, issuer.JWKSPath: string(jwks)}
	path := satoken.KeysPath(filepath.Join(t.TempDir(), "credentials.json"))
	k, err := issuer.New(issuer.Config{API: a, Path: path, Node: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	keys, err := satoken.ReadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := satoken.NewVerifier(keys, "pullpass.io")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := iss.Token(satokentest.Claims{Audience: []string{"pullpass.io"}, Namespace: "a", ServiceAccount: "default", Node: "node-2", IssuedAt: now, Expiry: now.Add(time.Hour)})
	if _, err := v.Verify(tok, now); !errors.Is(err, satoken.ErrNode) {
		t.Fatalf("a token of another node's pod: %v (the node name must reach the keys file)", err)
	}

	// Unchanged keys are not rewritten; a removed file is.
	st1, _ := os.Stat(path)
	if err := k.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(path); !st2.ModTime().Equal(st1.ModTime()) {
		t.Fatal("unchanged keys rewritten")
	}
	_ = os.Remove(path)
	if err := k.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := satoken.ReadKeys(path); err != nil {
		t.Fatalf("a removed file was not written again: %v", err)
	}
}

// A failed or odd answer writes nothing: the plugin keeps the last good keys.
func TestBadAnswersKeepTheLastKeys(t *testing.T) {
	iss := satokentest.New("https://issuer")
	jwks, _ := json.Marshal(iss.Keys("").JWKS)
	path := satoken.KeysPath(filepath.Join(t.TempDir(), "credentials.json"))
	good := api{issuer.ConfigurationPath: `{"issuer":"https://issuer"}`, issuer.JWKSPath: string(jwks)}
	k, _ := issuer.New(issuer.Config{API: good, Path: path})
	if err := k.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]api{
		"forbidden":   {},
		"no issuer":   {issuer.ConfigurationPath: `{}`, issuer.JWKSPath: string(jwks)},
		"no keys":     {issuer.ConfigurationPath: `{"issuer":"https://other"}`, issuer.JWKSPath: `{"keys":[]}`},
		"not a set":   {issuer.ConfigurationPath: `{"issuer":"https://other"}`, issuer.JWKSPath: `[1]`},
		"private key": {issuer.ConfigurationPath: `{"issuer":"https://other"}`, issuer.JWKSPath: `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`},
	} {
		bad, _ := issuer.New(issuer.Config{API: a, Path: path})
		if err := bad.Sync(context.Background()); err == nil {
			t.Errorf("%s: no error", name)
		}
		if keys, err := satoken.ReadKeys(path); err != nil || keys.Issuer != "https://issuer" {
			t.Errorf("%s: keys %v, %v", name, keys.Issuer, err)
		}
	}
}
