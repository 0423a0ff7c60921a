// Command providerbench measures the kubelet's view of the credential provider plugin: the wall
// time of one exec with a request on stdin, as the kubelet runs it, p50 and p99 over many runs,
// against a baseline exec'd the same way in the same run: /bin/true, or (-baseline) a minimal
// Go program, the floor of any Go plugin.
//
//	go build -o /tmp/pullpass-credential-provider ./cmd/pullpass-credential-provider
//	go run ./agent/provider/cmd/providerbench -plugin /tmp/pullpass-credential-provider
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

	"github.com/pullpass/pullpass/pkg/nodecache"
)

func main() {
	plugin := flag.String("plugin", "", "the built pullpass-credential-provider")
	runs := flag.Int("runs", 500, "execs per command")
	entries := flag.Int("entries", 100, "registries in the cache")
	baseline := flag.String("baseline", "/bin/true", "the baseline command: /bin/true, or a minimal Go program")
	compareRecord := flag.Bool("compare-record", false, "also measure the plugin with --no-record (the cost of counting requests)")
	flag.Parse()
	if *plugin == "" {
		fmt.Fprintln(os.Stderr, "providerbench: -plugin is required")
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "providerbench")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	cache := filepath.Join(dir, "credentials.json")
	var f nodecache.File
	for i := 0; i < *entries; i++ {
		f.Entries = append(f.Entries, nodecache.Entry{Registry: fmt.Sprintf("r%d", i), Hosts: []string{fmt.Sprintf("registry-%d.example.com", i)},
			Username: "u", Password: "p", ExpiresAt: time.Now().Add(time.Hour)})
	}
	if err := nodecache.Write(cache, f); err != nil {
		panic(err)
	}
	req := []byte(`{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"registry-57.example.com/team/app"}`)
	measure := func(name string, args ...string) []time.Duration {
		var out []time.Duration
		for i := 0; i < *runs; i++ {
			cmd := exec.Command(name, args...)
			cmd.Stdin = bytes.NewReader(req)
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "providerbench:", name, err)
				os.Exit(1)
			}
			out = append(out, time.Since(t0))
			if name == *plugin && !bytes.Contains(stdout.Bytes(), []byte(`"registry-57.example.com"`)) {
				fmt.Fprintf(os.Stderr, "providerbench: unexpected answer %s\n", stdout.Bytes())
				os.Exit(1)
			}
		}
		slices.Sort(out)
		return out
	}
	base := measure(*baseline)
	// As the agent configures it: requests counted, the config generation recorded.
	pp := measure(*plugin, "--cache="+cache, "--max-cache-duration=1m0s", "--generation=bench")
	var quiet []time.Duration
	if *compareRecord {
		quiet = measure(*plugin, "--cache="+cache, "--no-record")
	}
	p := func(l []time.Duration, q int) time.Duration { return l[len(l)*q/100].Round(10 * time.Microsecond) }
	fmt.Printf("| command | p50 | p99 |\n|---|---|---|\n")
	fmt.Printf("| %s (baseline) | %s | %s |\n", *baseline, p(base, 50), p(base, 99))
	fmt.Printf("| pullpass-credential-provider, %d-registry cache | %s | %s |\n", *entries, p(pp, 50), p(pp, 99))
	if quiet != nil {
		fmt.Printf("| pullpass-credential-provider --no-record | %s | %s |\n", p(quiet, 50), p(quiet, 99))
	}
	fmt.Printf("\nplugin/baseline: p50 %.2f, p99 %.2f\n", float64(p(pp, 50))/float64(p(base, 50)), float64(p(pp, 99))/float64(p(base, 99)))
}
