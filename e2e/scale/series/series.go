// Package series measures what pullpass costs a Prometheus: the series each scrape of the webhook
// and of every node agent holds, before and with N registries (every tenth failing: a missing
// source), and after they are deleted, read from the Prometheus that scrapes the deployed pullpass
// (the harness's, PROMETHEUS_URL). The scrape before the registries is the baseline of the run.
package series

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/kubeconfig"
	"github.com/pullpass/pullpass/pkg/registryclient"
)

// Config sets the run.
type Config struct {
	Registries    int // default 1000
	PrometheusURL string
	Log           io.Writer
}

// Target is one scrape target's figures.
type Target struct {
	Job, Instance           string
	Baseline, Loaded, After int     // samples in one scrape (scrape_samples_scraped)
	MaxPerRegistry          int     // series of the registry with the most, in one scrape
	MeanPerRegistry         float64 // series naming a bench registry / registries
	// BaselineRSS and PeakRSS are the process's resident memory before and its most while loaded
	// (process_resident_memory_bytes as scraped), in bytes.
	BaselineRSS, PeakRSS int
}

// Result are the figures of every pullpass target.
type Result struct {
	Registries, Failing int
	Targets             []Target
}

const (
	namespace = "pullpass" // where sources may be
	prefix    = "seriesbench-"
	selector  = `{registry=~"seriesbench-.*"}`
)

// Run creates the registries, measures, and deletes them.
func Run(ctx context.Context, rc *rest.Config, c Config) (Result, error) {
	if c.Registries == 0 {
		c.Registries = 1000
	}
	logf := func(f string, a ...any) {
		if c.Log != nil {
			fmt.Fprintf(c.Log, time.Now().Format("15:04:05 ")+f+"\n", a...)
		}
	}
	cfg := rest.CopyConfig(rc)
	cfg.QPS, cfg.Burst = 200, 400
	clients, err := kubeconfig.ClientsFor(cfg)
	if err != nil {
		return Result{}, err
	}
	kube, regs := clients.Kube, clients.Registries
	pc, err := api.NewClient(api.Config{Address: c.PrometheusURL})
	if err != nil {
		return Result{}, err
	}
	p := prom{promv1.NewAPI(pc)}

	res := Result{Registries: c.Registries, Failing: c.Registries / 10} // every tenth source is missing
	baseline, err := p.settledSamples(ctx)
	if err != nil {
		return res, err
	}
	logf("baseline: %v", baseline)
	baselineRSS, err := p.byTarget(ctx, rss)
	if err != nil {
		return res, err
	}
	created := time.Now()

	defer cleanup(kube, regs, c.Registries)
	if err := createRegistries(ctx, kube, regs, c.Registries); err != nil {
		return res, fmt.Errorf("creating registries: %w", err)
	}
	logf("created %d registries (%d failing); waiting for Prometheus to see them all", c.Registries, res.Failing)
	l, err := p.loaded(ctx, c.Registries, res.Failing, created)
	if err != nil {
		return res, err
	}
	logf("loaded: %v; deleting", l.samples)
	cleanup(kube, regs, c.Registries)
	if err := p.waitFor(ctx, 10*time.Minute, `absent(`+selector+`)`); err != nil {
		return res, fmt.Errorf("series of deleted registries stay: %w", err)
	}
	after, err := p.settledSamples(ctx)
	if err != nil {
		return res, err
	}
	for k, b := range baseline {
		res.Targets = append(res.Targets, Target{Job: k[0], Instance: k[1], Baseline: b, Loaded: l.samples[k], After: after[k],
			MaxPerRegistry: l.perMax[k], MeanPerRegistry: float64(l.total[k]) / float64(c.Registries),
			BaselineRSS: baselineRSS[k], PeakRSS: l.peakRSS[k]})
	}
	sort.Slice(res.Targets, func(i, j int) bool {
		return res.Targets[i].Job+res.Targets[i].Instance < res.Targets[j].Job+res.Targets[j].Instance
	})
	return res, nil
}

// rss is each pullpass process's resident memory.
const rss = `process_resident_memory_bytes{job=~"pullpass-webhook|pullpass-agent"}`

