// Command seriesbench measures the series pullpass adds to each scrape with many registries,
// against the harness Prometheus (make cluster-up deploy first) and prints the figures. See
// docs/benchmarks.md.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/pullpass/pullpass/e2e/scale/series"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "seriesbench:", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", "_output/e2e/kubeconfig", "kubeconfig of the cluster, with pullpass deployed")
	endpoints := flag.String("endpoints", "_output/e2e/endpoints.env", "endpoints.env naming PROMETHEUS_URL")
	var c series.Config
	flag.IntVar(&c.Registries, "registries", 1000, "Cluster-scope registries to create (every tenth with a missing source)")
	flag.Parse()
	c.Log = os.Stderr
	f, err := os.Open(*endpoints)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PROMETHEUS_URL="); ok {
			c.PrometheusURL = v
		}
	}
	_ = f.Close()
	if c.PrometheusURL == "" {
		return fmt.Errorf("no PROMETHEUS_URL in %s", *endpoints)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	r, err := series.Run(context.Background(), rc, c)
	if err != nil {
		return err
	}
	fmt.Printf("%d registries (%d failing)\n\n", r.Registries, r.Failing)
	fmt.Println("| target | samples per scrape: before (baseline) | with the registries | after deleting them | series per registry: mean | max | RSS before | most RSS loaded |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, t := range r.Targets {
		fmt.Printf("| %s (%s) | %d | %d | %d | %.2f | %d | %.1f MiB | %.1f MiB |\n", t.Job, t.Instance, t.Baseline, t.Loaded, t.After,
			t.MeanPerRegistry, t.MaxPerRegistry, float64(t.BaselineRSS)/(1<<20), float64(t.PeakRSS)/(1<<20))
	}
	return nil
}
