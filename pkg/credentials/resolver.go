// Package credentials turns a Registry's credential source into a username and password:
// a Secret (secretRef, dockerHub) or ECR tokens, which it caches and refreshes at about half their
// lifetime, keeping the last good token until it expires when a refresh fails.
package credentials

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/secrets"
)

// NamespaceNotAllowedError is returned for a source Secret outside the namespaces pullpass reads
// sources from: a Registry must never make pullpass copy a Secret it has no business with (it
// may read every Secret) into namespaces where others can read it.
type NamespaceNotAllowedError struct {
	Namespace string
	Allowed   []string
}

func (e *NamespaceNotAllowedError) Error() string {
	return fmt.Sprintf("namespace %q may not hold credential sources (allowed: %s; the chart's sourceNamespaces adds more)", e.Namespace, strings.Join(e.Allowed, ", "))
}

// SecretGetter reads a Secret, from a cache where it can.
type SecretGetter interface {
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
}

// ECRFactory builds an ECR client; ecr.NewAPI in production.
type ECRFactory func(ctx context.Context, c ecr.ClientConfig) (ecr.API, error)

// Resolver resolves credential sources.
type Resolver struct {
	Secrets SecretGetter
	NewECR  ECRFactory
	// ECREndpoint overrides the ECR endpoint (a VPC endpoint, or a local ECR API in tests).
	ECREndpoint string
	Now         func() time.Time

	mu      sync.Mutex
	tokens  map[string]*cachedToken // by registry name
	clients map[string]ecr.API      // by client config: one HTTP transport each, reused
	// fromSecrets caches what each registry's source Secret resolved to, by registry name. The
	// webhook resolves every registry of every admitted pod: without it, each review parsed
	// every source's docker config again (200 of a review's 440 allocations).
	fromSecrets map[string]fromSecret
}

// fromSecret is what one version of a source Secret resolved to, for one list of hosts.
type fromSecret struct {
	namespace, name, resourceVersion string
	hosts                            []string
	creds                            userpass.Credentials
}

type cachedToken struct {
	key       string // what the token was fetched for: region, role, keys' version
	creds     userpass.Credentials
	refreshAt time.Time
	// lastErr and failures describe the last fetch when it failed; until refreshAt, callers get
	// lastErr without another call to AWS.
	lastErr  error
	failures int
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Resolve returns a registry's credentials. For ECR, a failed refresh returns the last good
// token while it is valid, together with the error (Stale reports it).
func (r *Resolver) Resolve(ctx context.Context, reg *v1alpha1.Registry) (userpass.Credentials, error) {
	a := reg.Spec.Auth
	switch {
	case a.SecretRef != nil:
		s, err := r.source(ctx, reg, "source secret", *a.SecretRef)
		if err != nil {
			return userpass.Credentials{}, err
		}
		if c, ok := r.parsed(reg, s); ok {
			return c, nil
		}
		c, err := secrets.FromSecret(s, reg.Spec.Hosts)
		if err != nil {
			return userpass.Credentials{}, err
		}
		return r.keep(reg, s, c), nil
	case a.DockerHub != nil:
		ref := a.DockerHub.SecretRef
		s, err := r.source(ctx, reg, "Docker Hub secret", ref)
		if err != nil {
			return userpass.Credentials{}, err
		}
		if c, ok := r.parsed(reg, s); ok {
			return c, nil
		}
		user, token := string(s.Data["username"]), string(s.Data["token"])
		if token == "" {
			token = string(s.Data["password"])
		}
		if user == "" || token == "" {
			return userpass.Credentials{}, fmt.Errorf("registry %s: Docker Hub secret %s/%s needs \"username\" and \"token\" (a personal access token)", reg.Name, ref.Namespace, ref.Name)
		}
		return r.keep(reg, s, userpass.Credentials{Username: user, Password: token}), nil
	case a.ECR != nil:
		return r.ecr(ctx, reg)
	}
	return userpass.Credentials{}, fmt.Errorf("registry %s: no credential source", reg.Name)
}

// source reads a Secret a registry's source names. One of pullpass's own Secrets is refused
// before it is read, by name, and after, by its labels (the webhook's TLS Secret may be named
// anything): its contents must never reach a pull secret or a node.
func (r *Resolver) source(ctx context.Context, reg *v1alpha1.Registry, what string, ref v1alpha1.SecretReference) (*corev1.Secret, error) {
	if secrets.Reserved(ref.Name) {
		return nil, fmt.Errorf("registry %s: %s %s/%s %w", reg.Name, what, ref.Namespace, ref.Name, secrets.ErrNotASource)
	}
	s, err := r.Secrets.Secret(ctx, ref.Namespace, ref.Name)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %s %s/%s: %w", reg.Name, what, ref.Namespace, ref.Name, err)
	}
	if err := secrets.CheckSource(s); err != nil {
		return nil, fmt.Errorf("registry %s: %s: %w", reg.Name, what, err)
	}
	return s, nil
}

