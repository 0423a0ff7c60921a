// Command agentbench measures the node agent's memory idle (the baseline) and with N Cluster-scope
// registries cached, and how long it takes to serve them all, on a running cluster.
//
//	make cluster-up deploy
//	go build -o /tmp/pullpass-agent ./cmd/pullpass-agent
//	go build -o /tmp/pullpass-credential-provider ./cmd/pullpass-credential-provider
//	go run ./agent/bench/cmd/agentbench -agent /tmp/pullpass-agent -plugin /tmp/pullpass-credential-provider -registries 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/pullpass/pullpass/agent/bench"
)

func main() {
	cfg := bench.Config{Out: os.Stderr}
	flag.StringVar(&cfg.Kubeconfig, "kubeconfig", "_output/e2e/kubeconfig", "kubeconfig of the cluster")
	flag.StringVar(&cfg.AgentBin, "agent", "", "the built pullpass-agent")
	flag.StringVar(&cfg.PluginBin, "plugin", "", "the built pullpass-credential-provider")
	flag.IntVar(&cfg.Registries, "registries", 1000, "Cluster-scope registries to create")
	flag.StringVar(&cfg.MetricsAddress, "metrics-address", "127.0.0.1:28083", "the agent's metrics address (loopback)")
	flag.Parse()
	if cfg.AgentBin == "" || cfg.PluginBin == "" {
		fmt.Fprintln(os.Stderr, "agentbench: -agent and -plugin are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentbench:", err)
		os.Exit(1)
	}
	mib := func(b float64) float64 { return b / (1 << 20) }
	fmt.Printf("agent idle (baseline): RSS %.1f MiB, heap %.1f MiB\n", mib(r.Idle.RSS), mib(r.Idle.Heap))
	fmt.Printf("agent with %d registries: RSS %.1f MiB (%.2fx), heap %.1f MiB (%.2fx)\n", cfg.Registries,
		mib(r.Loaded.RSS), r.Loaded.RSS/r.Idle.RSS, mib(r.Loaded.Heap), r.Loaded.Heap/r.Idle.Heap)
	fmt.Printf("all %d served from the cache %.1f s after the first was created\n", cfg.Registries, r.FillTime.Seconds())
}
