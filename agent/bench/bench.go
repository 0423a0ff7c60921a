// Package bench measures the node agent on a real cluster: its memory (RSS and Go heap) and CPU
// idle, and at steady state with N Cluster-scope registries in its cache, and how long it takes
// to serve all N, each from its own creation; the idle agent of the same run is the baseline.
// The agent runs as a process on this machine, in provider mode, into temp dirs, so the node's
// real configuration is not touched. It reads the node Secret the deployed controller's leader
// writes into the release namespace, as a node's agent does; on a cluster without pullpass, the
// node Secret of a namespace of its own, written by this process as the leader writes it
// (webhook/nodecreds).
package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/registryclient"
)

// Config configures a run.
type Config struct {
	Kubeconfig     string
	AgentBin       string // the built pullpass-agent
	PluginBin      string // the built pullpass-credential-provider
	Registries     int
	MetricsAddress string
	// Steady is how long CPU is measured, idle and loaded (default 5 min), RSS over its last
	// minute: past two of the forced GCs the Go runtime runs every 2 minutes, so that the garbage
	// of the fill is collected and the pages it freed returned (the scavenger), as on a node at
	// rest. At 150 s the RSS was still falling (2026-12-07: its median over the period's last
	// minute stood above its last reading).
	Steady time.Duration
	// GOGC of the agent: the chart's agent.gcPercent ("50") unless set; "100" is Go's default.
	GOGC string
	// Scrape, when set, scrapes the agent's metrics at that interval through both steady
	// periods, as a Prometheus does (the chart's serviceMonitor.interval is 30 s): at 1,000
	// registries a scrape allocates about 1.6 MiB. Zero: the agent left alone at rest.
	Scrape time.Duration
	// Namespace is pullpass's release namespace on a cluster where the chart is deployed: the
	// registries' source Secrets go there (the chart's source policy allows no other) and the
	// agent reads the node Secret the deployed controller's leader writes there, as a node's
	// agent does. Empty: no pullpass deployed (a bare API server); the benchmark writes the node
	// Secret itself (webhook/nodecreds), into a namespace of its own that holds the sources too.
	Namespace string
	Out       io.Writer
}

// Sample is the agent's memory at the end of a steady period, and its CPU over it.
type Sample struct {
	RSS, Heap float64 // bytes: VmRSS, and the Go heap in use
	// RSSAnon and RSSFile split RSS: the anonymous memory (heap, stacks) and the mapped binary.
	RSSAnon, RSSFile float64
	// HeapIdle is the Go heap not in use; HeapReleased the part of it returned to the OS.
	HeapIdle, HeapReleased float64
	CPU                    float64 // cores
	// Resolves counts the registries resolved during the period: a sync resolves every one.
	Resolves float64
}

// Result is what a run measured.
type Result struct {
	Idle, Loaded Sample
	FillTime     time.Duration // from the first registry created to all N in the cache
	// TimeToServe is, per registry, the time from its own creation to the node cache holding it.
	TimeToServe Latencies
	SettleTime  time.Duration // from then to 10 s without a sync
}

