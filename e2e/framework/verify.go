package framework

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// WaitVerified waits for a registry's Verified condition to have reason, and returns it.
func (e *Env) WaitVerified(t testing.TB, name, reason string, timeout time.Duration) metav1.Condition {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *metav1.Condition
	for {
		r, err := e.Registries.Get(Context(t, time.Minute), name, metav1.GetOptions{})
		if err == nil {
			if c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionVerified); c != nil {
				last = c
				if c.Reason == reason && c.ObservedGeneration == r.Generation {
					return *c
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry %s: Verified reason not %s after %s (last: %+v)", name, reason, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TokenRegistry is the harness's second registry, which speaks the Bearer token flow as Docker
// Hub does, and whose front can be made to answer 429 (e2e/cluster/tokenregistry).
type TokenRegistry struct {
	Host, Username, Password string
	stateURL                 string
	client                   *http.Client
}

// TokenRegistry returns the harness's token registry, failing the test when the harness has none.
func (e *Env) TokenRegistry(t testing.TB) *TokenRegistry {
	t.Helper()
	tr := &TokenRegistry{Host: e.Var("TOKEN_REGISTRY"), Username: e.Var("TOKEN_REGISTRY_USERNAME"),
		Password: e.Var("TOKEN_REGISTRY_PASSWORD"), stateURL: e.Var("TOKEN_REGISTRY_STATE_URL")}
	if tr.Host == "" || tr.Username == "" || tr.Password == "" || tr.stateURL == "" {
		if e.Var("KIND_NODES") != "" {
			// The Bearer registry and its 429 switch are harness parts; make test runs them there.
			t.Skip("the token registry (Bearer flow, 429 on demand) runs beside the harness, not the kind cluster")
		}
		t.Fatal("TOKEN_REGISTRY, TOKEN_REGISTRY_USERNAME, TOKEN_REGISTRY_PASSWORD and TOKEN_REGISTRY_STATE_URL are not set: run `make cluster-up`")
	}
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(e.RegistryCA); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	tr.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return tr
}

// TokenRegistryState is what the token registry's front serves and counts.
type TokenRegistryState struct {
	RateLimited bool             `json:"rateLimited"`
	Limit       int64            `json:"limit"`
	Remaining   int64            `json:"remaining"`
	Counts      map[string]int64 `json:"counts"`
}

// Set changes the front's state: a nil field is left as it is.
func (tr *TokenRegistry) Set(t testing.TB, rateLimited *bool, remaining *int64) TokenRegistryState {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"rateLimited": rateLimited, "remaining": remaining})
	return tr.do(t, http.MethodPost, body)
}

// State reads the front's state.
func (tr *TokenRegistry) State(t testing.TB) TokenRegistryState {
	t.Helper()
	return tr.do(t, http.MethodGet, nil)
}

func (tr *TokenRegistry) do(t testing.TB, method string, body []byte) TokenRegistryState {
	t.Helper()
	req, err := http.NewRequestWithContext(Context(t, 30*time.Second), method, tr.stateURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.client.Do(req)
	if err != nil {
		t.Fatalf("token registry state: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var st TokenRegistryState
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token registry state: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(fmt.Errorf("token registry state: %w", err))
	}
	return st
}
