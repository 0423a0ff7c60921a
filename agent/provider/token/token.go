// Package token is the token entry's lookup (KEP-4412): the kubelet runs the plugin of
// cmd/pullpass-credential-provider-sa with the pod's service account token, which it verifies,
// and answers from the grants of Namespaced registries with delivery Node only. A package of its
// own so that the Cluster entry's plugin, exec'd for every pull of a served host, links none of it.
package token

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pullpass/pullpass/agent/nodegrant"
	"github.com/pullpass/pullpass/agent/provider"
	"github.com/pullpass/pullpass/agent/satoken"
	"github.com/pullpass/pullpass/pkg/match"
)

// Annotations the kubelet passes the token entry (install.ServiceAccountAnnotations).
const (
	annotationRegistries = "pullpass.io/registries"
	annotationRole       = "pullpass.io/ecr-role-arn"
	annotationEKSRole    = "eks.amazonaws.com/ecr-role-arn"
)

// Exchanger gets the ECR token of role for a pod's service account token: the node agent, over
// its socket beside the cache, calls STS AssumeRoleWithWebIdentity with the pod's token and
// ECR GetAuthorizationToken with the role's keys.
type Exchanger interface {
	Exchange(req ExchangeRequest) (ExchangeResponse, error)
}

// ExchangeRequest asks the agent for registry's token as role, proven by Token.
type ExchangeRequest struct {
	Registry string `json:"registry"`
	Role     string `json:"role"`
	Token    string `json:"token"`
}

// ExchangeResponse is the role's registry credentials.
type ExchangeResponse struct {
	Username  string    `json:"username,omitempty"`
	Password  string    `json:"password,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// Error says why there are none (never quoting a token or a key).
	Error string `json:"error,omitempty"`
}

// Config configures the token entry's lookup.
type Config struct {
	// Audience is the audience the pod's token must carry (the provider entry's
	// tokenAttributes.serviceAccountTokenAudience).
	Audience string
	// Exchange gets a role's ECR token for a pod's token from the node agent (nil: roles are
	// not served).
	Exchange Exchanger
}

// Lookup answers the token entry: the credentials of the Namespaced registries that
// match the image's host and allow the namespace and service account the pod's token proves
// (answered for the host, or for the image alone, as the Cluster lookup does; the kubelet keeps token
// entry answers per service account). Anything else gets nothing: no token, a namespace or
// service account not allowed, no match. A token that does not verify is an error that says why
// (never the token).
func (c Config) Lookup(cfg provider.Config, req provider.Request) (provider.Answer, error) {
	if req.ServiceAccountToken == "" {
		// A pod with no service account (the kubelet's requireServiceAccount keeps these
		// away): nothing is ever served without a token.
		return provider.Answer{}, nil
	}
	keys, err := satoken.ReadKeys(satoken.KeysPath(cfg.CachePath))
	if err != nil {
		return provider.Answer{}, fmt.Errorf("cannot verify the service account token: %w", err)
	}
	v, err := satoken.NewVerifier(keys, c.Audience)
	if err != nil {
		return provider.Answer{}, fmt.Errorf("cannot verify the service account token: %w", err)
	}
	now := cfg.Now()
	claims, err := v.Verify(req.ServiceAccountToken, now)
	if err != nil {
		return provider.Answer{}, fmt.Errorf("service account token refused: %w", err)
	}
	f, err := nodegrant.Read(nodegrant.Path(cfg.CachePath))
	if errors.Is(err, nodegrant.ErrNoFile) {
		return provider.Answer{}, nil
	}
	if err != nil {
		return provider.Answer{}, err
	}
	annotations := req.ServiceAccountAnnotations
	role := roleOf(annotations)
	entries := func(yield func(match.Raw[*nodegrant.Grant]) bool) {
		for i := range f.Grants {
			g := &f.Grants[i]
			if !g.Allows(claims.Namespace, claims.ServiceAccount, annotations[annotationRegistries]) {
				continue
			}
			if !g.ExpiresAt.IsZero() && !g.ExpiresAt.After(now) && g.ECR == nil {
				continue // expired: never served
			}
			for _, h := range g.Hosts {
				if !yield(match.Raw[*nodegrant.Grant]{Name: g.Registry, Pattern: h, Value: g}) {
					return
				}
			}
		}
	}
	h := match.AnswerForHost(req.Image, entries)
	exchanges := func(g *nodegrant.Grant) bool { return g.ECR != nil && role != "" }
	if h.Uniform && role != "" {
		// A role's token costs the agent a call to STS and ECR: fetched for the image's own
		// registry only, so an answer holding another's is given for the image alone.
		for _, k := range h.Keys {
			if exchanges(k.Value) && (!h.Found || k.Value != h.Best.Value) {
				h.Uniform = false
				break
			}
		}
	}
	var exchangeErr error
	a := provider.AnswerOf(h, cfg.MaxCacheDuration, func(g *nodegrant.Grant) (string, string, time.Duration, bool) {
		user, pass, expires := g.Username, g.Password, g.ExpiresAt
		if exchanges(g) {
			if c.Exchange == nil {
				exchangeErr = errors.New("the service account brings an ECR role, and this plugin cannot reach the node agent to use it")
				return "", "", 0, false
			}
			resp, err := c.Exchange.Exchange(ExchangeRequest{Registry: g.Registry, Role: role, Token: req.ServiceAccountToken})
			if err == nil && resp.Error != "" {
				err = errors.New(resp.Error)
			}
			if err != nil {
				exchangeErr = fmt.Errorf("the node agent's ECR token for role %s: %w", role, err)
				return "", "", 0, false
			}
			user, pass, expires = resp.Username, resp.Password, resp.ExpiresAt
		}
		if pass == "" || (!expires.IsZero() && !expires.After(now)) {
			return "", "", 0, false
		}
		return user, pass, provider.TTLUntil(cfg.MaxCacheDuration, now, expires), true
	})
	if exchangeErr != nil {
		return provider.Answer{}, exchangeErr
	}
	return a, nil
}

// roleOf is the ECR role a service account brings: pullpass's annotation, else EKS's.
func roleOf(annotations map[string]string) string {
	if r := strings.TrimSpace(annotations[annotationRole]); r != "" {
		return r
	}
	return strings.TrimSpace(annotations[annotationEKSRole])
}
