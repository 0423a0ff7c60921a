// Command scalebench runs the webhook's and keeper's scale benchmark against the harness cluster
// (make cluster-up deploy first) and prints the figures beside their baselines. See
// docs/benchmarks.md.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/pullpass/pullpass/e2e/scale"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "_output/e2e/kubeconfig", "kubeconfig of the cluster, with pullpass deployed")
	endpoints := flag.String("endpoints", "_output/e2e/endpoints.env", "the harness's endpoints file (WEBHOOK_METRICS_URL)")
	var c scale.Config
	flag.IntVar(&c.Namespaces, "namespaces", 1000, "opted-in namespaces")
	flag.IntVar(&c.Registries, "registries", 5, "registries used in every namespace")
	flag.IntVar(&c.PlainEvery, "plain-every", 10, "every n-th namespace is a plain one, for the admission baseline")
	flag.DurationVar(&c.QuietPeriod, "quiet", 2*time.Minute, "how long the steady state is watched, idle and loaded")
	flag.Parse()
	c.Log = os.Stderr
	c.WebhookMetrics = envValue(*endpoints, "WEBHOOK_METRICS_URL")
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := scale.Run(ctx, rc, c)
	if err != nil {
		fail(err)
	}
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	mib := func(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
	fmt.Printf("| what | pullpass | baseline (same run) | ratio |\n|---|---|---|---|\n")
	fmt.Printf("| pull secrets (namespaces × registries) | %d | | |\n", r.PullSecrets)
	fmt.Printf("| first pod of an opted-in namespace (writes %d secrets), p50 / p99; baseline: a pod in a plain namespace | %s / %s | %s / %s | %.2f / %.2f |\n", c.Registries,
		ms(r.AdmissionP50), ms(r.AdmissionP99), ms(r.PlainAdmissionP50), ms(r.PlainAdmissionP99),
		r.AdmissionP50.Seconds()/r.PlainAdmissionP50.Seconds(), r.AdmissionP99.Seconds()/r.PlainAdmissionP99.Seconds())
	fmt.Printf("| opted-in pods admitted without their secrets (the webhook failed open) | %d | | |\n", r.FailedOpen)
	s := func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
	fmt.Printf("| every source rotated to every namespace; baseline: as many plain secret updates, one client, same limits (before / after the rotation) | %s (%d writes) | %s (%s / %s) | %.2f |\n",
		s(r.Converge), r.ConvergeWrites, s(r.Baseline), s(r.BaselineBefore), s(r.BaselineAfter), r.Converge.Seconds()/r.Baseline.Seconds())
	fmt.Printf("| webhook RSS at steady state; baseline: idle, before the namespaces | %s | %s | %.2f |\n", mib(r.Loaded.RSS), mib(r.Idle.RSS), r.Loaded.RSS/r.Idle.RSS)
	fmt.Printf("| webhook Go heap in use | %s | %s | %.2f |\n", mib(r.Loaded.Heap), mib(r.Idle.Heap), r.Loaded.Heap/r.Idle.Heap)
	fmt.Printf("| webhook CPU (cores) | %.4f | %.4f | %.2f |\n", r.Loaded.CPU, r.Idle.CPU, r.Loaded.CPU/r.Idle.CPU)
	fmt.Printf("| webhook API requests per minute | %.1f | %.1f | %.2f |\n", r.Loaded.RequestsPerMin, r.Idle.RequestsPerMin, r.Loaded.RequestsPerMin/r.Idle.RequestsPerMin)
	fmt.Printf("| secret writes in %s, nothing changing | %d | %d | |\n", r.QuietPeriod, r.Loaded.SecretWrites, r.Idle.SecretWrites)
}

// envValue reads KEY=value from an env file; "" when it is not there.
func envValue(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok {
			return v
		}
	}
	return ""
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "scalebench:", err)
	os.Exit(1)
}
