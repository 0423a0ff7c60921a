// Command agentbench measures the node agent's memory and CPU idle (the baseline) and at steady
// state with N Cluster-scope registries cached, and how long it takes to serve them all, on a
// running cluster.
//
//	make cluster-up deploy
//	CGO_ENABLED=0 go build -o /tmp/pullpass-agent ./cmd/pullpass-agent
//	CGO_ENABLED=0 go build -o /tmp/pullpass-credential-provider ./cmd/pullpass-credential-provider
//	CGO_ENABLED=0 go build -o /tmp/agentbench ./agent/bench/cmd/agentbench
//	/tmp/agentbench -agent /tmp/pullpass-agent -plugin /tmp/pullpass-credential-provider -registries 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pullpass/pullpass/agent/bench"
)

func main() {
	cfg := bench.Config{Out: os.Stderr}
	flag.StringVar(&cfg.Kubeconfig, "kubeconfig", "_output/e2e/kubeconfig", "kubeconfig of the cluster")
	flag.StringVar(&cfg.AgentBin, "agent", "", "the built pullpass-agent")
	flag.StringVar(&cfg.PluginBin, "plugin", "", "the built pullpass-credential-provider")
	flag.IntVar(&cfg.Registries, "registries", 1000, "Cluster-scope registries to create")
	flag.StringVar(&cfg.MetricsAddress, "metrics-address", "127.0.0.1:28183", "the agent's metrics address (loopback; not 28083, the harness's own agent's)")
	flag.DurationVar(&cfg.Steady, "steady", 5*time.Minute, "how long CPU is measured, idle and loaded, RSS over its last minute (past two of the runtime's forced GCs, every 2 min)")
	flag.StringVar(&cfg.Namespace, "namespace", "pullpass", "pullpass's release namespace: the sources go there, the agent reads the node Secret its controller writes; empty without pullpass deployed (the benchmark writes the node Secret itself)")
	flag.DurationVar(&cfg.Scrape, "scrape", 0, "scrape the agent's metrics at this interval through the steady periods, as a Prometheus does (0: none)")
	flag.StringVar(&cfg.GOGC, "gogc", "50", "GOGC of the agent (the chart's agent.gcPercent; 100 is Go's default)")
	flag.Parse()
	if cfg.AgentBin == "" || cfg.PluginBin == "" {
		fmt.Fprintln(os.Stderr, "agentbench: -agent and -plugin are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
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
	fmt.Printf("| RSS anonymous / file | %s / %s | %s / %s | |\n", mib(r.Idle.RSSAnon), mib(r.Idle.RSSFile), mib(r.Loaded.RSSAnon), mib(r.Loaded.RSSFile))
	fmt.Printf("| Go heap in use | %s | %s | %.2f |\n", mib(r.Idle.Heap), mib(r.Loaded.Heap), r.Loaded.Heap/r.Idle.Heap)
	fmt.Printf("| Go heap idle / released to the OS | %s / %s | %s / %s | |\n", mib(r.Idle.HeapIdle), mib(r.Idle.HeapReleased), mib(r.Loaded.HeapIdle), mib(r.Loaded.HeapReleased))
	cpuRatio := "" // none against an idle agent that used no measurable CPU
	if r.Idle.CPU > 0 {
		cpuRatio = fmt.Sprintf("%.2f", r.Loaded.CPU/r.Idle.CPU)
	}
	fmt.Printf("| CPU over %s (millicores) | %.2f | %.2f | %s |\n", cfg.Steady, 1000*r.Idle.CPU, 1000*r.Loaded.CPU, cpuRatio)
	fmt.Printf("| syncs over %s (registries resolved / %d) | %.1f | %.1f | |\n", cfg.Steady, cfg.Registries, r.Idle.Resolves/float64(cfg.Registries), r.Loaded.Resolves/float64(cfg.Registries))
	l := r.TimeToServe
	fmt.Printf("\nper registry, from its creation to the node cache holding it: p50 %.2f s, p99 %.2f s, max %.2f s (%d served, %d never seen)\n",
		l.P50.Seconds(), l.P99.Seconds(), l.Max.Seconds(), l.N, l.Missing)
	fmt.Printf("all %d served from the cache %.1f s after the first was created; the last sync %.1f s after that\n", cfg.Registries, r.FillTime.Seconds(), r.SettleTime.Seconds()-10)
}
