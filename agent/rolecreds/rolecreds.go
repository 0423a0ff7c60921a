// Package rolecreds serves ECR tokens per service account role on the node agent's socket: the
// plugin's token entry brings a pod's service account token and the role its ServiceAccount is
// annotated with (pullpass.io/ecr-role-arn, or EKS's eks.amazonaws.com/ecr-role-arn); the agent
// verifies the token, checks the registry's grant allows its namespace, calls STS
// AssumeRoleWithWebIdentity with it, and ECR GetAuthorizationToken with the role's temporary
// keys. Tokens are cached per role and service account: STS's trust policy decides which service
// accounts may assume a role, so an answer STS gave one service account is never handed to
// another that carries the same annotation.
package rolecreds

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullpass/pullpass/agent/nodegrant"
	"github.com/pullpass/pullpass/agent/provider/token"
	"github.com/pullpass/pullpass/agent/satoken"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
)

// STS is the one STS call made here.
type STS interface {
	AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error)
}

// Config configures a Server.
type Config struct {
	// CachePath is the node cache: the socket, the keys and the grants are beside it.
	CachePath string
	// Audience of the tokens the plugin passes on.
	Audience string
	// NewSTS builds an STS client for a region (NewSTSClient in production).
	NewSTS func(ctx context.Context, region string) (STS, error)
	// NewECR builds an ECR client (ecr.NewAPI in production).
	NewECR func(ctx context.Context, c ecr.ClientConfig) (ecr.API, error)
	// Endpoint overrides the ECR endpoint (a local ECR API in tests).
	Endpoint string
	// Timeout bounds one exchange (default 30 s).
	Timeout time.Duration
	// Registerer, when set, gets pullpass_agent_role_exchanges_total.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
}

// Server answers the plugin.
type Server struct {
	cfg       Config
	exchanges *prometheus.CounterVec
	mu        sync.Mutex
	cache     map[string]token.ExchangeResponse // by role and namespace/service account
}

// Results of an exchange (the metric's label).
const (
	ResultFetched = "fetched"
	ResultCached  = "cached"
	ResultRefused = "refused" // the token, the grant or STS said no
	ResultError   = "error"
)

// roleARN is what the CRD accepts as an IAM role.
var roleARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.CachePath == "" || cfg.Audience == "" || cfg.NewSTS == nil || cfg.NewECR == nil {
		return nil, errors.New("invalid configuration: cache path, audience, STS and ECR factories are required")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, cache: map[string]token.ExchangeResponse{}}
	s.exchanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullpass_agent_role_exchanges_total",
		Help: "ECR tokens asked of the node agent for service accounts' own roles, by result (fetched through STS and ECR, cached, refused, error).",
	}, []string{"result"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.exchanges); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Serve listens on the socket beside the cache until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	path := token.SocketPath(s.cfg.CachePath)
	_ = os.Remove(path) // a socket a stopped agent left
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("agent socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return fmt.Errorf("agent socket: %w", err)
	}
	go func() { <-ctx.Done(); _ = ln.Close() }()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				_ = os.Remove(path)
				return nil
			}
			return fmt.Errorf("agent socket: %w", err)
		}
		go s.handle(ctx, conn)
	}
}

func (s *Server) handle(ctx context.Context, conn net.Conn) {
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(s.cfg.Timeout + 5*time.Second))
	var req token.ExchangeRequest
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
		_ = json.NewEncoder(conn).Encode(token.ExchangeResponse{Error: "not an exchange request"})
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	resp := s.Exchange(ctx, req)
	_ = json.NewEncoder(conn).Encode(resp)
}

// Exchange answers one request.
func (s *Server) Exchange(ctx context.Context, req token.ExchangeRequest) token.ExchangeResponse {
	resp, result := s.exchange(ctx, req)
	s.exchanges.WithLabelValues(result).Inc()
	if resp.Error != "" {
		s.cfg.Logger.Warn("no ECR token for a service account's role", "registry", req.Registry, "role", req.Role, "result", result, "err", resp.Error)
	}
	return resp
}

func refuse(format string, args ...any) (token.ExchangeResponse, string) {
	return token.ExchangeResponse{Error: fmt.Sprintf(format, args...)}, ResultRefused
}

