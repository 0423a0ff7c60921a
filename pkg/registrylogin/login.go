// Package registrylogin logs in to a container registry the way a client does before a pull,
// with go-containerregistry's implementation of the distribution auth flow: GET /v2/, then the
// challenge it answers with (Basic, or Bearer with realm, service and scope, as Docker Hub, GHCR,
// GitLab and Harbor use), then GET /v2/ again with the credentials. It never fetches a manifest or
// a layer, so a login never counts against a pull quota. Docker Hub's pull limits are read from a
// HEAD on a manifest, which Docker Hub does not count as a pull either.
package registrylogin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/pullpass/pullpass/pkg/credentials/userpass"
)

// Reasons a login ends with: the Verified condition's reasons and a bounded metric label.
const (
	Verified      = "Verified"
	Unauthorized  = "Unauthorized"  // 401: wrong username, password or token
	Forbidden     = "Forbidden"     // 403: the credentials are valid but refused here
	RateLimited   = "RateLimited"   // 429, or no pulls left in the registry's window
	TLSError      = "TLSError"      // the registry's certificate is not trusted
	Unreachable   = "Unreachable"   // DNS, connection, timeout
	RegistryError = "RegistryError" // an answer a registry should not give (5xx, not the /v2/ API)
)

// Reasons lists every reason Login can give.
var Reasons = []string{Verified, Unauthorized, Forbidden, RateLimited, TLSError, Unreachable, RegistryError}

// PullLimit is a registry's pull rate limit, from its ratelimit-limit and ratelimit-remaining
// headers ("100;w=21600").
type PullLimit struct {
	Limit, Remaining int64
	Window           time.Duration
}

// Result is the outcome of a login.
type Result struct {
	Host   string
	Reason string
	// Message is the registry's own answer, or the network's error, with no credential in it.
	Message string
	// PullLimit is set when a response carried ratelimit headers.
	PullLimit *PullLimit
	// RetryAfter is the Retry-After a 429 asked for (zero when none).
	RetryAfter time.Duration
	// Requests counts the HTTP requests the login took.
	Requests int
}

// OK reports whether the registry accepted the credentials.
func (r Result) OK() bool { return r.Reason == Verified }

// Config configures a Client.
type Config struct {
	// Transport carries the requests; a clone of http.DefaultTransport with RootCAs when nil.
	Transport http.RoundTripper
	// RootCAs are the CAs trusted for registries (the system's when nil).
	RootCAs *x509.CertPool
	// Timeout bounds one login, all its requests together (default 10s).
	Timeout time.Duration
}

// Client logs in to registries.
type Client struct {
	base    http.RoundTripper
	timeout time.Duration
}

// New returns a Client.
func New(cfg Config) *Client {
	if cfg.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.RootCAs != nil {
			t.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
		}
		cfg.Transport = t
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Client{base: cfg.Transport, timeout: cfg.Timeout}
}

// Login logs in to host ("ghcr.io", "registry.example.com:5000", "docker.io") as a client does
// before pulling repository (a pull scope is asked for when repository is not empty); empty
// creds log in anonymously.
func (c *Client) Login(ctx context.Context, host, repository string, creds userpass.Credentials) Result {
	rec := &recorder{inner: c.base}
	res := c.login(ctx, rec, host, repository, creds, func(ctx context.Context, rt http.RoundTripper, reg name.Registry) (*http.Response, error) {
		return do(ctx, rt, http.MethodGet, "https://"+reg.RegistryStr()+"/v2/")
	})
	return rec.finish(res)
}

// PullLimits reads the pull limit of credentials (anonymous when empty) with a HEAD on
// repository's manifest reference: Docker Hub answers it with ratelimit headers and does not count
// it as a pull (ratelimitpreview/test:latest is the repository Docker documents for it). A
// Verified result without PullLimit means the registry states no limit for these credentials.
func (c *Client) PullLimits(ctx context.Context, host, repository, reference string, creds userpass.Credentials) Result {
	rec := &recorder{inner: c.base}
	res := c.login(ctx, rec, host, repository, creds, func(ctx context.Context, rt http.RoundTripper, reg name.Registry) (*http.Response, error) {
		return do(ctx, rt, http.MethodHead, "https://"+reg.RegistryStr()+"/v2/"+repository+"/manifests/"+reference)
	})
	return rec.finish(res)
}

func (c *Client) login(ctx context.Context, rec *recorder, host, repository string, creds userpass.Credentials,
	request func(context.Context, http.RoundTripper, name.Registry) (*http.Response, error)) Result {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res := Result{Host: host}
	reg, err := name.NewRegistry(host)
	if err != nil {
		res.Reason, res.Message = RegistryError, fmt.Sprintf("not a registry host: %v", err)
		return res
	}
	auth := authn.Anonymous
	if creds.Username != "" || creds.Password != "" {
		auth = authn.FromConfig(authn.AuthConfig{Username: creds.Username, Password: creds.Password})
	}
	var scopes []string
	if repository != "" {
		scopes = []string{reg.Repo(repository).Scope(transport.PullScope)}
	}
	rt, err := transport.NewWithContext(ctx, reg, auth, rec, scopes)
	if err == nil {
		var resp *http.Response
		if resp, err = request(ctx, rt, reg); err == nil {
			err = transport.CheckError(resp, http.StatusOK)
			_ = resp.Body.Close()
		}
	}
	if err == nil {
		res.Reason, res.Message = Verified, "Login Succeeded"
		return res
	}
	res.Reason, res.Message = classify(err)
	res.Message = scrub(res.Message, creds)
	return res
}

