// Command providerbench compares one exec of the credential provider plugin with a baseline
// command, execs alternating, and prints p50/p99 and the ratios per round. Run from the
// repository's root, it builds the plugin as it ships and a minimal Go program as the baseline:
//
//	go run ./agent/provider/cmd/providerbench -compare-record
//	go run ./agent/provider/cmd/providerbench -baseline /bin/true
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
	flag.StringVar(&cfg.Plugin, "plugin", "", "a built pullpass-credential-provider (default: built from ./cmd/pullpass-credential-provider as it ships)")
	flag.StringVar(&cfg.Baseline, "baseline", "go", `the baseline command; "go": a minimal Go program, built as the plugin is`)
	flag.IntVar(&cfg.Entries, "entries", 100, "registries in the cache")
	flag.IntVar(&cfg.Runs, "runs", 200, "execs of each command per round")
	flag.IntVar(&cfg.Rounds, "rounds", 5, "rounds")
	flag.BoolVar(&cfg.NoRecord, "compare-record", false, "also measure the plugin with --no-record (the cost of counting requests)")
	flag.Func("also", "another build of the plugin to measure in the same loop (repeatable)", func(p string) error {
		cfg.Also = append(cfg.Also, p)
		return nil
	})
	flag.Parse()
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
