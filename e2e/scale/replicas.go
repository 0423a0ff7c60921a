package scale

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Replica is one pod of a binary: its memory at a moment, its CPU over a period.
type Replica struct {
	Pod string
	// Leader: the controller's replica holding the Lease (the keeper, verifier and pull watcher
	// run there); a standby holds no caches.
	Leader    bool
	RSS, Heap float64 // bytes (process_resident_memory_bytes, go_memstats_heap_inuse_bytes)
	// HeapAlloc is the heap's objects, live or not yet collected; NextGC the heap size at which
	// the next collection starts; MemLimit the Go runtime's soft limit (GOMEMLIMIT, set below the
	// container's). Bytes, at the end: where the RSS goes.
	HeapAlloc, NextGC, MemLimit float64
	// CPU is in cores, averaged over the period; -1 when the process restarted within it.
	CPU      float64
	Restarts int32 // of its container, at the end
	// Unread says why its /metrics could not be read at the end (a process restarting), and
	// its figures are zero; "" when they were read.
	Unread string
}

// Binary is one of pullpass's Deployments over a period: every replica, and the API requests of
// its ServiceAccount.
type Binary struct {
	Replicas       []Replica
	RequestsPerMin float64
}

// Worst is the replica with the most RSS (zero without replicas).
func (b Binary) Worst() Replica {
	var w Replica
	for _, r := range b.Replicas {
		if r.RSS > w.RSS {
			w = r
		}
	}
	return w
}

// Sum adds up the replicas' RSS, Go heap and CPU.
func (b Binary) Sum() (rss, heap, cpu float64) {
	for _, r := range b.Replicas {
		rss, heap, cpu = rss+r.RSS, heap+r.Heap, cpu+max(r.CPU, 0)
	}
	return rss, heap, cpu
}

// Leader is the replica holding the Lease, if one was told apart.
func (b Binary) Leader() (Replica, bool) {
	for _, r := range b.Replicas {
		if r.Leader {
			return r, true
		}
	}
	return Replica{}, false
}

// Standbys are the other replicas.
func (b Binary) Standbys() []Replica {
	var out []Replica
	for _, r := range b.Replicas {
		if !r.Leader {
			out = append(out, r)
		}
	}
	return out
}

// binaries finds pullpass's replicas and reads their metrics: a pod on the host network at
// hostAddr and its metrics port (the harness: loopback), any other through the API server's pod
// proxy.
type binaries struct {
	kube                                  kubernetes.Interface
	namespace, webhook, controller, lease string
	hostAddr                              string
	http                                  *http.Client
}

const (
	rssMetric       = "process_resident_memory_bytes"
	heapMetric      = "go_memstats_heap_inuse_bytes"
	heapAllocMetric = "go_memstats_heap_alloc_bytes"
	nextGCMetric    = "go_memstats_next_gc_bytes"
	memLimitMetric  = "go_gc_gomemlimit_bytes"
	cpuMetric       = "process_cpu_seconds_total"
)

