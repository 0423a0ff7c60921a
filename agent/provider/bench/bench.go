// Package bench measures the kubelet's view of the credential provider plugin: the wall time of
// one exec with a request on stdin, as the kubelet runs it, against a baseline exec'd the same
// way in the same run (/bin/true, or a minimal Go program: the floor of any Go plugin). Execs of
// the commands alternate one by one, so load from elsewhere hits them alike. Run: go run
// ./agent/provider/cmd/providerbench (see docs/benchmarks.md).
package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/pullpass/pullpass/agent/nodecache"
)

// Config sets what is measured.
type Config struct {
	// Plugin is the built pullpass-credential-provider; "" builds ./cmd/pullpass-credential-provider
	// as it ships (static, stripped), from the module in the working directory.
	Plugin string
	// Baseline is the command to compare with; "go" builds a Go program that prints {} and exits,
	// the same way: the floor of any Go plugin.
	Baseline string
	Entries  int // registries in the cache (default 100)
	Runs     int // execs of each command per round (default 200)
	Rounds   int // rounds (default 5)
	// NoRecord also measures the plugin with --no-record: what counting requests costs.
	NoRecord bool
	// Also measures other builds of the plugin in the same loop (an older commit's, say), so
	// that load from elsewhere hits them alike.
	Also []string
}

// Command is one measured command's figures.
type Command struct {
	Name     string
	P50, P99 time.Duration
	// RoundP50 is the median of each round.
	RoundP50 []time.Duration
}

// Result is the baseline's figures, then the plugin's as the agent configures it (requests
// counted, generation recorded), then, with NoRecord, the plugin's without the record, then Also.
type Result struct {
	Commands []Command
}

// Run measures.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Entries == 0 {
		cfg.Entries = 100
	}
	if cfg.Runs == 0 {
		cfg.Runs = 200
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 5
	}
	dir, err := os.MkdirTemp("", "providerbench")
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if cfg.Plugin == "" {
		cfg.Plugin = filepath.Join(dir, "pullpass-credential-provider")
		if err := build(ctx, ".", "./cmd/pullpass-credential-provider", cfg.Plugin); err != nil {
			return Result{}, err
		}
	}
	baselineName := cfg.Baseline
	if cfg.Baseline == "go" {
		cfg.Baseline, baselineName = filepath.Join(dir, "empty-go-program"), "a Go program that prints {}"
		if err := buildEmptyProgram(ctx, filepath.Join(dir, "empty"), cfg.Baseline); err != nil {
			return Result{}, err
		}
	}
	cache := filepath.Join(dir, "credentials.json")
	req, want, err := WriteCache(cache, cfg.Entries)
	if err != nil {
		return Result{}, err
	}
	type command struct {
		name  string
		argv  []string
		check bool
	}
	cmds := []command{
		{name: baselineName + " (baseline)", argv: []string{cfg.Baseline}},
		{name: "pullpass-credential-provider", argv: []string{cfg.Plugin, "--cache=" + cache, "--max-cache-duration=1m0s", "--generation=bench"}, check: true},
	}
	if cfg.NoRecord {
		cmds = append(cmds, command{name: "pullpass-credential-provider --no-record", argv: []string{cfg.Plugin, "--cache=" + cache, "--no-record"}, check: true})
	}
	for _, p := range cfg.Also {
		cmds = append(cmds, command{name: p, argv: []string{p, "--cache=" + cache, "--max-cache-duration=1m0s", "--generation=bench"}, check: true})
	}
	all := make([][]time.Duration, len(cmds))
	rounds := make([][]time.Duration, len(cmds))
	for r := 0; r < cfg.Rounds; r++ {
		round := make([][]time.Duration, len(cmds))
		for i := 0; i < cfg.Runs; i++ {
			for j, c := range cmds {
				d, out, err := execOnce(ctx, c.argv, req)
				if err != nil {
					return Result{}, fmt.Errorf("%s: %w", c.name, err)
				}
				if c.check && !bytes.Contains(out, want) {
					return Result{}, fmt.Errorf("%s: unexpected answer %s", c.name, out)
				}
				round[j] = append(round[j], d)
			}
		}
		for j := range cmds {
			slices.Sort(round[j])
			rounds[j] = append(rounds[j], round[j][len(round[j])/2])
			all[j] = append(all[j], round[j]...)
		}
	}
	var res Result
	for j, c := range cmds {
		slices.Sort(all[j])
		res.Commands = append(res.Commands, Command{Name: c.name, P50: all[j][len(all[j])/2], P99: all[j][len(all[j])*99/100], RoundP50: rounds[j]})
	}
	return res, nil
}

// buildEmptyProgram builds, from a module written in src, a Go program that prints {} to out:
// the baseline of what any Go binary costs to exec.
func buildEmptyProgram(ctx context.Context, src, out string) error {
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module empty\n\ngo 1.26\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(emptyProgram), 0o644); err != nil {
		return err
	}
	return build(ctx, src, ".", out)
}

const emptyProgram = `package main

import "os"

func main() { _, _ = os.Stdout.WriteString("{}\n") }
`

// build builds a Go package as the plugin ships: static, stripped, no paths.
func build(ctx context.Context, dir, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %w: %s", pkg, err, b)
	}
	return nil
}

// WriteCache writes a node cache of n registries, one host each, and returns a request for an
// image served by one of them and what the answer must contain.
func WriteCache(path string, n int) (request, want []byte, err error) {
	var f nodecache.File
	for i := 0; i < n; i++ {
		f.Entries = append(f.Entries, nodecache.Entry{Registry: fmt.Sprintf("r%d", i), Hosts: []string{fmt.Sprintf("registry-%d.example.com", i)},
			Username: "u", Password: "p", ExpiresAt: time.Now().Add(time.Hour)})
	}
	if err := nodecache.Write(path, f); err != nil {
		return nil, nil, err
	}
	host := fmt.Sprintf("registry-%d.example.com", n/2)
	request = []byte(`{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"` + host + `/team/app"}`)
	return request, []byte(`"` + host + `"`), nil
}

func execOnce(ctx context.Context, argv []string, stdin []byte) (time.Duration, []byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	t0 := time.Now()
	err := cmd.Run()
	return time.Since(t0), stdout.Bytes(), err
}

// Ratio is a's p50 over b's, overall and the lowest and highest of the rounds' ratios.
func Ratio(a, b Command) (all, low, high float64) {
	all = float64(a.P50) / float64(b.P50)
	low, high = 1e9, 0
	for i := range a.RoundP50 {
		r := float64(a.RoundP50[i]) / float64(b.RoundP50[i])
		low, high = min(low, r), max(high, r)
	}
	return all, low, high
}
