package rolecreds_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pullpass/pullpass/agent/nodegrant"
	"github.com/pullpass/pullpass/agent/provider/token"
	"github.com/pullpass/pullpass/agent/rolecreds"
	"github.com/pullpass/pullpass/agent/satoken"
	"github.com/pullpass/pullpass/agent/satoken/satokentest"
	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/credentials/ecr/ecrtest"
)

const (
	issuerURL = "https://kubernetes.default.svc.cluster.local"
	role      = "arn:aws:iam::123456789012:role/puller"
)

type node struct {
	cache  string
	issuer *satokentest.Issuer
	ecr    *ecrtest.Server
	srv    *rolecreds.Server
	reg    *prometheus.Registry
}

func newNode(t *testing.T) *node {
	t.Helper()
	n := &node{cache: filepath.Join(t.TempDir(), "credentials.json"), issuer: satokentest.New(issuerURL), reg: prometheus.NewRegistry()}
	if err := satoken.WriteKeys(satoken.KeysPath(n.cache), n.issuer.Keys("node-1")); err != nil {
		t.Fatal(err)
	}
	err := nodegrant.Write(nodegrant.Path(n.cache), nodegrant.File{Grants: []nodegrant.Grant{
		{Registry: "ecr", Hosts: []string{"123456789012.dkr.ecr.eu-west-1.amazonaws.com"}, Namespaces: []string{"team-a"}, ECR: &nodegrant.ECR{Region: "eu-west-1"}},
		{Registry: "plain", Hosts: []string{"ghcr.io"}, AllNamespaces: true, Username: "u", Password: "p"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	n.ecr = ecrtest.New(ecrtest.Reply{Username: "AWS", Password: "role-token", ExpiresAt: time.Now().Add(12 * time.Hour)})
	t.Cleanup(n.ecr.Close)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	n.srv, err = rolecreds.New(rolecreds.Config{CachePath: n.cache, Audience: "pullpass.io", NewSTS: rolecreds.NewSTSClient(n.ecr.URL),
		NewECR: ecr.NewAPI, Endpoint: n.ecr.URL, Registerer: n.reg})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *node) token(ns, sa string) string {
	now := time.Now()
	return n.issuer.Token(satokentest.Claims{Audience: []string{"pullpass.io"}, Namespace: ns, ServiceAccount: sa, Node: "node-1", IssuedAt: now, Expiry: now.Add(10 * time.Minute)})
}

// Through the real SDK against the local STS and ECR: STS is called with the pod's token, ECR
// with the role's temporary keys; the answer is cached per role and service account.
func TestExchangeThroughSTSAndECR(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	tok := n.token("team-a", "builder")
	resp := n.srv.Exchange(ctx, token.ExchangeRequest{Registry: "ecr", Role: role, Token: tok})
	if resp.Error != "" || resp.Username != "AWS" || resp.Password != "role-token" {
		t.Fatalf("exchange %+v", resp)
	}
	if got := n.ecr.WebIdentityRoles(); !slices.Equal(got, []string{role + " for system:serviceaccount:team-a:builder"}) {
		t.Fatalf("STS calls %v", got)
	}
	if keys := n.ecr.SigningKeys(); len(keys) != 1 || keys[0] != ecrtest.WebIdentityKey(role) {
		t.Fatalf("ECR signed by %v, want the role's key %s", keys, ecrtest.WebIdentityKey(role))
	}
	// Cached for the same service account; fetched again for another one with the same role.
	_ = n.srv.Exchange(ctx, token.ExchangeRequest{Registry: "ecr", Role: role, Token: n.token("team-a", "builder")})
	if got := len(n.ecr.WebIdentityRoles()); got != 1 {
		t.Fatalf("%d STS calls, want the cached answer", got)
	}
	_ = n.srv.Exchange(ctx, token.ExchangeRequest{Registry: "ecr", Role: role, Token: n.token("team-a", "web")})
	if got := n.ecr.WebIdentityRoles(); len(got) != 2 || !strings.HasSuffix(got[1], "team-a:web") {
		t.Fatalf("STS calls %v: another service account must ask STS itself", got)
	}
	want := `
# HELP pullpass_agent_role_exchanges_total ECR tokens asked of the node agent for service accounts' own roles, by result (fetched through STS and ECR, cached, refused, error).
# TYPE pullpass_agent_role_exchanges_total counter
pullpass_agent_role_exchanges_total{result="cached"} 1
pullpass_agent_role_exchanges_total{result="fetched"} 2
`
	if err := testutil.GatherAndCompare(n.reg, strings.NewReader(want), "pullpass_agent_role_exchanges_total"); err != nil {
		t.Fatal(err)
	}
}

// What is refused never reaches STS, or STS refuses it; no error quotes the token.
func TestExchangeRefusals(t *testing.T) {
	n := newNode(t)
	n.ecr.DenyWebIdentity("arn:aws:iam::123456789012:role/other-team")
	ctx := context.Background()
	good := n.token("team-a", "builder")
	tests := []struct {
		name string
		req  token.ExchangeRequest
		want string
		sts  bool
	}{
		{"namespace not granted", token.ExchangeRequest{Registry: "ecr", Role: role, Token: n.token("team-b", "builder")}, "not granted to team-b/builder", false},
		{"not an ECR registry", token.ExchangeRequest{Registry: "plain", Role: role, Token: good}, "not an ECR registry", false},
		{"unknown registry", token.ExchangeRequest{Registry: "nope", Role: role, Token: good}, "not an ECR registry", false},
		{"not a role", token.ExchangeRequest{Registry: "ecr", Role: "arn:aws:iam::123456789012:user/me", Token: good}, "not an IAM role ARN", false},
		{"forged token", token.ExchangeRequest{Registry: "ecr", Role: role, Token: satokentest.Impostor(issuerURL).Token(satokentest.Claims{Audience: []string{"pullpass.io"}, Namespace: "team-a", ServiceAccount: "builder", IssuedAt: time.Now(), Expiry: time.Now().Add(time.Hour)})}, "signature", false},
		{"role refuses the service account", token.ExchangeRequest{Registry: "ecr", Role: "arn:aws:iam::123456789012:role/other-team", Token: good}, "STS refused role", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(n.ecr.WebIdentityRoles())
			resp := n.srv.Exchange(ctx, tt.req)
			if !strings.Contains(resp.Error, tt.want) || resp.Password != "" {
				t.Fatalf("answer %+v, want an error with %q", resp, tt.want)
			}
			if strings.Contains(resp.Error, tt.req.Token[len(tt.req.Token)-16:]) {
				t.Fatalf("the error quotes the token: %s", resp.Error)
			}
			if called := len(n.ecr.WebIdentityRoles()) > before; called != tt.sts {
				t.Fatalf("STS called: %v, want %v", called, tt.sts)
			}
		})
	}
}

// The plugin's SocketExchanger and the agent's socket speak the same protocol.
func TestSocketRoundTrip(t *testing.T) {
	n := newNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the socket stopped: %v", err)
		}
	})
	ex := token.SocketExchanger{Path: token.SocketPath(n.cache), Timeout: 10 * time.Second}
	var resp token.ExchangeResponse
	var err error
	for range 50 { // the listener starts
		if resp, err = ex.Exchange(token.ExchangeRequest{Registry: "ecr", Role: role, Token: n.token("team-a", "builder")}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || resp.Password != "role-token" {
		t.Fatalf("over the socket: %+v, %v", resp, err)
	}
}