// Run runs the benchmark and removes what it created.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Steady == 0 {
		cfg.Steady = 5 * time.Minute
	}
	if cfg.GOGC == "" {
		cfg.GOGC = "50"
	}
	b, err := newBench(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer b.cleanup()
	dir, err := os.MkdirTemp("", "agentbench")
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if b.ownNS {
		stopWriter, err := writeNodeCredentials(ctx, b.kube, b.regs, b.ns, slog.New(slog.NewTextHandler(cfg.Out, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err != nil {
			return Result{}, err
		}
		defer stopWriter()
	}
	agent, err := startAgent(ctx, cfg, b.ns, dir)
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = agent.Process.Kill(); _ = agent.Wait() }()
	metrics := "http://" + cfg.MetricsAddress + "/metrics"
	if err := waitFor(ctx, time.Minute, func() bool { return metric(metrics, "pullpass_agent_cache_writes_total{result=\"success\"}") >= 1 }); err != nil {
		return Result{}, fmt.Errorf("the agent did not write its first cache: %w", err)
	}
	var res Result
	time.Sleep(5 * time.Second) // settle
	if res.Idle, err = sample(ctx, agent.Process.Pid, metrics, cfg.Steady, cfg.Scrape); err != nil {
		return Result{}, err
	}
	start := time.Now()
	if res.FillTime, res.TimeToServe, err = b.fill(ctx, cachePath(dir), metrics); err != nil {
		return Result{}, err
	}
	// Steady means no sync for 10 s: the registries' first status writes (the keeper's) come
	// in after the cache is full.
	if err := settle(ctx, metrics, 10*time.Second, 5*time.Minute); err != nil {
		return Result{}, fmt.Errorf("the agent kept syncing: %w", err)
	}
	res.SettleTime = time.Since(start) - res.FillTime
	res.Loaded, err = sample(ctx, agent.Process.Pid, metrics, cfg.Steady, cfg.Scrape)
	return res, err
}

// bench is one run's clients and where its objects go.
type bench struct {
	cfg        Config
	kube       kubernetes.Interface
	regs       *registryclient.Client
	ns, prefix string
	ownNS      bool // ns is the bench's own, made and deleted by it
}

func newBench(ctx context.Context, cfg Config) (*bench, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 200, 400
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	regs, err := registryclient.New(rc)
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, kube: kube, regs: regs, prefix: "agentbench-" + rand.String(5), ns: cfg.Namespace, ownNS: cfg.Namespace == ""}
	if b.ownNS {
		b.ns = b.prefix
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: b.ns}}, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// cleanup deletes the registries, their sources and the bench's own namespace.
func (b *bench) cleanup() {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_ = forEach(b.cfg.Registries, func(i int) error {
		name := fmt.Sprintf("%s-%d", b.prefix, i)
		_ = b.kube.CoreV1().Secrets(b.ns).Delete(c, name, metav1.DeleteOptions{})
		return b.regs.Delete(c, name, metav1.DeleteOptions{})
	})
	if b.ownNS {
		_ = b.kube.CoreV1().Namespaces().Delete(c, b.ns, metav1.DeleteOptions{})
	}
}

// fill creates the registries and waits for the agent to cache them all, following its cache
// file to time each registry from its creation to the cache holding it.
func (b *bench) fill(ctx context.Context, cache, metrics string) (time.Duration, Latencies, error) {
	clock := newServeClock()
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { watchCache(watchCtx, cache, 20*time.Millisecond, clock); close(watched) }()
	defer func() { stopWatch(); <-watched }()
	start := time.Now()
	if err := createRegistries(ctx, b.kube, b.regs, b.ns, b.prefix, b.cfg.Registries, clock); err != nil {
		return 0, Latencies{}, fmt.Errorf("creating registries: %w", err)
	}
	if err := waitFor(ctx, 10*time.Minute, func() bool {
		return metric(metrics, "pullpass_agent_cache_entries") >= float64(b.cfg.Registries)
	}); err != nil {
		return 0, Latencies{}, fmt.Errorf("the agent did not cache all registries: %w", err)
	}
	took := time.Since(start)
	// The cache file the metric counted may land a poll later.
	_ = waitFor(ctx, 5*time.Second, func() bool { return clock.Latencies().N >= b.cfg.Registries })
	stopWatch()
	<-watched
	return took, clock.Latencies(), nil
}

// startAgent starts the agent in provider mode into dir, reading the node Secret of ns.
func startAgent(ctx context.Context, cfg Config, ns, dir string) (*exec.Cmd, error) {
	agent := exec.CommandContext(ctx, cfg.AgentBin, "--kubeconfig="+cfg.Kubeconfig, "--namespace="+ns,
		"--cache="+cachePath(dir), "--plugin-source="+cfg.PluginBin,
		"--provider-bin-dir="+filepath.Join(dir, "bin"), "--provider-config="+filepath.Join(dir, "config"),
		"--metrics-address="+cfg.MetricsAddress, "--log-level=warn")
	agent.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true", "GOGC="+cfg.GOGC)
	agent.Stderr = cfg.Out
	return agent, agent.Start()
}

// cachePath is the agent's node cache in dir.
func cachePath(dir string) string { return filepath.Join(dir, "cache", "credentials.json") }

// createRegistries creates n Cluster-scope registries named prefix-i, each with its own source
// Secret in ns, and records on clock when each Registry
// was sent.
func createRegistries(ctx context.Context, kube kubernetes.Interface, regs *registryclient.Client, ns, prefix string, n int, clock *serveClock) error {
	return forEach(n, func(i int) error {
		name := fmt.Sprintf("%s-%d", prefix, i)
		host := fmt.Sprintf("registry-%d.bench.example.com", i)
		data, err := dockerconfig.ForHost(host, "user", "password-"+strconv.Itoa(i)).Marshal()
		if err != nil {
			return err
		}
		if _, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name},
			Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		clock.Created(name, time.Now())
		_, err = regs.Create(ctx, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{host}, Scope: v1alpha1.ScopeCluster,
			Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: ns, Name: name}},
		}}, metav1.CreateOptions{})
		return err
	})
}

