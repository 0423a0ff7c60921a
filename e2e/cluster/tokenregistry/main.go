// Command tokenregistry is the front of the e2e harness's second registry, which speaks the
// Bearer token flow as Docker Hub does: Debian's docker-registry (distribution) runs behind it on
// loopback with `auth: token`, and this program
//
//   - issues the tokens on /token: basic auth checked against a users file ("user:password"
//     lines), a wrong password refused with 401 {"details":"incorrect username or password"} as
//     auth.docker.io does, anonymous callers given a token with no access; tokens are JWTs signed
//     with a key whose certificate (in the x5c header) chains to the registry's rootcertbundle;
//   - answers HEAD /v2/ratelimitpreview/test/manifests/latest as Docker Hub does, with
//     ratelimit-limit and ratelimit-remaining headers (not a pull);
//   - can be switched to answer 429 with rate-limit headers on every registry and token request
//     (POST /__harness/state {"rateLimited": true}), as a registry throttling its clients;
//   - proxies everything else to the registry, over TLS with the harness's certificate;
//   - counts what it served (GET /__harness/state).
//
// It is a test fixture of the harness: never a production token service.
package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

type state struct {
	RateLimited bool  `json:"rateLimited"`
	Limit       int64 `json:"limit"`
	Remaining   int64 `json:"remaining"`
	// Counts of what was served: token (by outcome), v2 (proxied), limits (HEADs answered), throttled.
	Counts map[string]int64 `json:"counts"`
}

type server struct {
	users   map[string]string
	key     *rsa.PrivateKey
	certDER []byte
	service string
	issuer  string
	proxy   *httputil.ReverseProxy

	mu sync.Mutex
	st state
}

func main() {
	var (
		listen   = flag.String("listen", "127.0.0.1:25444", "TLS address of the front")
		backend  = flag.String("backend", "http://127.0.0.1:25445", "the distribution registry behind it")
		certFile = flag.String("tls-cert", "", "serving certificate")
		keyFile  = flag.String("tls-key", "", "serving key")
		signCert = flag.String("signing-cert", "", "token signing certificate (chains to the registry's rootcertbundle)")
		signKey  = flag.String("signing-key", "", "token signing key (RSA)")
		users    = flag.String("users", "", `users file: "user:password" lines`)
		service  = flag.String("service", "pullpass-e2e-token", "the registry's token service name (its tokens' audience)")
		issuer   = flag.String("issuer", "pullpass-e2e-issuer", "the tokens' issuer")
	)
	flag.Parse()
	s, err := newServer(*backend, *signCert, *signKey, *users, *service, *issuer)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: *listen, Handler: s, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	log.Printf("token registry front on %s, registry %s", *listen, *backend)
	log.Fatal(srv.ListenAndServeTLS(*certFile, *keyFile))
}

func newServer(backend, certFile, keyFile, usersFile, service, issuer string) (*server, error) {
	b, err := url.Parse(backend)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil {
		return nil, errors.New("signing cert: no PEM block")
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("signing key: no PEM block")
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS8PrivateKey(kb.Bytes); err == nil {
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New("signing key is not RSA")
		}
		key = rk
	} else if key, err = x509.ParsePKCS1PrivateKey(kb.Bytes); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	s := &server{key: key, certDER: cb.Bytes, service: service, issuer: issuer, users: map[string]string{},
		st: state{Limit: 200, Remaining: 200, Counts: map[string]int64{}}}
	if err := s.loadUsers(usersFile); err != nil {
		return nil, err
	}
	s.proxy = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(b)
		r.Out.Host = r.In.Host
		r.SetXForwarded()
	}}
	return s, nil
}

func (s *server) loadUsers(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if u, p, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && u != "" {
			s.users[u] = p
		}
	}
	return nil
}

