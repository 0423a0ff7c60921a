package provider

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/nodegrant"
	"github.com/pullpass/pullpass/pkg/satoken"
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

// lookupWithToken answers the token entry: the credentials of the Namespaced registry that
// matches the image and allows the namespace and service account the pod's token proves.
// Anything else gets nothing: no token, a namespace or service account not allowed, no match.
// A token that does not verify is an error that says why (never the token).
func lookupWithToken(cfg Config, req request) (map[string][2]string, time.Duration, error) {
	if req.ServiceAccountToken == "" {
		// A pod with no service account (the kubelet's requireServiceAccount keeps these
		// away): nothing is ever served without a token.
		return map[string][2]string{}, cfg.MaxCacheDuration, nil
	}
	keys, err := satoken.ReadKeys(satoken.KeysPath(cfg.CachePath))
	if err != nil {
		return nil, 0, fmt.Errorf("cannot verify the service account token: %w", err)
	}
	v, err := satoken.NewVerifier(keys, cfg.TokenAudience)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot verify the service account token: %w", err)
	}
	now := cfg.Now()
	claims, err := v.Verify(req.ServiceAccountToken, now)
	if err != nil {
		return nil, 0, fmt.Errorf("service account token refused: %w", err)
	}
	f, err := nodegrant.Read(nodegrant.Path(cfg.CachePath))
	if errors.Is(err, nodegrant.ErrNoFile) {
		return map[string][2]string{}, 10 * time.Second, nil
	}
	if err != nil {
		return nil, 0, err
	}
	annotations := req.ServiceAccountAnnotations
	var entries []match.Entry[*nodegrant.Grant]
	for i := range f.Grants {
		g := &f.Grants[i]
		if !g.Allows(claims.Namespace, claims.ServiceAccount, annotations[annotationRegistries]) {
			continue
		}
		if !g.ExpiresAt.IsZero() && !g.ExpiresAt.After(now) && g.ECR == nil {
			continue // expired: never served
		}
		for _, h := range g.Hosts {
			p, err := match.ParsePattern(h)
			if err != nil {
				continue
			}
			entries = append(entries, match.Entry[*nodegrant.Grant]{Name: g.Registry, Pattern: p, Value: g})
		}
	}
	m, ok := match.NewTable(entries).Lookup(req.Image)
	if !ok {
		return map[string][2]string{}, cfg.MaxCacheDuration, nil
	}
	g := m.Value
	user, pass, expires := g.Username, g.Password, g.ExpiresAt
	if role := roleOf(annotations); g.ECR != nil && role != "" {
		if cfg.Exchange == nil {
			return nil, 0, errors.New("the service account brings an ECR role, and this plugin cannot reach the node agent to use it")
		}
		resp, err := cfg.Exchange.Exchange(ExchangeRequest{Registry: g.Registry, Role: role, Token: req.ServiceAccountToken})
		if err != nil {
			return nil, 0, fmt.Errorf("the node agent's ECR token for role %s: %w", role, err)
		}
		if resp.Error != "" {
			return nil, 0, fmt.Errorf("the node agent's ECR token for role %s: %s", role, resp.Error)
		}
		user, pass, expires = resp.Username, resp.Password, resp.ExpiresAt
	}
	if pass == "" || (!expires.IsZero() && !expires.After(now)) {
		return map[string][2]string{}, cfg.MaxCacheDuration, nil
	}
	ttl := cfg.MaxCacheDuration
	if !expires.IsZero() {
		if left := expires.Sub(now) - time.Minute; left < ttl {
			ttl = max(left, time.Second)
		}
	}
	return map[string][2]string{m.Pattern.String(): {user, pass}}, ttl, nil
}

// roleOf is the ECR role a service account brings: pullpass's annotation, else EKS's.
func roleOf(annotations map[string]string) string {
	if r := strings.TrimSpace(annotations[annotationRole]); r != "" {
		return r
	}
	return strings.TrimSpace(annotations[annotationEKSRole])
}