// createRegistries creates n Cluster-scope registries, each with its own source but every tenth,
// whose source is missing (SourceSecretMissing, refresh errors).
func createRegistries(ctx context.Context, kube kubernetes.Interface, regs registryclient.Interface, n int) error {
	return parallel(ctx, 16, n, func(i int) error {
		name := prefix + strconv.Itoa(i)
		host := fmt.Sprintf("registry-%d.seriesbench.example.com", i)
		if i%10 != 9 {
			data, err := dockerconfig.ForHost(host, "user", "password-"+strconv.Itoa(i)).Marshal()
			if err != nil {
				return err
			}
			if _, err := kube.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name},
				Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		_, err := regs.Create(ctx, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{host}, Scope: v1alpha1.ScopeCluster,
			Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: namespace, Name: name}},
		}}, metav1.CreateOptions{})
		return err
	})
}

// loadedFigures are what Prometheus holds once every registry is seen, by target.
type loadedFigures struct {
	samples, perMax, total, peakRSS map[[2]string]int
}

// loaded waits for Prometheus to see every registry (failing of them with refresh errors) and
// reads the targets' samples, series per registry and peak RSS since created.
func (p prom) loaded(ctx context.Context, registries, failing int, created time.Time) (l loadedFigures, err error) {
	n := strconv.Itoa(registries)
	for _, q := range []string{
		`count(pullpass_credentials_ready` + selector + `) == ` + n,     // the keeper (controller)
		`count(pullpass_agent_registry_served` + selector + `) == ` + n, // the agent
		`count(pullpass_credentials_refresh_errors_total` + selector + `) == ` + strconv.Itoa(failing),
	} {
		if err := p.waitFor(ctx, 10*time.Minute, q); err != nil {
			return l, err
		}
	}
	if l.samples, err = p.settledSamples(ctx); err != nil {
		return l, err
	}
	if l.perMax, err = p.byTarget(ctx, `max by (job, instance) (count by (job, instance, registry) (`+selector+`))`); err != nil {
		return l, err
	}
	if l.total, err = p.byTarget(ctx, `count by (job, instance) (`+selector+`)`); err != nil {
		return l, err
	}
	window := strconv.Itoa(int(time.Since(created).Seconds())+10) + "s"
	l.peakRSS, err = p.byTarget(ctx, `max_over_time(`+rss+`[`+window+`])`)
	return l, err
}

type prom struct{ api promv1.API }

// byTarget evaluates a query whose samples are by job and instance.
func (p prom) byTarget(ctx context.Context, q string) (map[[2]string]int, error) {
	v, _, _, err := p.api.Query(ctx, q, time.Now())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	out := map[[2]string]int{}
	vec, _ := v.(model.Vector)
	for _, s := range vec {
		out[[2]string{string(s.Metric["job"]), string(s.Metric["instance"])}] = int(s.Value)
	}
	return out, nil
}

// settledSamples returns the samples of each pullpass target's scrape, once two readings a few
// scrapes apart agree.
func (p prom) settledSamples(ctx context.Context) (map[[2]string]int, error) {
	const q = `scrape_samples_scraped{job=~"pullpass-webhook|pullpass-agent"}`
	prev, err := p.byTarget(ctx, q)
	for tries := 0; err == nil && tries < 60; tries++ {
		time.Sleep(6 * time.Second)
		var cur map[[2]string]int
		if cur, err = p.byTarget(ctx, q); err == nil && len(cur) >= 2 && equal(cur, prev) {
			return cur, nil
		}
		prev = cur
	}
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("the scrapes of pullpass's targets did not settle: %v", prev)
}

func equal(a, b map[[2]string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (p prom) waitFor(ctx context.Context, d time.Duration, q string) error {
	deadline := time.Now().Add(d)
	for {
		v, _, _, err := p.api.Query(ctx, q, time.Now())
		if vec, ok := v.(model.Vector); err == nil && ok && len(vec) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to %s after %s (last error: %w)", q, d, err)
		}
		time.Sleep(2 * time.Second)
	}
}

func cleanup(kube kubernetes.Interface, regs registryclient.Interface, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_ = parallel(ctx, 16, n, func(i int) error {
		_ = regs.Delete(ctx, prefix+strconv.Itoa(i), metav1.DeleteOptions{})
		_ = kube.CoreV1().Secrets(namespace).Delete(ctx, prefix+strconv.Itoa(i), metav1.DeleteOptions{})
		return nil
	})
}

// parallel runs f(0..n-1), workers at a time, and returns the errors.
func parallel(ctx context.Context, workers, n int, f func(int) error) error {
	sem := make(chan struct{}, workers)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = f(i)
		})
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}
