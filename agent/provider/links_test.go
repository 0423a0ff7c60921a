package provider_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The Cluster entry's plugin is exec'd for every pull of a served host: it links none of the
// token entry's verification (go-jose, the issuer's keys, the agent's socket), whose package
// inits and bigger binary cost every exec (docs/benchmarks.md, issue #23).
func TestClusterPluginLinksNoTokenVerification(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/pullpass/pullpass/cmd/pullpass-credential-provider").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/go-jose/", "github.com/pullpass/pullpass/agent/satoken", "github.com/pullpass/pullpass/agent/provider/token", "crypto/rsa", "net"} {
			if pkg == banned || strings.HasPrefix(pkg, banned) && strings.HasSuffix(banned, "/") {
				t.Errorf("the Cluster plugin links %s", pkg)
			}
		}
	}
	if !strings.Contains(string(out), "github.com/pullpass/pullpass/agent/provider\n") {
		t.Fatalf("go list printed no agent/provider: %s", out)
	}
}