func (s *Server) exchange(ctx context.Context, req token.ExchangeRequest) (token.ExchangeResponse, string) {
	now := s.cfg.Now()
	if !roleARN.MatchString(req.Role) {
		return refuse("%q is not an IAM role ARN", req.Role)
	}
	keys, err := satoken.ReadKeys(satoken.KeysPath(s.cfg.CachePath))
	if err != nil {
		return token.ExchangeResponse{Error: err.Error()}, ResultError
	}
	v, err := satoken.NewVerifier(keys, s.cfg.Audience)
	if err != nil {
		return token.ExchangeResponse{Error: err.Error()}, ResultError
	}
	claims, err := v.Verify(req.Token, now)
	if err != nil {
		return refuse("service account token refused: %v", err)
	}
	g, err := s.grant(req.Registry)
	if err != nil {
		return token.ExchangeResponse{Error: err.Error()}, ResultError
	}
	if g == nil || g.ECR == nil {
		return refuse("registry %s is not an ECR registry served by this node", req.Registry)
	}
	if !grantedTo(g, claims) {
		return refuse("registry %s is not granted to %s/%s", req.Registry, claims.Namespace, claims.ServiceAccount)
	}
	key := req.Role + "|" + g.ECR.Region + "|" + claims.Namespace + "/" + claims.ServiceAccount
	s.mu.Lock()
	cached, ok := s.cache[key]
	s.mu.Unlock()
	// A cached token still good for a quarter hour serves: the kubelet keeps it far less.
	if ok && cached.ExpiresAt.After(now.Add(15*time.Minute)) {
		return cached, ResultCached
	}
	stsAPI, err := s.cfg.NewSTS(ctx, g.ECR.Region)
	if err != nil {
		return token.ExchangeResponse{Error: err.Error()}, ResultError
	}
	out, err := stsAPI.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn:          aws.String(req.Role),
		RoleSessionName:  aws.String(sessionName(claims)),
		WebIdentityToken: aws.String(req.Token),
	})
	if err != nil {
		var e *ecr.Error
		if errors.As(ecr.Classify(err), &e) && e.Reason == ecr.ReasonAccessDenied {
			return refuse("STS refused role %s to %s/%s: %v", req.Role, claims.Namespace, claims.ServiceAccount, e.Err)
		}
		return token.ExchangeResponse{Error: fmt.Sprintf("STS AssumeRoleWithWebIdentity: %v", ecr.Classify(err))}, ResultError
	}
	c := out.Credentials
	if c == nil || c.AccessKeyId == nil || c.SecretAccessKey == nil {
		return token.ExchangeResponse{Error: "STS returned no credentials"}, ResultError
	}
	api, err := s.cfg.NewECR(ctx, ecr.ClientConfig{Region: g.ECR.Region, Endpoint: s.cfg.Endpoint,
		Keys: &ecr.Keys{AccessKeyID: *c.AccessKeyId, SecretAccessKey: *c.SecretAccessKey, SessionToken: aws.ToString(c.SessionToken)}})
	if err != nil {
		return token.ExchangeResponse{Error: err.Error()}, ResultError
	}
	tok, err := ecr.Fetch(ctx, api, now)
	if err != nil {
		return token.ExchangeResponse{Error: err.Error()}, ResultError
	}
	resp := token.ExchangeResponse{Username: tok.Username, Password: tok.Password, ExpiresAt: tok.ExpiresAt}
	// A token from temporary keys lasts no longer than they do.
	if c.Expiration != nil && c.Expiration.Before(resp.ExpiresAt) {
		resp.ExpiresAt = *c.Expiration
	}
	s.mu.Lock()
	s.cache[key] = resp
	for k, v := range s.cache {
		if !v.ExpiresAt.After(now) {
			delete(s.cache, k)
		}
	}
	s.mu.Unlock()
	s.cfg.Logger.Info("ECR token fetched for a service account's role", "registry", req.Registry, "role", req.Role,
		"serviceAccount", claims.Namespace+"/"+claims.ServiceAccount, "expiresAt", resp.ExpiresAt)
	return resp, ResultFetched
}

// grantedTo checks the grant's namespaces and named service accounts against the verified claims.
// An annotation opt-in is the plugin's to check: the kubelet gives it the annotations.
func grantedTo(g *nodegrant.Grant, c satoken.Claims) bool {
	if !g.AllNamespaces && !slices.Contains(g.Namespaces, c.Namespace) {
		return false
	}
	sa := g.ServiceAccounts
	return sa == nil || sa.Annotated || slices.Contains(sa.Names, c.ServiceAccount)
}

// grant reads registry's grant from the grants file (nil: none).
func (s *Server) grant(registry string) (*nodegrant.Grant, error) {
	f, err := nodegrant.Read(nodegrant.Path(s.cfg.CachePath))
	if errors.Is(err, nodegrant.ErrNoFile) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for i := range f.Grants {
		if f.Grants[i].Registry == registry {
			return &f.Grants[i], nil
		}
	}
	return nil, nil
}

// sessionName names the STS session after the service account (CloudTrail shows it), within
// STS's 64 characters of [\w+=,.@-].
func sessionName(c satoken.Claims) string {
	n := "pullpass@" + c.Namespace + "." + c.ServiceAccount
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

// NewSTSClient builds an STS client for region, unsigned (AssumeRoleWithWebIdentity is proven by
// the token alone), at endpoint when set.
func NewSTSClient(endpoint string) func(ctx context.Context, region string) (STS, error) {
	return func(_ context.Context, region string) (STS, error) {
		if region == "" {
			return nil, errors.New("sts: no region")
		}
		return sts.New(sts.Options{Region: region, Credentials: aws.AnonymousCredentials{}}, func(o *sts.Options) {
			if endpoint != "" {
				o.BaseEndpoint = aws.String(endpoint)
			}
		}), nil
	}
}