// parsed returns what s resolved to for reg the last time, when neither the Secret's
// resourceVersion nor the registry's hosts changed since.
func (r *Resolver) parsed(reg *v1alpha1.Registry, s *corev1.Secret) (userpass.Credentials, bool) {
	r.mu.Lock()
	c, ok := r.fromSecrets[reg.Name]
	r.mu.Unlock()
	if !ok || s.ResourceVersion == "" || c.resourceVersion != s.ResourceVersion || c.namespace != s.Namespace || c.name != s.Name || !slices.Equal(c.hosts, reg.Spec.Hosts) {
		return userpass.Credentials{}, false
	}
	return c.creds, true
}

// keep versions creds by s and remembers them for parsed. Failures are not kept: they are
// rare, and their errors name the registry.
func (r *Resolver) keep(reg *v1alpha1.Registry, s *corev1.Secret, creds userpass.Credentials) userpass.Credentials {
	creds.Version = "secret/" + s.ResourceVersion
	if s.ResourceVersion == "" {
		return creds // no version to know a change by
	}
	r.mu.Lock()
	if r.fromSecrets == nil {
		r.fromSecrets = map[string]fromSecret{}
	}
	r.fromSecrets[reg.Name] = fromSecret{namespace: s.Namespace, name: s.Name, resourceVersion: s.ResourceVersion, hosts: slices.Clone(reg.Spec.Hosts), creds: creds}
	r.mu.Unlock()
	return creds
}

// NextRefresh returns when a registry's credentials should be fetched again (zero: only when
// its source changes).
func (r *Resolver) NextRefresh(name string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.tokens[name]; ok {
		return t.refreshAt
	}
	return time.Time{}
}

// Forget drops what is cached for a removed registry.
func (r *Resolver) Forget(name string) {
	r.mu.Lock()
	delete(r.tokens, name)
	delete(r.fromSecrets, name)
	r.mu.Unlock()
}

// Unavailable reports whether err says only that a source could not be read now (the API
// server, the network or AWS slow, busy or down; a source not readable yet), not that the
// source now says something else. Last good credentials may be served through such an error
// only, and for a bounded time; any other error (the Secret gone, emptied or malformed, moved
// where pullpass may not read it, one of pullpass's own) withdraws them: that is how an
// administrator stops a leaked credential.
func Unavailable(err error) bool {
	var u interface{ Unavailable() bool }
	var ecrErr *ecr.Error
	var netErr net.Error
	switch {
	case err == nil:
		return false
	case errors.As(err, &u):
		return u.Unavailable()
	case errors.As(err, &ecrErr):
		return ecrErr.Retryable()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.As(err, &netErr):
		return true
	}
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err)
}

// StaleError wraps a refresh failure while the last good token is still in use.
type StaleError struct{ Err error }

func (e *StaleError) Error() string { return "using the last good token: " + e.Err.Error() }
func (e *StaleError) Unwrap() error { return e.Err }

