// Package provider is the kubelet image credential provider plugin (KEP-2133), API versions
// credentialprovider.kubelet.k8s.io/v1 and v1beta1. It answers from the node agent's cache only,
// with no network call.
package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/pkg/match"
)

// The kubelet execs the plugin for every pull of a matching image, so it is kept small: its own
// copies of the two message types (field for field those of k8s.io/kubelet's
// credentialprovider/v1 and v1beta1, checked byte for byte by the golden tests) instead of
// the apimachinery and image-reference packages, whose start-up alone cost milliseconds.
const (
	apiV1      = "credentialprovider.kubelet.k8s.io/v1"
	apiV1beta1 = "credentialprovider.kubelet.k8s.io/v1beta1"
)

// Request is the kubelet's CredentialProviderRequest.
type Request struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Image      string `json:"image"`
	// Sent only to a provider with tokenAttributes (the token entry), v1 only.
	ServiceAccountToken       string            `json:"serviceAccountToken,omitempty"`
	ServiceAccountAnnotations map[string]string `json:"serviceAccountAnnotations,omitempty"`
}

type response struct {
	Kind          string                `json:"kind"`
	APIVersion    string                `json:"apiVersion"`
	CacheKeyType  string                `json:"cacheKeyType"`
	CacheDuration string                `json:"cacheDuration,omitempty"`
	Auth          map[string]authConfig `json:"auth,omitempty"`
}

type authConfig struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Config configures the plugin.
type Config struct {
	CachePath string
	// MaxCacheDuration bounds how long the kubelet may keep an answer (default 5 min); it is
	// also never longer than the credentials' own life.
	MaxCacheDuration time.Duration
	// Generation is the provider config's generation (the agent passes it as an argument); the
	// plugin records it so the agent knows which config the kubelet runs.
	Generation string
	// Record counts requests beside the cache for the agent's metrics.
	Record bool
	// Lookup answers a request; nil: from the Cluster cache (the Cluster entry's plugin). The
	// token entry's plugin, a binary of its own (cmd/pullpass-credential-provider-sa), passes
	// package token's: the Cluster plugin, exec'd for every pull of a served host, links none
	// of the token verification (go-jose, RSA, the agent's socket) and starts faster for it.
	Lookup Lookup
	Now    func() time.Time
}

// Lookup answers one request with cfg's cache.
type Lookup func(cfg Config, req Request) (Answer, error)

