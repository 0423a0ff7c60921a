// Command agentbench measures the node agent's memory and CPU idle (the baseline) and at steady
// state with N Cluster-scope registries cached, and how long it takes to serve them all, on a
// running cluster.
//
//	make cluster-up deploy
//	CGO_ENABLED=0 go build -o /tmp/pullpass-agent ./cmd/pullpass-agent
//	CGO_ENABLED=0 go build -o /tmp/pullpass-credential-provider ./cmd/pullpass-credential-provider
//	go run ./agent/bench/cmd/agentbench -agent /tmp/pullpass-agent -plugin /tmp/pullpass-credential-provider -registries 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/pullpass/pullpass/agent/bench"
)

func main() {
	cfg := bench.Config{Out: os.Stderr}
	flag.StringVar(&cfg.Kubeconfig, "kubeconfig", "_output/e2e/kubeconfig", "kubeconfig of the cluster")
	flag.StringVar(&cfg.AgentBin, "agent", "", "the built pullpass-agent")
	flag.StringVar(&cfg.PluginBin, "plugin", "", "the built pullpass-credential-provider")
	flag.IntVar(&cfg.Registries, "registries", 1000, "Cluster-scope registries to create")
	flag.StringVar(&cfg.MetricsAddress, "metrics-address", "127.0.0.1:28083", "the agent's metrics address (loopback)")
	flag.DurationVar(&cfg.Steady, "steady", time.Minute, "how long CPU is measured, idle and loaded")
	flag.StringVar(&cfg.GOGC, "gogc", "50", "GOGC of the agent (the chart's agent.gcPercent; 100 is Go's default)")
	flag.Parse()
	if cfg.AgentBin == "" || cfg.PluginBin == "" {
		fmt.Fprintln(os.Stderr, "agentbench: -agent and -plugin are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := bench.Run(ctx, cfg)
	if err != nil {
		stop()
		fmt.Fprintln(os.Stderr, "agentbench:", err)
		os.Exit(1) //nolint:gocritic // stop ran: nothing deferred is left to do
	}
	mib := func(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
	fmt.Printf("| agent | idle (baseline) | %d registries cached | ratio |\n|---|---|---|---|\n", cfg.Registries)
	fmt.Printf("| RSS | %s | %s | %.2f |\n", mib(r.Idle.RSS), mib(r.Loaded.RSS), r.Loaded.RSS/r.Idle.RSS)
	fmt.Printf("| Go heap in use | %s | %s | %.2f |\n", mib(r.Idle.Heap), mib(r.Loaded.Heap), r.Loaded.Heap/r.Idle.Heap)
	fmt.Printf("| CPU over %s (millicores) | %.2f | %.2f | %.2f |\n", cfg.Steady, 1000*r.Idle.CPU, 1000*r.Loaded.CPU, r.Loaded.CPU/r.Idle.CPU)
	fmt.Printf("| syncs over %s (registries resolved / %d) | %.1f | %.1f | |\n", cfg.Steady, cfg.Registries, r.Idle.Resolves/float64(cfg.Registries), r.Loaded.Resolves/float64(cfg.Registries))
	fmt.Printf("\nall %d served from the cache %.1f s after the first was created; the last sync %.1f s after that\n", cfg.Registries, r.FillTime.Seconds(), r.SettleTime.Seconds()-10)
}
