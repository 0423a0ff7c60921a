package registrylogin_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/registrylogin"
)

// fakeRegistry answers the distribution API's /v2/ as an htpasswd registry (Basic) or as Docker
// Hub does (Bearer, with a token service on /token that refuses a wrong password).
type fakeRegistry struct {
	bearer     bool
	user, pass string
	status     int               // forced status of /v2/ and /token (403, 429, 500), 0 for none
	headers    map[string]string // added to every response
	requests   atomic.Int32
	manifests  atomic.Int32 // GETs of a manifest: a login must never make one
	srv        *httptest.Server
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	for k, v := range f.headers {
		w.Header().Set(k, v)
	}
	if strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodGet {
		f.manifests.Add(1)
	}
	if f.status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(`{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`))
		return
	}
	u, p, hasBasic := r.BasicAuth()
	good := hasBasic && u == f.user && p == f.pass
	if f.bearer && r.URL.Path == "/token" {
		switch {
		case hasBasic && !good:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"details":"incorrect username or password"}`))
		case good:
			_ = json.NewEncoder(w).Encode(map[string]any{"token": "good-token", "expires_in": 300})
		default:
			_ = json.NewEncoder(w).Encode(map[string]any{"token": "anonymous-token", "expires_in": 300})
		}
		return
	}
	authorized := good
	if f.bearer {
		a := r.Header.Get("Authorization")
		authorized = a == "Bearer good-token" || a == "Bearer anonymous-token"
	}
	if !authorized {
		if f.bearer {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+f.srv.URL+`/token",service="fake"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// fakeConfig shapes a fakeRegistry in a test table.
type fakeConfig struct {
	bearer  bool
	status  int
	headers map[string]string
}

func start(t *testing.T, f *fakeRegistry) (*registrylogin.Client, string) {
	t.Helper()
	f.srv = httptest.NewTLSServer(f)
	t.Cleanup(f.srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	return registrylogin.New(registrylogin.Config{RootCAs: pool, Timeout: 5 * time.Second}), strings.TrimPrefix(f.srv.URL, "https://")
}

func TestLoginReasons(t *testing.T) {
	const user, pass = "bob", "s3cret-passw0rd"
	limited := map[string]string{"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600", "Retry-After": "120"}
	for _, tc := range []struct {
		name     string
		reg      fakeConfig
		creds    userpass.Credentials
		reason   string
		inMsg    string
		requests int32
	}{
		{"basic ok", fakeConfig{}, userpass.Credentials{Username: user, Password: pass}, registrylogin.Verified, "Login Succeeded", 2},
		{"basic wrong password", fakeConfig{}, userpass.Credentials{Username: user, Password: "wrong-password"}, registrylogin.Unauthorized, "401 Unauthorized: UNAUTHORIZED: authentication required", 2},
		{"bearer ok", fakeConfig{bearer: true}, userpass.Credentials{Username: user, Password: pass}, registrylogin.Verified, "Login Succeeded", 3},
		{"bearer wrong password", fakeConfig{bearer: true}, userpass.Credentials{Username: user, Password: "wrong-password"}, registrylogin.Unauthorized, "incorrect username or password", 2},
		{"bearer anonymous", fakeConfig{bearer: true}, userpass.Credentials{}, registrylogin.Verified, "Login Succeeded", 3},
		{"forbidden", fakeConfig{status: http.StatusForbidden}, userpass.Credentials{Username: user, Password: pass}, registrylogin.Forbidden, "403 Forbidden: DENIED", 1},
		{"rate limited", fakeConfig{status: http.StatusTooManyRequests, headers: limited}, userpass.Credentials{Username: user, Password: pass}, registrylogin.RateLimited, "429 Too Many Requests", 1},
		{"server error", fakeConfig{status: http.StatusBadGateway}, userpass.Credentials{Username: user, Password: pass}, registrylogin.RegistryError, "502 Bad Gateway", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := &fakeRegistry{bearer: tc.reg.bearer, user: user, pass: pass, status: tc.reg.status, headers: tc.reg.headers}
			c, host := start(t, reg)
			res := c.Login(context.Background(), host, "team/app", tc.creds)
			if res.Reason != tc.reason || !strings.Contains(res.Message, tc.inMsg) {
				t.Fatalf("Login = %s %q, want %s containing %q", res.Reason, res.Message, tc.reason, tc.inMsg)
			}
			if strings.Contains(res.Message, pass) || strings.Contains(res.Message, "wrong-password") {
				t.Fatalf("message carries a password: %q", res.Message)
			}
			if got := reg.requests.Load(); got != tc.requests {
				t.Errorf("registry saw %d requests, want %d", got, tc.requests)
			}
			if reg.manifests.Load() != 0 {
				t.Error("a login fetched a manifest")
			}
			if tc.reason == registrylogin.RateLimited {
				if res.PullLimit == nil || res.PullLimit.Limit != 100 || res.PullLimit.Remaining != 0 || res.PullLimit.Window != 6*time.Hour {
					t.Errorf("pull limit %+v, want 100 per 6h, 0 remaining", res.PullLimit)
				}
				if res.RetryAfter != 2*time.Minute {
					t.Errorf("retry after %s, want 2m", res.RetryAfter)
				}
			}
		})
	}
}

func TestLoginTLSErrorAndUnreachable(t *testing.T) {
	f := &fakeRegistry{user: "u", pass: "p"}
	f.srv = httptest.NewTLSServer(f)
	defer f.srv.Close()
	untrusting := registrylogin.New(registrylogin.Config{RootCAs: x509.NewCertPool(), Timeout: 5 * time.Second})
	res := untrusting.Login(context.Background(), strings.TrimPrefix(f.srv.URL, "https://"), "", userpass.Credentials{Username: "u", Password: "p"})
	if res.Reason != registrylogin.TLSError || !strings.Contains(res.Message, "certificate") {
		t.Fatalf("untrusted certificate: %s %q, want TLSError", res.Reason, res.Message)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close()
	res = untrusting.Login(context.Background(), closed, "", userpass.Credentials{Username: "u", Password: "p"})
	if res.Reason != registrylogin.Unreachable {
		t.Fatalf("closed port: %s %q, want Unreachable", res.Reason, res.Message)
	}
	res = untrusting.Login(context.Background(), "registry.invalid", "", userpass.Credentials{})
	if res.Reason != registrylogin.Unreachable {
		t.Fatalf("unknown host: %s %q, want Unreachable", res.Reason, res.Message)
	}
}

// A registry that never answers: the login gives up at the timeout.
func TestLoginTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c := registrylogin.New(registrylogin.Config{RootCAs: pool, Timeout: 300 * time.Millisecond})
	res := c.Login(context.Background(), strings.TrimPrefix(srv.URL, "https://"), "", userpass.Credentials{})
	if res.Reason != registrylogin.Unreachable {
		t.Fatalf("%s %q, want Unreachable", res.Reason, res.Message)
	}
}

// Docker Hub's pull limit from a HEAD on a manifest: never a GET, so never a pull.
func TestPullLimits(t *testing.T) {
	f := &fakeRegistry{bearer: true, user: "bob", pass: "pat", headers: map[string]string{"ratelimit-limit": "200;w=21600", "ratelimit-remaining": "187;w=21600"}}
	c, host := start(t, f)
	res := c.PullLimits(context.Background(), host, "ratelimitpreview/test", "latest", userpass.Credentials{Username: "bob", Password: "pat"})
	if res.Reason != registrylogin.Verified || res.PullLimit == nil || *res.PullLimit != (registrylogin.PullLimit{Limit: 200, Remaining: 187, Window: 6 * time.Hour}) {
		t.Fatalf("PullLimits = %s %q %+v", res.Reason, res.Message, res.PullLimit)
	}
	if f.manifests.Load() != 0 {
		t.Fatal("PullLimits fetched a manifest with GET")
	}
	f.headers["ratelimit-remaining"] = "0;w=21600"
	res = c.PullLimits(context.Background(), host, "ratelimitpreview/test", "latest", userpass.Credentials{})
	if res.Reason != registrylogin.RateLimited || !strings.Contains(res.Message, "no pulls left") {
		t.Fatalf("no pulls left: %s %q, want RateLimited", res.Reason, res.Message)
	}
}

// A registry that echoes what it was sent: the password, plain or as basic auth, never reaches the
// message.
func TestRefusalMessageNeverCarriesThePassword(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="echo"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("you sent " + u + ":" + p + " as " + r.Header.Get("Authorization")))
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c := registrylogin.New(registrylogin.Config{RootCAs: pool})
	res := c.Login(context.Background(), strings.TrimPrefix(srv.URL, "https://"), "", userpass.Credentials{Username: "bob", Password: "hunter22-secret"})
	if res.Reason != registrylogin.Forbidden || !strings.Contains(res.Message, "you sent bob:<redacted> as Basic <redacted>") {
		t.Fatalf("%s %q", res.Reason, res.Message)
	}
}

// A registry that answers plain http only (on a loopback address, where go-containerregistry would
// try http too) is never sent the credentials: the login fails instead.
func TestNeverOverPlainHTTP(t *testing.T) {
	var sawAuth atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawAuth.Store(true)
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="plain"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	c := registrylogin.New(registrylogin.Config{Timeout: 5 * time.Second})
	res := c.Login(context.Background(), strings.TrimPrefix(srv.URL, "http://"), "", userpass.Credentials{Username: "bob", Password: "hunter22-secret"})
	if res.OK() || sawAuth.Load() {
		t.Fatalf("login over plain http: %s %q (credentials sent: %v)", res.Reason, res.Message, sawAuth.Load())
	}
}