func do(ctx context.Context, rt http.RoundTripper, method, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	// Docker Hub answers a HEAD with ratelimit headers only for manifest media types it serves.
	req.Header.Set("Accept", strings.Join([]string{
		"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
		"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
	}, ", "))
	return (&http.Client{Transport: rt}).Do(req)
}

// classify names what went wrong, from go-containerregistry's structured errors and Go's TLS and
// network errors, and says it in the registry's own words.
func classify(err error) (reason, message string) {
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		terr      *transport.Error
		netErr    net.Error
		dnsErr    *net.DNSError
		opErr     *net.OpError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify), errors.As(err, &header):
		return TLSError, err.Error()
	case errors.As(err, &terr):
		msg := describe(terr)
		switch terr.StatusCode {
		case http.StatusUnauthorized:
			return Unauthorized, msg
		case http.StatusForbidden:
			return Forbidden, msg
		case http.StatusTooManyRequests:
			return RateLimited, msg
		}
		return RegistryError, msg
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &dnsErr), errors.As(err, &opErr), errors.As(err, &netErr):
		return Unreachable, err.Error()
	}
	// go-containerregistry's own refusals: a malformed challenge, a realm it will not follow.
	return RegistryError, err.Error()
}

// describe says what a registry answered: the request, the status, and its own words.
func describe(e *transport.Error) string {
	var b strings.Builder
	if e.Request != nil {
		u := *e.Request.URL
		u.RawQuery, u.User = "", nil
		fmt.Fprintf(&b, "%s %s: ", e.Request.Method, u.String())
	}
	fmt.Fprintf(&b, "%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	var words []string
	for _, d := range e.Errors {
		w := string(d.Code)
		if d.Message != "" {
			w += ": " + d.Message
		}
		words = append(words, w)
	}
	if len(words) == 0 {
		// The raw body (Docker Hub's token service: {"details":"incorrect username or password"}).
		full := e.Error()
		if _, body, ok := strings.Cut(full, http.StatusText(e.StatusCode)+": "); ok {
			words = append(words, body)
		}
	}
	if len(words) > 0 {
		b.WriteString(": " + strings.Join(words, "; "))
	}
	return bound(b.String())
}

// scrub takes the password out of a message, plain or as basic auth, whatever a registry echoed.
func scrub(msg string, c userpass.Credentials) string {
	if len(c.Password) >= 4 {
		msg = strings.ReplaceAll(msg, c.Password, "<redacted>")
		msg = strings.ReplaceAll(msg, base64.StdEncoding.EncodeToString([]byte(c.Username+":"+c.Password)), "<redacted>")
	}
	return bound(msg)
}

func bound(s string) string {
	const limit = 1024
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// recorder counts requests and keeps what the registry said of its limits.
type recorder struct {
	inner http.RoundTripper

	mu         sync.Mutex
	n          int
	limit      *PullLimit
	retryAfter time.Duration
}

// errPlainHTTP refuses what go-containerregistry tries besides https for loopback and private
// addresses: credentials never go over plain http, and no request is sent for it.
var errPlainHTTP = errors.New("plain http refused: pullpass logs in over https only")

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return nil, errPlainHTTP
	}
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
	resp, err := r.inner.RoundTrip(req)
	if resp != nil {
		l, lok := parseLimit(resp.Header.Get("Ratelimit-Limit"))
		rem, rok := parseLimit(resp.Header.Get("Ratelimit-Remaining"))
		r.mu.Lock()
		if lok && rok {
			r.limit = &PullLimit{Limit: l.n, Remaining: rem.n, Window: l.window}
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				r.retryAfter = time.Duration(s) * time.Second
			}
		}
		r.mu.Unlock()
	}
	return resp, err
}

func (r *recorder) finish(res Result) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res.Requests, res.PullLimit, res.RetryAfter = r.n, r.limit, r.retryAfter
	if res.OK() && r.limit != nil && r.limit.Remaining <= 0 {
		// The credentials are good, but the next pull would be refused.
		res.Reason = RateLimited
		res.Message = fmt.Sprintf("no pulls left: %d allowed per %s, 0 remaining", r.limit.Limit, r.limit.Window)
	}
	return res
}

type limitValue struct {
	n      int64
	window time.Duration
}

// parseLimit reads "100;w=21600" (the count, then the window in seconds).
func parseLimit(h string) (limitValue, bool) {
	if h == "" {
		return limitValue{}, false
	}
	parts := strings.Split(h, ";")
	n, err := strconv.ParseInt(strings.TrimSpace(parts[0]), 10, 64)
	if err != nil || n < 0 {
		return limitValue{}, false
	}
	v := limitValue{n: n}
	for _, p := range parts[1:] {
		if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && k == "w" {
			if s, err := strconv.ParseInt(val, 10, 64); err == nil && s > 0 {
				v.window = time.Duration(s) * time.Second
			}
		}
	}
	return v, true
}