// pods are the running pods of a Deployment.
func (b *binaries) pods(ctx context.Context, deployment string) ([]corev1.Pod, error) {
	d, err := b.kube.AppsV1().Deployments(b.namespace).Get(ctx, deployment, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("deployment %s: %w", deployment, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, err
	}
	list, err := b.kube.CoreV1().Pods(b.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out, nil
}

// leader names the controller pod holding the Lease. Its holder identity is the replica's
// hostname and a suffix: the pod's name, or, on the host network, the node's hostname, which
// need not be the node's name (the harness's is not): a pod alone is then the one holding it.
func (b *binaries) leader(ctx context.Context, pods []corev1.Pod) (string, error) {
	l, err := b.kube.CoordinationV1().Leases(b.namespace).Get(ctx, b.lease, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("the controller's Lease %s: %w", b.lease, err)
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return "", nil
	}
	host := *l.Spec.HolderIdentity
	if i := strings.LastIndexByte(host, '_'); i > 0 {
		host = host[:i]
	}
	for _, p := range pods {
		if p.Name == host {
			return p.Name, nil
		}
	}
	if len(pods) == 1 && pods[0].Spec.HostNetwork {
		return pods[0].Name, nil
	}
	return "", nil
}

// scrape reads the unlabelled samples of a pod's /metrics.
func (b *binaries) scrape(ctx context.Context, p *corev1.Pod) (map[string]float64, error) {
	port := 0
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == "metrics" {
				port = int(cp.ContainerPort)
			}
		}
	}
	if port == 0 {
		return nil, fmt.Errorf("pod %s has no port named metrics", p.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var raw []byte
	if p.Spec.HostNetwork {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(b.hostAddr, strconv.Itoa(port))+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		resp, err := b.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %w", p.Name, err)
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("metrics of %s: %s", p.Name, resp.Status)
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil {
			return nil, fmt.Errorf("metrics of %s: %w", p.Name, err)
		}
		raw = buf.Bytes()
	} else {
		var err error
		if raw, err = b.kube.CoreV1().Pods(p.Namespace).ProxyGet("http", p.Name, strconv.Itoa(port), "metrics", nil).DoRaw(ctx); err != nil {
			return nil, fmt.Errorf("metrics of %s through the API server: %w", p.Name, err)
		}
	}
	out := map[string]float64{}
	err := eachLine(bytes.NewReader(raw), func(l string) {
		if name, _, ok := strings.Cut(l, " "); ok && !strings.HasPrefix(l, "#") && !strings.Contains(name, "{") {
			out[name] = sampleValue(l)
		}
	})
	return out, err
}

// sample is a replica's metrics at a moment.
type sample struct {
	pod                                         corev1.Pod
	leader                                      bool
	rss, heap, heapAlloc, nextGC, memLimit, cpu float64
	restarts                                    int32
	err                                         error // its /metrics unread
}

// snapshot reads every running replica of a Deployment; leader tells the controller's apart. A
// replica whose /metrics cannot be read (restarting) is in it with the error.
func (b *binaries) snapshot(ctx context.Context, deployment string, leader bool) ([]sample, error) {
	pods, err := b.pods(ctx, deployment)
	if err != nil {
		return nil, err
	}
	holder := ""
	if leader {
		if holder, err = b.leader(ctx, pods); err != nil {
			return nil, err
		}
	}
	out := make([]sample, 0, len(pods))
	for i := range pods {
		m, err := b.scrape(ctx, &pods[i])
		s := sample{pod: pods[i], leader: pods[i].Name == holder, rss: m[rssMetric], heap: m[heapMetric], cpu: m[cpuMetric],
			heapAlloc: m[heapAllocMetric], nextGC: m[nextGCMetric], memLimit: m[memLimitMetric], err: err}
		for _, cs := range pods[i].Status.ContainerStatuses {
			s.restarts += cs.RestartCount
		}
		out = append(out, s)
	}
	return out, nil
}

// replicas are the figures of the samples at the end of a period that began with before.
func replicas(before, after []sample, el time.Duration) []Replica {
	out := make([]Replica, 0, len(after))
	for _, a := range after {
		r := Replica{Pod: a.pod.Name, Leader: a.leader, RSS: a.rss, Heap: a.heap, Restarts: a.restarts, CPU: -1,
			HeapAlloc: a.heapAlloc, NextGC: a.nextGC, MemLimit: a.memLimit}
		if a.err != nil {
			r.Unread = a.err.Error()
			out = append(out, r)
			continue
		}
		for _, b := range before {
			if b.pod.UID == a.pod.UID && b.restarts == a.restarts && b.err == nil && a.cpu >= b.cpu {
				r.CPU = (a.cpu - b.cpu) / el.Seconds()
			}
		}
		out = append(out, r)
	}
	return out
}

// Peak is the most RSS and Go heap any replica of a binary had, sampled every few seconds.
type Peak struct{ RSS, Heap float64 }

// peaks samples every replica of both binaries until stopped, keeping each binary's most and
// logging them every minute: a run stopped early still says how far memory went.
type peaks struct {
	mu                  sync.Mutex
	webhook, controller Peak
	errors              int
	stop                func()
	done                chan struct{}
}

func (b *binaries) watchPeaks(ctx context.Context, every time.Duration, logf func(string, ...any)) *peaks {
	ctx, cancel := context.WithCancel(ctx)
	p := &peaks{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		lastLog := time.Now()
		for {
			for _, bin := range []struct {
				deployment string
				peak       *Peak
			}{{b.webhook, &p.webhook}, {b.controller, &p.controller}} {
				s, err := b.snapshot(ctx, bin.deployment, false)
				p.mu.Lock()
				if err != nil && ctx.Err() == nil {
					p.errors++
				}
				for _, r := range s {
					if r.err != nil && ctx.Err() == nil {
						p.errors++
					}
					bin.peak.RSS, bin.peak.Heap = max(bin.peak.RSS, r.rss), max(bin.peak.Heap, r.heap)
				}
				p.mu.Unlock()
			}
			if time.Since(lastLog) >= time.Minute {
				lastLog = time.Now()
				w, c, errs := p.get()
				logf("peak so far: webhook RSS %s heap %s, controller RSS %s heap %s (%d failed scrapes)", MiB(w.RSS), MiB(w.Heap), MiB(c.RSS), MiB(c.Heap), errs)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *peaks) get() (webhook, controller Peak, errors int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.webhook, p.controller, p.errors
}

// end stops the sampling and returns the peaks.
func (p *peaks) end() (webhook, controller Peak, errors int) {
	p.stop()
	<-p.done
	return p.get()
}

// MiB formats bytes.
func MiB(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
