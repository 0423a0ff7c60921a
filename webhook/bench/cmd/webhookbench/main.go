// Command webhookbench compares pullpass's webhook with a no-op kubewebhook mutator over HTTPS
// on loopback and prints p50/p99 latency and reviews/s for both, and their ratios. With -cpu N it
// measures the handlers alone instead, by the CPU time N reviews cost each, in turns.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/pullpass/pullpass/webhook/bench"
)

func main() {
	var cfg bench.Config
	flag.IntVar(&cfg.Registries, "registries", 1000, "registry table size")
	flag.IntVar(&cfg.Containers, "containers", 10, "containers per pod")
	flag.IntVar(&cfg.Concurrency, "concurrency", 8, "concurrent clients")
	flag.DurationVar(&cfg.Round, "round", 5*time.Second, "length of one round")
	flag.IntVar(&cfg.Rounds, "rounds", 6, "rounds per server, interleaved")
	flag.BoolVar(&cfg.PullThrough, "pull-through", false, "a pull-through cache of Docker Hub in the table, and half the pod's images rewritten to it")
	cpu := flag.Int("cpu", 0, "measure CPU time per review of the handlers alone, this many reviews per round")
	flag.Parse()
	if *cpu > 0 {
		pp, noop, err := bench.CPU(cfg, *cpu)
		if err != nil {
			fmt.Fprintln(os.Stderr, "webhookbench:", err)
			os.Exit(1)
		}
		fmt.Printf("| handler | CPU per review, median | lowest |\n|---|---|---|\n")
		for _, r := range []bench.CPUResult{noop, pp} {
			fmt.Printf("| %s | %s | %s |\n", r.Name, r.Median.Round(100*time.Nanosecond), r.Lowest.Round(100*time.Nanosecond))
		}
		fmt.Printf("\npullpass/no-op: median %.2f\n", float64(pp.Median)/float64(noop.Median))
		return
	}
	pp, noop, err := bench.Run(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookbench:", err)
		os.Exit(1)
	}
	fmt.Printf("| server | requests | p50 | p99 | reviews/s |\n|---|---|---|---|---|\n")
	for _, r := range []bench.Result{noop, pp} {
		fmt.Printf("| %s | %d | %s | %s | %.0f |\n", r.Name, r.Requests, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.ReviewsPerSec)
	}
	r := bench.Compare(pp, noop)
	fmt.Printf("\npullpass/no-op (lowest-highest of the %d rounds): p50 %.2f (%.2f-%.2f), p99 %.2f (%.2f-%.2f), throughput %.2f (%.2f-%.2f)\n", cfg.Rounds,
		r.P50[0], r.P50[1], r.P50[2], r.P99[0], r.P99[1], r.P99[2], r.Throughput[0], r.Throughput[1], r.Throughput[2])
}