func (s *server) count(k string) {
	s.mu.Lock()
	s.st.Counts[k]++
	s.mu.Unlock()
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/__harness/state" {
		s.harness(w, r)
		return
	}
	s.mu.Lock()
	limited, limit, remaining := s.st.RateLimited, s.st.Limit, s.st.Remaining
	s.mu.Unlock()
	if limited && (r.URL.Path == "/token" || strings.HasPrefix(r.URL.Path, "/v2/")) {
		s.count("throttled")
		w.Header().Set("ratelimit-limit", fmt.Sprintf("%d;w=21600", limit))
		w.Header().Set("ratelimit-remaining", "0;w=21600")
		w.Header().Set("Retry-After", "60")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. You may increase the limit by authenticating and upgrading"}]}`))
		return
	}
	switch {
	case r.URL.Path == "/token":
		s.token(w, r)
	case r.Method == http.MethodHead && r.URL.Path == "/v2/ratelimitpreview/test/manifests/latest":
		if !s.validBearer(r) {
			s.count("limits-unauthorized")
			w.Header().Set("WWW-Authenticate", s.challenge(r, "repository:ratelimitpreview/test:pull"))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		s.count("limits")
		w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
		w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("0", 64))
		w.Header().Set("ratelimit-limit", fmt.Sprintf("%d;w=21600", limit))
		w.Header().Set("ratelimit-remaining", fmt.Sprintf("%d;w=21600", remaining))
		w.WriteHeader(http.StatusOK)
	default:
		s.count("v2")
		s.proxy.ServeHTTP(w, r)
	}
}

func (s *server) challenge(r *http.Request, scope string) string {
	return fmt.Sprintf(`Bearer realm="https://%s/token",service=%q,scope=%q`, r.Host, s.service, scope)
}

// harness reads (GET) or changes (POST) the front's state.
func (s *server) harness(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method == http.MethodPost {
		var in struct {
			RateLimited *bool  `json:"rateLimited"`
			Limit       *int64 `json:"limit"`
			Remaining   *int64 `json:"remaining"`
			Reset       bool   `json:"resetCounts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if in.RateLimited != nil {
			s.st.RateLimited = *in.RateLimited
		}
		if in.Limit != nil {
			s.st.Limit = *in.Limit
		}
		if in.Remaining != nil {
			s.st.Remaining = *in.Remaining
		}
		if in.Reset {
			s.st.Counts = map[string]int64{}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.st)
}

type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// token answers the token request of the distribution auth spec.
func (s *server) token(w http.ResponseWriter, r *http.Request) {
	user, pass, hasBasic := r.BasicAuth()
	if hasBasic {
		if want, ok := s.users[user]; !ok || want != pass {
			s.count("token-refused")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"details":"incorrect username or password"}`))
			return
		}
	}
	var grants []access
	if hasBasic {
		for _, scope := range r.URL.Query()["scope"] {
			for _, sc := range strings.Fields(scope) {
				parts := strings.Split(sc, ":")
				if len(parts) == 3 && parts[0] == "repository" {
					grants = append(grants, access{Type: "repository", Name: parts[1], Actions: strings.Split(parts[2], ",")})
				}
			}
		}
	} else {
		user = ""
	}
	tok, err := s.sign(user, grants)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if hasBasic {
		s.count("token")
	} else {
		s.count("token-anonymous")
	}
	w.Header().Set("Content-Type", "application/json")
	now := time.Now().UTC()
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 300, "issued_at": now.Format(time.RFC3339)})
}

var b64 = base64.RawURLEncoding

func (s *server) sign(subject string, grants []access) (string, error) {
	header, _ := json.Marshal(map[string]any{"typ": "JWT", "alg": "RS256", "x5c": []string{base64.StdEncoding.EncodeToString(s.certDER)}})
	now := time.Now()
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	if grants == nil {
		grants = []access{}
	}
	claims, _ := json.Marshal(map[string]any{
		"iss": s.issuer, "sub": subject, "aud": s.service,
		"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
		"jti": b64.EncodeToString(jti), "access": grants,
	})
	payload := b64.EncodeToString(header) + "." + b64.EncodeToString(claims)
	sum := sha256.Sum256([]byte(payload))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return payload + "." + b64.EncodeToString(sig), nil
}

// validBearer checks a token this front signed.
func (s *server) validBearer(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	return rsa.VerifyPKCS1v15(&s.key.PublicKey, crypto.SHA256, sum[:], sig) == nil
}
