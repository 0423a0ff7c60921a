// Command tokenbench measures what verifying the pod's service account token costs one exec of
// the token entry's plugin (pullpass-credential-provider-sa: an RS256 token checked against the
// issuer's keys, the answer from n grants) against the Cluster entry's plugin (the Cluster
// cache of n registries) and a minimal Go program, execs alternating one by one so load from
// elsewhere hits them alike, in the same run.
//
//	CGO_ENABLED=0 go build -ldflags=-s -trimpath -o /tmp/pullpass-credential-provider ./cmd/pullpass-credential-provider
//	CGO_ENABLED=0 go build -ldflags=-s -trimpath -o /tmp/pullpass-credential-provider-sa ./cmd/pullpass-credential-provider-sa
//	go run ./agent/provider/cmd/tokenbench -plugin /tmp/pullpass-credential-provider -token-plugin /tmp/pullpass-credential-provider-sa -baseline HELLO
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/agent/nodegrant"
	"github.com/pullpass/pullpass/agent/satoken"
	"github.com/pullpass/pullpass/agent/satoken/satokentest"
)

func main() {
	plugin := flag.String("plugin", "", "the built pullpass-credential-provider")
	tokenPlugin := flag.String("token-plugin", "", "the built pullpass-credential-provider-sa")
	baseline := flag.String("baseline", "/bin/true", "the baseline command: /bin/true, or a minimal Go program")
	runs := flag.Int("runs", 1000, "execs of each command")
	entries := flag.Int("entries", 100, "registries in the cache, and grants")
	flag.Parse()
	if *plugin == "" || *tokenPlugin == "" {
		fmt.Fprintln(os.Stderr, "tokenbench: -plugin and -token-plugin are required")
		os.Exit(2)
	}
	if err := run(*plugin, *tokenPlugin, *baseline, *runs, *entries); err != nil {
		fmt.Fprintln(os.Stderr, "tokenbench:", err)
		os.Exit(1)
	}
}

type command struct {
	name  string
	argv  []string
	stdin []byte
	want  []byte // what the answer must hold (nil: not checked)
	took  []time.Duration
}

func run(plugin, tokenPlugin, baseline string, runs, n int) error {
	dir, err := os.MkdirTemp("", "tokenbench")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	cache := filepath.Join(dir, "credentials.json")
	var f nodecache.File
	var g nodegrant.File
	for i := 0; i < n; i++ {
		host := fmt.Sprintf("registry-%d.example.com", i)
		f.Entries = append(f.Entries, nodecache.Entry{Registry: fmt.Sprintf("c%d", i), Hosts: []string{host}, Username: "u", Password: "p", ExpiresAt: time.Now().Add(time.Hour)})
		g.Grants = append(g.Grants, nodegrant.Grant{Registry: fmt.Sprintf("g%d", i), Hosts: []string{"ns." + host}, Username: "u", Password: "p",
			ExpiresAt: time.Now().Add(time.Hour), Namespaces: []string{"team-a", "team-b"}})
	}
	if err := nodecache.Write(cache, f); err != nil {
		return err
	}
	if err := nodegrant.Write(nodegrant.Path(cache), g); err != nil {
		return err
	}
	iss := satokentest.New("https://kubernetes.default.svc.cluster.local")
	if err := satoken.WriteKeys(satoken.KeysPath(cache), iss.Keys("node-1")); err != nil {
		return err
	}
	now := time.Now()
	tok := iss.Token(satokentest.Claims{Audience: []string{"pullpass.io"}, Namespace: "team-a", ServiceAccount: "default", Pod: "p", Node: "node-1",
		IssuedAt: now, Expiry: now.Add(time.Hour)})
	host := fmt.Sprintf("registry-%d.example.com", n/2)
	req := `{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"%s/team/app"%s}`
	cmds := []*command{
		{name: baseline + " (baseline)", argv: []string{baseline}},
		{name: fmt.Sprintf("pullpass-credential-provider, no token, %d-registry cache", n), argv: []string{plugin, "--cache=" + cache, "--max-cache-duration=1m0s", "--generation=bench"},
			stdin: fmt.Appendf(nil, req, host, ""), want: []byte(`"` + host + `"`)},
		{name: fmt.Sprintf("pullpass-credential-provider-sa, token verified (RS256), %d grants", n),
			argv:  []string{tokenPlugin, "--cache=" + cache, "--max-cache-duration=10s", "--service-account-token-audience=pullpass.io", "--generation=bench"},
			stdin: fmt.Appendf(nil, req, "ns."+host, `,"serviceAccountToken":"`+tok+`"`), want: []byte(`"ns.` + host + `"`)},
	}
	for i := 0; i < runs; i++ {
		for _, c := range cmds {
			cmd := exec.Command(c.argv[0], c.argv[1:]...)
			cmd.Stdin = bytes.NewReader(c.stdin)
			var out bytes.Buffer
			cmd.Stdout = &out
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			c.took = append(c.took, time.Since(t0))
			if c.want != nil && !bytes.Contains(out.Bytes(), c.want) {
				return fmt.Errorf("%s: unexpected answer %s", c.name, out.Bytes())
			}
		}
	}
	p := func(c *command, q int) time.Duration {
		slices.Sort(c.took)
		return c.took[len(c.took)*q/100]
	}
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	fmt.Printf("| command | p50 | p99 |\n|---|---|---|\n")
	for _, c := range cmds {
		fmt.Printf("| %s | %s | %s |\n", c.name, r(p(c, 50)), r(p(c, 99)))
	}
	base, plain, token := cmds[0], cmds[1], cmds[2]
	fmt.Printf("\ntoken / no-token: p50 %.2f, p99 %.2f; no-token / baseline: p50 %.2f; token / baseline: p50 %.2f (%d execs each, alternating)\n",
		float64(p(token, 50))/float64(p(plain, 50)), float64(p(token, 99))/float64(p(plain, 99)),
		float64(p(plain, 50))/float64(p(base, 50)), float64(p(token, 50))/float64(p(base, 50)), runs)
	return nil
}
