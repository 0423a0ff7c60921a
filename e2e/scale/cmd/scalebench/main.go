// Command scalebench runs the keeper's scale benchmark against the harness cluster (make
// cluster-up deploy first) and prints the figures. See docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/pullpass/pullpass/e2e/scale"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "_output/e2e/kubeconfig", "kubeconfig of the cluster, with pullpass deployed")
	var c scale.Config
	flag.IntVar(&c.Namespaces, "namespaces", 1000, "opted-in namespaces")
	flag.IntVar(&c.Registries, "registries", 5, "registries used in every namespace")
	flag.Parse()
	c.Log = os.Stderr
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scalebench:", err)
		os.Exit(1)
	}
	r, err := scale.Run(context.Background(), rc, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scalebench:", err)
		os.Exit(1)
	}
	fmt.Printf("| what | value |\n|---|---|\n")
	fmt.Printf("| pull secrets (namespaces × registries) | %d |\n", r.PullSecrets)
	fmt.Printf("| admission of a 5-registry pod, p50 / p99 (first pod of its namespace: writes 5 secrets) | %s / %s |\n", r.AdmissionP50.Round(time.Millisecond), r.AdmissionP99.Round(time.Millisecond))
	fmt.Printf("| rotation of every source to every namespace | %s |\n", r.Converge.Round(100*time.Millisecond))
	fmt.Printf("| secret writes for it | %d |\n", r.ConvergeWrites)
	fmt.Printf("| secret writes in the %s after, nothing changing | %d |\n", r.QuietPeriod, r.QuietWrites)
	fmt.Printf("| baseline: %d plain secret updates from one client, same limits | %s |\n", r.BaselineWrites, r.Baseline.Round(100*time.Millisecond))
	fmt.Printf("\nrotation / baseline: %.2f\n", r.Converge.Seconds()/r.Baseline.Seconds())
}