// Run answers one CredentialProviderRequest from stdin on stdout.
func Run(cfg Config, stdin io.Reader, stdout io.Writer) error {
	if cfg.MaxCacheDuration == 0 {
		cfg.MaxCacheDuration = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	data, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	var req Request
	if err := json.Unmarshal(data, &req); err != nil {
		return errors.New("the request is not a JSON object of the kubelet's")
	}
	if req.Kind != "CredentialProviderRequest" {
		return fmt.Errorf("kind %q, want CredentialProviderRequest", req.Kind)
	}
	if req.APIVersion != apiV1 && req.APIVersion != apiV1beta1 {
		return fmt.Errorf("apiVersion %q is not served (v1 and v1beta1 are)", req.APIVersion)
	}
	if req.Image == "" {
		return errors.New("the request names no image")
	}
	if cfg.Generation != "" {
		nodecache.RecordGeneration(cfg.CachePath, cfg.Generation)
	}
	lookup := cfg.Lookup
	if lookup == nil {
		lookup = lookupCluster
	}
	a, err := lookup(cfg, req)
	if cfg.Record {
		switch {
		case err != nil:
			nodecache.RecordRequest(cfg.CachePath, nodecache.RequestError)
		case a.Served:
			nodecache.RecordRequest(cfg.CachePath, nodecache.RequestHit)
		default:
			nodecache.RecordRequest(cfg.CachePath, nodecache.RequestMiss)
		}
	}
	if err != nil {
		return err
	}
	resp := response{Kind: "CredentialProviderResponse", APIVersion: req.APIVersion, CacheKeyType: "Registry", CacheDuration: a.TTL.String()}
	if a.PerImage {
		resp.CacheKeyType = "Image"
	}
	if len(a.Auth) > 0 {
		resp.Auth = map[string]authConfig{}
		for k, v := range a.Auth {
			resp.Auth[k] = authConfig{Username: v[0], Password: v[1]}
		}
	}
	return json.NewEncoder(stdout).Encode(resp)
}

// Answer is what the plugin tells the kubelet.
type Answer struct {
	// Auth maps host patterns, which the kubelet matches against the image as it matches
	// matchImages, to a username and password.
	Auth map[string][2]string
	// TTL is how long the kubelet may keep the answer. An answer with no credentials at all
	// is never cached (0): the kubelet would otherwise keep it for the image's host, and a
	// registry added for that host would not be served on this node until it expired. It
	// costs an exec per pull of an image of a host that no registry serves.
	TTL time.Duration
	// PerImage: the kubelet must cache the answer under the image, not its host, because it
	// is right for this image only (see match.HostAnswer).
	PerImage bool
	// Served: the image itself gets credentials (for the request metrics).
	Served bool
}

// AnswerOf turns a match.HostAnswer into the plugin's answer. Where it may, it answers for the
// whole host: every pattern of the host as an auth key, cached under the host, so one exec per
// host and cache duration serves every image of the host, each exactly its best registry's
// credentials (public images of the host none). Where two registries of the host could both
// match one image, it answers for the image alone. creds gives an entry's credentials and how long
// they may be cached (ok false: the entry has none to give).
func AnswerOf[V comparable](h match.HostAnswer[V], maxTTL time.Duration, creds func(V) (user, pass string, ttl time.Duration, ok bool)) Answer {
	a := Answer{Auth: map[string][2]string{}, TTL: maxTTL}
	add := func(e match.Entry[V]) {
		user, pass, ttl, ok := creds(e.Value)
		if !ok {
			return
		}
		a.Auth[e.Pattern.String()] = [2]string{user, pass}
		a.TTL = min(a.TTL, ttl)
	}
	if !h.Uniform {
		a.PerImage = true
		if h.Found {
			add(h.Best)
		}
	} else {
		for _, k := range h.Keys {
			add(k)
		}
	}
	if h.Found {
		_, a.Served = a.Auth[h.Best.Pattern.String()]
	}
	if len(a.Auth) == 0 {
		a.TTL = 0
	}
	return a
}

// TTLUntil is how long the kubelet may keep credentials that expire at expires (zero: never).
// Never outlive them; leave a margin for clock skew and the pull itself.
func TTLUntil(maxTTL time.Duration, now, expires time.Time) time.Duration {
	if expires.IsZero() {
		return maxTTL
	}
	return min(maxTTL, max(expires.Sub(now)-time.Minute, time.Second))
}

// lookupCluster answers an image from the Cluster cache. The image is matched as the kubelet sends it
// (the normalized repository, "docker.io/library/nginx"), with the kubelet's own rules, as the
// kubelet matched it against matchImages.
func lookupCluster(cfg Config, req Request) (Answer, error) {
	f, err := nodecache.Read(cfg.CachePath)
	if errors.Is(err, nodecache.ErrNoCache) {
		// The agent has not written yet: no credentials (never cached, see Answer.TTL).
		return Answer{}, nil
	}
	if err != nil {
		return Answer{}, err
	}
	now := cfg.Now()
	// One lookup per exec: only the patterns of the image's host are parsed, no table is built.
	entries := func(yield func(match.Raw[*nodecache.Entry]) bool) {
		for i := range f.Entries {
			e := &f.Entries[i]
			if !e.ExpiresAt.IsZero() && !e.ExpiresAt.After(now) {
				continue // expired: never served
			}
			for _, h := range e.Hosts {
				if !yield(match.Raw[*nodecache.Entry]{Name: e.Registry, Pattern: h, Value: e}) {
					return
				}
			}
		}
	}
	return AnswerOf(match.AnswerForHost(req.Image, entries), cfg.MaxCacheDuration, func(e *nodecache.Entry) (string, string, time.Duration, bool) {
		return e.Username, e.Password, TTLUntil(cfg.MaxCacheDuration, now, e.ExpiresAt), true
	}), nil
}
