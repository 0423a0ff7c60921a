// Command servicebench measures admission latency as users meet it: pods created (server-side
// dry run) through the API server, which calls the deployed webhook through its Service. It
// compares, interleaved in the same run:
//
//   - served: a namespace that opted in, the pod's images matched against the registry table
//     (a pull secret added);
//   - no-op: a namespace that did not opt in, which the same webhook answers with no change
//     (the API server's round trip through the Service, TLS and decoding: the baseline);
//   - floor: a namespace the webhook configuration excludes (no webhook call at all).
//
// It creates the registries and namespaces it needs and removes them at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registryclient"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster pullpass is deployed in")
	registries := flag.Int("registries", 1000, "registries in the table (the first one serves the pod)")
	containers := flag.Int("containers", 10, "containers per pod")
	requests := flag.Int("requests", 300, "dry-run pod creations per namespace, interleaved")
	excluded := flag.String("excluded-namespace", "kube-public", "a namespace the webhook configuration excludes (the floor)")
	flag.Parse()
	if err := run(context.Background(), *kubeconfig, *registries, *containers, *requests, *excluded); err != nil {
		fmt.Fprintln(os.Stderr, "servicebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig string, nRegistries, nContainers, n int, excluded string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	regs, err := registryclient.New(cfg)
	if err != nil {
		return err
	}
	// The table: nRegistries registries, one of them serving the pod's host.
	for i := range nRegistries {
		r := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "servicebench-" + strconv.Itoa(i)}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{fmt.Sprintf("r%d.servicebench.example.com", i)},
			Auth:  v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: "pullpass", Name: "servicebench"}}}}
		if _, err := regs.Create(ctx, r, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating registry %d: %w", i, err)
		}
		defer func() { _ = regs.Delete(context.Background(), r.Name, metav1.DeleteOptions{}) }()
	}
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "pullpass", Name: "servicebench"},
		StringData: map[string]string{"username": "bench", "password": "bench"}}
	if _, err := kube.CoreV1().Secrets("pullpass").Create(ctx, src, metav1.CreateOptions{}); err != nil {
		return err
	}
	defer func() {
		_ = kube.CoreV1().Secrets("pullpass").Delete(context.Background(), src.Name, metav1.DeleteOptions{})
	}()
	mkns := func(prefix string, ann map[string]string) (string, error) {
		ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix, Annotations: ann}}, metav1.CreateOptions{})
		if err != nil {
			return "", err
		}
		return ns.Name, nil
	}
	served, err := mkns("servicebench-served-", map[string]string{"pullpass.io/inject": "enabled"})
	if err != nil {
		return err
	}
	defer func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), served, metav1.DeleteOptions{}) }()
	noop, err := mkns("servicebench-noop-", nil)
	if err != nil {
		return err
	}
	defer func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), noop, metav1.DeleteOptions{}) }()

	pod := func(ns string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-", Namespace: ns}}
		for i := range nContainers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c" + strconv.Itoa(i), Image: fmt.Sprintf("r0.servicebench.example.com/app%d:v1", i)})
		}
		return p
	}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	// Wait until the webhook serves the new table.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p, err := kube.CoreV1().Pods(served).Create(ctx, pod(served), dry)
		if err == nil && len(p.Spec.ImagePullSecrets) == 1 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the webhook does not serve the benchmark's registry (%w)", err)
		}
		time.Sleep(time.Second)
	}
	kinds := []struct{ name, ns string }{{"served (pullpass adds a pull secret)", served}, {"no-op (namespace not opted in)", noop}, {"floor (no webhook call)", excluded}}
	lat := make([][]time.Duration, len(kinds))
	for i := range n + 10 {
		for k, kind := range kinds {
			start := time.Now()
			p, err := kube.CoreV1().Pods(kind.ns).Create(ctx, pod(kind.ns), dry)
			d := time.Since(start)
			if err != nil {
				return fmt.Errorf("%s: %w", kind.name, err)
			}
			if (k == 0) != (len(p.Spec.ImagePullSecrets) == 1) {
				return fmt.Errorf("%s: pull secrets %v", kind.name, p.Spec.ImagePullSecrets)
			}
			if i >= 10 { // warm-up left out
				lat[k] = append(lat[k], d)
			}
		}
	}
	q := func(ds []time.Duration, f float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[int(f*float64(len(s)-1))]
	}
	fmt.Printf("| pods created (dry run, %d containers, %d registries) | n | p50 | p99 |\n|---|---|---|---|\n", nContainers, nRegistries)
	for k, kind := range kinds {
		fmt.Printf("| %s | %d | %s | %s |\n", kind.name, len(lat[k]), q(lat[k], 0.5).Round(10*time.Microsecond), q(lat[k], 0.99).Round(10*time.Microsecond))
	}
	fmt.Printf("\nserved/no-op: p50 %.2f, p99 %.2f; no-op/floor: p50 %.2f\n",
		float64(q(lat[0], 0.5))/float64(q(lat[1], 0.5)), float64(q(lat[0], 0.99))/float64(q(lat[1], 0.99)),
		float64(q(lat[1], 0.5))/float64(q(lat[2], 0.5)))
	return nil
}