func (r *Resolver) ecr(ctx context.Context, reg *v1alpha1.Registry) (userpass.Credentials, error) {
	src := reg.Spec.Auth.ECR
	cc := ecr.ClientConfig{Region: src.Region, RoleARN: src.RoleARN, Endpoint: r.ECREndpoint}
	if h, err := ecrHost(reg); err == nil {
		if cc.Region == "" {
			cc.Region = h.Region
		}
		cc.FIPS = h.FIPS
	} else if cc.Region == "" {
		return userpass.Credentials{}, fmt.Errorf("registry %s: %w", reg.Name, err)
	}
	key := cc.Region + "|" + cc.RoleARN + "|" + strconv.FormatBool(cc.FIPS)
	if ref := src.AccessKeySecretRef; ref != nil {
		s, err := r.source(ctx, reg, "AWS keys secret", *ref)
		if err != nil {
			return userpass.Credentials{}, err
		}
		id, secret := string(s.Data["aws_access_key_id"]), string(s.Data["aws_secret_access_key"])
		if id == "" || secret == "" {
			return userpass.Credentials{}, fmt.Errorf("registry %s: AWS keys secret %s/%s needs aws_access_key_id and aws_secret_access_key", reg.Name, ref.Namespace, ref.Name)
		}
		cc.Keys = &ecr.Keys{AccessKeyID: id, SecretAccessKey: secret, SessionToken: string(s.Data["aws_session_token"])}
		key += "|" + s.ResourceVersion
	}
	now := r.now()
	r.mu.Lock()
	cached := r.tokens[reg.Name]
	r.mu.Unlock()
	if cached != nil && cached.key == key && now.Before(cached.refreshAt) {
		switch {
		case cached.lastErr == nil:
			return cached.creds, nil
		case now.Before(cached.creds.ExpiresAt):
			return cached.creds, &StaleError{cached.lastErr}
		default:
			return userpass.Credentials{}, fmt.Errorf("registry %s: %w", reg.Name, cached.lastErr)
		}
	}
	api, err := r.client(ctx, key, cc)
	if err == nil {
		var tok ecr.Token
		if tok, err = ecr.Fetch(ctx, api, now); err == nil {
			c := userpass.Credentials{Username: tok.Username, Password: tok.Password, ExpiresAt: tok.ExpiresAt, Version: "ecr/" + strconv.FormatInt(tok.ExpiresAt.UnixNano(), 10)}
			life := tok.ExpiresAt.Sub(now)
			// About half the lifetime, with ±10% jitter so many registries do not refresh together.
			refresh := time.Duration(float64(life) * (0.45 + 0.1*rand.Float64()))
			r.store(reg.Name, &cachedToken{key: key, creds: c, refreshAt: now.Add(refresh)})
			return c, nil
		}
	}
	// Failed: back off (5s doubling to 5 min), and keep the last good token while it is valid.
	failures := 1
	var last userpass.Credentials
	if cached != nil && cached.key == key {
		failures = cached.failures + 1
		last = cached.creds
	}
	retry := now.Add(backoff(failures))
	if valid := now.Before(last.ExpiresAt); valid && retry.After(last.ExpiresAt) {
		retry = last.ExpiresAt
	}
	r.store(reg.Name, &cachedToken{key: key, creds: last, refreshAt: retry, lastErr: err, failures: failures})
	if now.Before(last.ExpiresAt) {
		return last, &StaleError{err}
	}
	return userpass.Credentials{}, fmt.Errorf("registry %s: %w", reg.Name, err)
}

func backoff(failures int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < failures && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// client returns the ECR client for a configuration, made once.
func (r *Resolver) client(ctx context.Context, key string, cc ecr.ClientConfig) (ecr.API, error) {
	r.mu.Lock()
	api, ok := r.clients[key]
	r.mu.Unlock()
	if ok {
		return api, nil
	}
	api, err := r.NewECR(ctx, cc)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.clients == nil {
		r.clients = map[string]ecr.API{}
	}
	r.clients[key] = api
	r.mu.Unlock()
	return api, nil
}

func (r *Resolver) store(name string, t *cachedToken) {
	r.mu.Lock()
	if r.tokens == nil {
		r.tokens = map[string]*cachedToken{}
	}
	r.tokens[name] = t
	r.mu.Unlock()
}

// ecrHost reads the region from the registry's first literal ECR host.
func ecrHost(reg *v1alpha1.Registry) (ecr.Host, error) {
	last := errors.New("no ECR host among spec.hosts")
	for _, h := range reg.Spec.Hosts {
		if c, err := match.Canonical(h); err == nil {
			h = c // "https://ACCOUNT.dkr.ecr.REGION.amazonaws.com/" is that host
		}
		host, _, _ := strings.Cut(h, "/")
		eh, err := ecr.ParseHost(host)
		if err == nil {
			return eh, nil
		}
		last = err
	}
	return ecr.Host{}, last
}
