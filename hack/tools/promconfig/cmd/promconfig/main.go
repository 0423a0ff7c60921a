// Command promconfig writes a Prometheus configuration and rule files from the ServiceMonitor,
// PodMonitor and PrometheusRule objects of a manifest stream (kubectl get -o yaml, or helm
// template), through the Prometheus Operator's own generator. e2e/cluster/prometheus.sh runs it.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/pullpass/pullpass/hack/tools/promconfig"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "promconfig:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("promconfig", flag.ContinueOnError)
	var c promconfig.Config
	in := fs.String("in", "-", "manifests to read (- for stdin)")
	fs.StringVar(&c.OutDir, "out", "", "directory to write prometheus.yml and rules/ into")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig Prometheus discovers targets with")
	fs.StringVar(&c.Version, "prometheus-version", "", "version of the Prometheus that runs the configuration (v2.42.0)")
	fs.StringVar(&c.ScrapeInterval, "scrape-interval", "", "global scrape interval (default 30s)")
	fs.StringVar(&c.EvaluationInterval, "evaluation-interval", "", "rule evaluation interval (default 30s)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r := stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		r = f
	}
	objs, err := promconfig.Read(r)
	if err != nil {
		return err
	}
	if len(objs.ServiceMonitors)+len(objs.PodMonitors) == 0 {
		return fmt.Errorf("no ServiceMonitor or PodMonitor in %s: nothing to scrape", *in)
	}
	path, err := promconfig.Write(c, objs)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: %d ServiceMonitors, %d PodMonitors, %d PrometheusRules\n", path, len(objs.ServiceMonitors), len(objs.PodMonitors), len(objs.Rules))
	return err
}
