// Command providerbench compares one exec of the credential provider plugin with a baseline
// command, execs alternating, and prints p50/p99 and the ratios per round.
//
//	CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /tmp/pullpass-credential-provider ./cmd/pullpass-credential-provider
//	go run ./agent/provider/cmd/providerbench -plugin /tmp/pullpass-credential-provider -baseline /tmp/hello
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/pullpass/pullpass/agent/provider/bench"
)

func main() {
	var cfg bench.Config
	flag.StringVar(&cfg.Plugin, "plugin", "", "the built pullpass-credential-provider")
	flag.StringVar(&cfg.Baseline, "baseline", "/bin/true", "the baseline command: /bin/true, or a minimal Go program")
	flag.IntVar(&cfg.Entries, "entries", 100, "registries in the cache")
	flag.IntVar(&cfg.Runs, "runs", 200, "execs of each command per round")
	flag.IntVar(&cfg.Rounds, "rounds", 5, "rounds")
	flag.BoolVar(&cfg.NoRecord, "compare-record", false, "also measure the plugin with --no-record (the cost of counting requests)")
	flag.Parse()
	if cfg.Plugin == "" {
		fmt.Fprintln(os.Stderr, "providerbench: -plugin is required")
		os.Exit(2)
	}
	res, err := bench.Run(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "providerbench:", err)
		os.Exit(1)
	}
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	base := res.Commands[0]
	fmt.Printf("| command | p50 | p99 | p50 / baseline (rounds' range) |\n|---|---|---|---|\n")
	for _, c := range res.Commands {
		all, low, high := bench.Ratio(c, base)
		fmt.Printf("| %s | %s | %s | %.2f (%.2f-%.2f) |\n", c.Name, r(c.P50), r(c.P99), all, low, high)
	}
	fmt.Printf("\n%d-registry cache, %d rounds of %d execs of each command, alternating\n", cfg.Entries, cfg.Rounds, cfg.Runs)
}
