package token_test

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/agent/nodegrant"
	"github.com/pullpass/pullpass/agent/provider"
	"github.com/pullpass/pullpass/agent/provider/token"
	"github.com/pullpass/pullpass/agent/satoken"
	"github.com/pullpass/pullpass/agent/satoken/satokentest"
)

const (
	issuerURL = "https://kubernetes.default.svc.cluster.local"
	audience  = "pullpass.io"
	role      = "arn:aws:iam::123456789012:role/puller"
)

var update = flag.Bool("update", false, "rewrite the golden responses")

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// run answers req as the token entry's plugin does.
func run(cache string, c token.Config, req io.Reader, out io.Writer) error {
	return provider.Run(provider.Config{CachePath: cache, MaxCacheDuration: 10 * time.Second, Lookup: c.Lookup,
		Now: func() time.Time { return now }}, req, out)
}

// writeGrants lays out a node in token mode: the issuer's keys, the grants, and a Cluster cache
// the token entry must never serve from.
func writeGrants(t *testing.T) string {
	t.Helper()
	cache := filepath.Join(t.TempDir(), "credentials.json")
	if err := nodecache.Write(cache, nodecache.File{Entries: []nodecache.Entry{{Registry: "everyone", Hosts: []string{"quay.io/everyone"}, Username: "u", Password: "cluster-secret"}}}); err != nil {
		t.Fatal(err)
	}
	if err := satoken.WriteKeys(satoken.KeysPath(cache), satokentest.New(issuerURL).Keys("node-1")); err != nil {
		t.Fatal(err)
	}
	err := nodegrant.Write(nodegrant.Path(cache), nodegrant.File{Grants: []nodegrant.Grant{
		{Registry: "team", Hosts: []string{"ghcr.io/team"}, Username: "robot", Password: "team-secret", Namespaces: []string{"team-a"},
			ServiceAccounts: &nodegrant.ServiceAccounts{Names: []string{"builder"}, Annotated: true}},
		{Registry: "ecr", Hosts: []string{"123456789012.dkr.ecr.eu-west-1.amazonaws.com"}, Username: "AWS", Password: "node-ecr-token",
			ExpiresAt: now.Add(30 * time.Minute), AllNamespaces: true, ECR: &nodegrant.ECR{Region: "eu-west-1"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return cache
}

// tokens are the tokens of the golden requests, by name.
func tokens() map[string]string {
	iss := satokentest.New(issuerURL)
	tok := func(mutate func(*satokentest.Claims)) string {
		c := satokentest.Claims{Audience: []string{audience}, Namespace: "team-a", ServiceAccount: "builder", Pod: "app-1", Node: "node-1",
			IssuedAt: now.Add(-time.Minute), Expiry: now.Add(time.Hour)}
		if mutate != nil {
			mutate(&c)
		}
		return iss.Token(c)
	}
	web := tok(func(c *satokentest.Claims) { c.ServiceAccount = "web" })
	teamB := tok(func(c *satokentest.Claims) { c.Namespace, c.ServiceAccount = "team-b", "default" })
	return map[string]string{
		"valid":                            tok(nil),
		"expired":                          tok(func(c *satokentest.Claims) { c.IssuedAt, c.Expiry = now.Add(-2*time.Hour), now.Add(-time.Hour) }),
		"wrong-audience":                   tok(func(c *satokentest.Claims) { c.Audience = []string{"https://kubernetes.default.svc"} }),
		"bad-signature":                    satokentest.Impostor(issuerURL).Token(satokentest.Claims{Audience: []string{audience}, Namespace: "team-a", ServiceAccount: "builder", IssuedAt: now, Expiry: now.Add(time.Hour)}),
		"another-issuer":                   satokentest.New("https://oidc.example.com").Token(satokentest.Claims{Audience: []string{audience}, Namespace: "team-a", ServiceAccount: "builder", IssuedAt: now, Expiry: now.Add(time.Hour)}),
		"missing-namespace":                tok(func(c *satokentest.Claims) { c.Namespace, c.Subject = "", "system:serviceaccount:team-a:builder" }),
		"other-node":                       tok(func(c *satokentest.Claims) { c.Node = "node-2" }),
		"namespace-not-allowed":            tok(func(c *satokentest.Claims) { c.Namespace = "team-b" }),
		"service-account-not-allowed":      web,
		"annotated-service-account":        web,
		"no-match":                         tok(nil),
		"cluster-registry-not-served-here": tok(nil),
		"ecr-node-credentials":             teamB,
		"ecr-role":                         teamB,
		"no-token":                         "",
	}
}

// exchanger is the node agent's socket, faked: it answers role's token and records what it got.
type exchanger struct{ got []token.ExchangeRequest }

func (e *exchanger) Exchange(req token.ExchangeRequest) (token.ExchangeResponse, error) {
	e.got = append(e.got, req)
	if req.Role != role {
		return token.ExchangeResponse{Error: "not this role"}, nil
	}
	return token.ExchangeResponse{Username: "AWS", Password: "role-ecr-token", ExpiresAt: now.Add(12 * time.Hour)}, nil
}

// Byte-for-byte, with tokens: each testdata/*.request.json (its token put in for $TOKEN)
// is answered with its .response.json, or refused with its .error. Only a verified token of an
// allowed namespace and service account gets credentials.
func TestGoldenWithTokens(t *testing.T) {
	cache := writeGrants(t)
	toks := tokens()
	reqs, _ := filepath.Glob("testdata/*.request.json")
	if len(reqs) != len(toks) {
		t.Fatalf("%d golden requests for %d tokens", len(reqs), len(toks))
	}
	for _, req := range reqs {
		name := strings.TrimSuffix(filepath.Base(req), ".request.json")
		t.Run(name, func(t *testing.T) {
			tok, ok := toks[name]
			if !ok {
				t.Fatalf("no token for %s", name)
			}
			in, err := os.ReadFile(req)
			if err != nil {
				t.Fatal(err)
			}
			in = bytes.ReplaceAll(in, []byte("$TOKEN"), []byte(tok))
			ex := &exchanger{}
			var out bytes.Buffer
			err = run(cache, token.Config{Audience: audience, Exchange: ex}, bytes.NewReader(in), &out)
			base := strings.TrimSuffix(req, ".request.json")
			got, golden := out.Bytes(), base+".response.json"
			if err != nil {
				got, golden = []byte(err.Error()+"\n"), base+".error"
				if out.Len() != 0 {
					t.Fatalf("refused, and wrote %s", out.Bytes())
				}
				if tok != "" && strings.Contains(err.Error(), tok[len(tok)-16:]) {
					t.Fatalf("the error quotes the token: %v", err)
				}
			}
			if *update {
				_ = os.WriteFile(golden, got, 0o644)
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (answer %s)", rerr, got)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("answer\n%s\nwant\n%s", got, want)
			}
			if bytes.Contains(got, []byte("cluster-secret")) {
				t.Fatal("the token entry served a Cluster registry")
			}
			if name == "ecr-role" && (len(ex.got) != 1 || ex.got[0].Token != tok || ex.got[0].Registry != "ecr") {
				t.Fatalf("the agent was asked %+v, want the pod's token for registry ecr", ex.got)
			} else if name != "ecr-role" && len(ex.got) != 0 {
				t.Fatalf("the agent was asked %+v", ex.got)
			}
		})
	}
}

// Without the issuer's keys (the agent has not fetched them) a token cannot be verified: an
// error, never an answer.
func TestTokenWithoutKeys(t *testing.T) {
	cache := writeGrants(t)
	_ = os.Remove(satoken.KeysPath(cache))
	req := `{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"ghcr.io/team/app","serviceAccountToken":"` + tokens()["valid"] + `"}`
	var out bytes.Buffer
	err := run(cache, token.Config{Audience: audience}, strings.NewReader(req), &out)
	if !errors.Is(err, satoken.ErrNoKeys) || out.Len() != 0 {
		t.Fatalf("error %v, output %q", err, out.String())
	}
}