// settle waits until the agent has resolved nothing for quiet, for at most limit.
func settle(ctx context.Context, metrics string, quiet, limit time.Duration) error {
	last, since := metricSum(metrics, "pullpass_agent_refreshes_total{"), time.Now()
	return waitFor(ctx, limit, func() bool {
		if n := metricSum(metrics, "pullpass_agent_refreshes_total{"); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) >= quiet
	})
}

// sample watches the agent for d: its CPU over it; its RSS over the last minute of it (at most
// half of it), read from /proc every 2 s, each figure the median of its readings, and its Go
// heap from one scrape of its /metrics at the end (a scrape every 2 s would itself be what the
// agent spends its CPU and heap on), and its metrics scraped every scrapeEvery if set. One RSS reading lands
// anywhere in the Go runtime's collection and scavenging cycles: the same agent's RSS moved by
// 1.5 MiB between runs.
func sample(ctx context.Context, pid int, metrics string, d, scrapeEvery time.Duration) (Sample, error) {
	c0, r0, t0 := cpuSeconds(pid), metricSum(metrics, "pullpass_agent_refreshes_total{"), time.Now()
	if scrapeEvery > 0 {
		scraping, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			tick := time.NewTicker(scrapeEvery)
			defer tick.Stop()
			for {
				select {
				case <-scraping.Done():
					return
				case <-tick.C:
					scrape(metrics, func(string) {})
				}
			}
		}()
	}
	window := min(time.Minute, d/2)
	select {
	case <-ctx.Done():
		return Sample{}, ctx.Err()
	case <-time.After(d - window):
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var readings []Sample
	for {
		readings = append(readings, Sample{RSS: status(pid, "VmRSS:"), RSSAnon: status(pid, "RssAnon:"), RSSFile: status(pid, "RssFile:")})
		if time.Since(t0) >= d {
			break
		}
		select {
		case <-ctx.Done():
			return Sample{}, ctx.Err()
		case <-tick.C:
		}
	}
	s := Sample{CPU: (cpuSeconds(pid) - c0) / time.Since(t0).Seconds(),
		RSS:     median(readings, func(x Sample) float64 { return x.RSS }),
		RSSAnon: median(readings, func(x Sample) float64 { return x.RSSAnon }),
		RSSFile: median(readings, func(x Sample) float64 { return x.RSSFile }),
		Heap:    metric(metrics, "go_memstats_heap_inuse_bytes"), HeapIdle: metric(metrics, "go_memstats_heap_idle_bytes"),
		HeapReleased: metric(metrics, "go_memstats_heap_released_bytes")}
	s.Resolves = metricSum(metrics, "pullpass_agent_refreshes_total{") - r0
	return s, nil
}

// median is the median of one figure of the readings (the upper one of an even count).
func median(readings []Sample, of func(Sample) float64) float64 {
	vs := make([]float64, len(readings))
	for i, r := range readings {
		vs[i] = of(r)
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

// cpuSeconds reads the user and system time a process used, from /proc/PID/stat.
func cpuSeconds(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields count from after it.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTicks
}

// clockTicks is USER_HZ, 100 on Linux for every architecture Go supports.
const clockTicks = 100

// status reads a size in kB of /proc/PID/status (VmRSS:, RssAnon:, RssFile:), in bytes.
func status(pid int, field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb * 1024
		}
	}
	return 0
}

// metric returns the value of the sample named exactly (with its labels) in a scrape.
func metric(url, sample string) float64 {
	v := -1.0
	scrape(url, func(line string) {
		if s, ok := strings.CutPrefix(line, sample+" "); ok {
			v, _ = strconv.ParseFloat(s, 64)
		}
	})
	return v
}

// metricSum returns the sum of the samples whose lines start with prefix.
func metricSum(url, prefix string) float64 {
	sum := 0.0
	scrape(url, func(line string) {
		if strings.HasPrefix(line, prefix) {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			sum += v
		}
	})
	return sum
}

func scrape(url string, f func(line string)) {
	resp, err := http.Get(url)
	if err != nil {
		return
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f(sc.Text())
	}
}

func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// forEach runs f for 0..n-1, 32 at a time, and returns the first error.
func forEach(n int, f func(int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, 32)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
