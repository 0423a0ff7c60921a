// Command scalebench runs the scale benchmark of pullpass's webhook and controller against the
// harness cluster (make cluster-up deploy first) and prints the figures beside their baselines.
// See docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/pullpass/pullpass/e2e/scale"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "_output/e2e/kubeconfig", "kubeconfig of the cluster, with pullpass deployed")
	var c scale.Config
	flag.IntVar(&c.Namespaces, "namespaces", 1000, "opted-in namespaces")
	flag.IntVar(&c.Registries, "registries", 5, "registries used in every namespace")
	flag.IntVar(&c.PlainEvery, "plain-every", 10, "every n-th namespace is a plain one, for the admission baseline")
	flag.IntVar(&c.Concurrency, "concurrency", 16, "client workers")
	flag.DurationVar(&c.QuietPeriod, "quiet", 2*time.Minute, "how long the steady state is watched, idle and loaded")
	flag.StringVar(&c.HostNetworkAddress, "host-network-address", "127.0.0.1", "where replicas on the host network serve their metrics port (the harness's loopback); others are read through the API server")
	flag.BoolVar(&c.BaselineOnce, "baseline-once", false, "take the plain updates once, after the rotation, not before too (a shorter run)")
	flag.BoolVar(&c.NoCleanup, "no-cleanup", false, "leave the namespaces, for a cluster taken down right after")
	flag.Parse()
	c.Log = os.Stderr
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := scale.Run(ctx, rc, c)
	r.WriteTable(os.Stdout, c.Registries) // what there is, also of a run stopped early
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "scalebench:", err)
	os.Exit(1)
}
