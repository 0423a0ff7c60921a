// Package scale measures pullpass's two binaries on a real API server: N opted-in namespaces
// each using R registries (N×R pull secrets made at admission by the webhook), then every source
// rotated at once (rewritten by the controller's keeper). Each figure has a baseline from the same
// run: the first admission in an opted-in namespace against a pod in a plain namespace created
// alongside; the rotation against the same number of plain Secret updates from one client with
// the same rate limits (the floor for any controller); each binary's memory, CPU and API
// requests at steady state against its own, idle, before the namespaces existed. The webhook is
// measured replica by replica (the worst and the sum), the controller's leader apart from its
// standbys, and each binary's API requests by its ServiceAccount.
package scale

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/registryclient"
)

// Config sets the scale.
type Config struct {
	Namespaces  int // default 1000
	Registries  int // default 5
	Concurrency int // client workers (default 16)
	QPS         float32
	Burst       int
	// PlainEvery makes every PlainEvery-th namespace a plain one (not opted in), for the
	// admission baseline (default 10).
	PlainEvery int
	// QuietPeriod is how long the steady state is watched, idle and loaded (default 2 min, four
	// of the keeper's 30 s resyncs).
	QuietPeriod time.Duration
	// Namespace is pullpass's (default pullpass), WebhookDeployment and ControllerDeployment its
	// two binaries there (default pullpass-webhook, pullpass-controller), ControllerLease the
	// Lease the controller's leader holds (default pullpass-keeper).
	Namespace, WebhookDeployment, ControllerDeployment, ControllerLease string
	// HostNetworkAddress is where a replica on the host network serves its metrics port, seen
	// from here (default 127.0.0.1: the harness). Other replicas are read through the API
	// server's pod proxy.
	HostNetworkAddress string
	// BaselineOnce takes the plain updates once, after the rotation, not before (a shorter
	// run, and one stopped during the baseline has the rotation's time).
	BaselineOnce bool
	// NoCleanup leaves the namespaces, registries and FlowSchemas, for a cluster taken down
	// right after (deleting 10,000 namespaces takes minutes).
	NoCleanup bool
	Log       io.Writer
}

// Result are the figures.
type Result struct {
	PullSecrets       int
	AdmissionP50      time.Duration // first pod of an opted-in namespace: writes its R secrets
	AdmissionP99      time.Duration
	PlainAdmissionP50 time.Duration // a pod in a plain namespace, created alongside
	PlainAdmissionP99 time.Duration
	FailedOpen        int           // opted-in pods admitted without their secrets
	Converge          time.Duration // rotation to every pull secret updated
	ConvergeWrites    int           // secret PUTs the API server counted meanwhile
	QuietPeriod       time.Duration
	// Idle is both binaries before the namespaces; Loaded with every pull secret in place and
	// nothing changing, before the rotation.
	Idle, Loaded Steady
	// EndWebhook and EndController are their memory at the end, after the rotation and the
	// baseline's updates.
	EndWebhook, EndController Binary
	// PeakWebhook and PeakController are the most any replica of each had from the namespaces'
	// creation to the end, sampled every 10 s (PeakScrapeErrors scrapes failed).
	PeakWebhook, PeakController Peak
	PeakScrapeErrors            int
	// Baseline is the mean of BaselineBefore and BaselineAfter (BaselineAfter alone with
	// BaselineOnce): the same number of plain Secret updates from one client, before the
	// rotation and after.
	Baseline, BaselineBefore, BaselineAfter time.Duration
}

const pullpassNS = "pullpass"

// Run runs the benchmark against the cluster of cfg, then cleans up (unless NoCleanup). A run
// stopped early (ctx ended) returns the figures it has with the error.
func Run(ctx context.Context, rc *rest.Config, c Config) (res Result, err error) {
	c = c.withDefaults()
	r, err := newRun(rc, c, &res)
	if err != nil {
		return Result{}, err
	}
	if !c.NoCleanup {
		defer cleanup(r.kube, r.regs, c, r.total, r.names)
	}
	w, err := watchBinaries(ctx, r.kube, c)
	if err != nil {
		return res, err
	}

	// Both binaries idle: the baseline of their footprints.
	r.logf("webhook and controller idle for %s", c.QuietPeriod)
	if res.Idle, err = w.steady(ctx, c.QuietPeriod); err != nil {
		return res, err
	}
	logSteady(r.logf, "idle", res.Idle)
	pk := w.bin.watchPeaks(ctx, 10*time.Second, r.logf)
	defer func() { res.PeakWebhook, res.PeakController, res.PeakScrapeErrors = pk.end() }()

	if err := r.createRegistries(ctx); err != nil {
		return res, err
	}
	if err := r.admitAll(ctx); err != nil {
		return res, err
	}

	// The steady state: every pull secret in place, nothing changes; the keeper resyncs. First,
	// so that a run stopped early has the memory at this size.
	r.logf("webhook and controller at steady state for %s", c.QuietPeriod)
	if res.Loaded, err = w.steady(ctx, c.QuietPeriod); err != nil {
		return res, err
	}
	logSteady(r.logf, "steady", res.Loaded)

	if err := r.rotateAll(ctx); err != nil {
		return res, err
	}

	// Memory at the end, the rotation's garbage collected or not.
	if res.EndWebhook, res.EndController, err = w.memory(ctx); err != nil {
		return res, err
	}
	r.logf("at the end: webhook worst RSS %s, controller worst RSS %s", MiB(res.EndWebhook.Worst().RSS), MiB(res.EndController.Worst().RSS))
	return res, nil
}

// withDefaults fills what c leaves unset.
func (c Config) withDefaults() Config {
	if c.Namespaces == 0 {
		c.Namespaces = 1000
	}
	if c.Registries == 0 {
		c.Registries = 5
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.QPS == 0 {
		c.QPS, c.Burst = 200, 400 // the webhook's defaults
	}
	if c.PlainEvery == 0 {
		c.PlainEvery = 10
	}
	if c.QuietPeriod == 0 {
		c.QuietPeriod = 2 * time.Minute
	}
	if c.Namespace == "" {
		c.Namespace = pullpassNS
	}
	if c.WebhookDeployment == "" {
		c.WebhookDeployment = "pullpass-webhook"
	}
	if c.ControllerDeployment == "" {
		c.ControllerDeployment = "pullpass-controller"
	}
	if c.ControllerLease == "" {
		c.ControllerLease = "pullpass-keeper"
	}
	if c.HostNetworkAddress == "" {
		c.HostNetworkAddress = "127.0.0.1"
	}
	return c
}

// run is one Run's clients, registries and figures, shared by its phases.
type run struct {
	c     Config
	kube  kubernetes.Interface
	regs  registryclient.Interface
	names []string // the registries, filled by createRegistries
	total int      // namespaces, opted-in and plain
	res   *Result
}

func newRun(rc *rest.Config, c Config, res *Result) (*run, error) {
	cfg := rest.CopyConfig(rc)
	cfg.QPS, cfg.Burst = c.QPS, c.Burst
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	regs, err := registryclient.New(cfg)
	if err != nil {
		return nil, err
	}
	res.QuietPeriod = c.QuietPeriod
	return &run{c: c, kube: kube, regs: regs, res: res, names: make([]string, c.Registries),
		total: c.Namespaces + c.Namespaces/(c.PlainEvery-1)}, nil // opted-in and plain, interleaved
}

func (r *run) logf(f string, a ...any) {
	if r.c.Log != nil {
		fmt.Fprintf(r.c.Log, time.Now().Format("15:04:05 ")+f+"\n", a...)
	}
}

// createRegistries creates the registries and their sources.
func (r *run) createRegistries(ctx context.Context) error {
	for i := range r.names {
		r.names[i] = fmt.Sprintf("scale-%d", i)
		host := fmt.Sprintf("scale-%d.pullpass-bench.invalid", i)
		if err := setSource(ctx, r.kube, r.names[i], host, "password-1", true); err != nil {
			return err
		}
		reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: r.names[i]}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{host}, Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: "src-" + r.names[i], Namespace: pullpassNS}}}}
		if _, err := r.regs.Create(ctx, reg, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	time.Sleep(2 * time.Second) // the webhook's informer catches up
	return nil
}

// admitAll creates the namespaces, each with one pod that uses every registry; every
// PlainEvery-th is not opted in. The pods never run: a scheduling gate keeps them Pending,
// unscheduled, with no event and no status (bound to a node that does not exist, the
// controller-manager's pod GC deleted them, and the controller's cache of pods was empty).
// Admission is what makes the pull secrets.
func (r *run) admitAll(ctx context.Context) error {
	c, res := r.c, r.res
	r.logf("creating %d opted-in and %d plain namespaces, one pod each", c.Namespaces, r.total-c.Namespaces)
	var admission, plain []time.Duration
	var mu sync.Mutex
	created, started := 0, time.Now()
	err := parallel(ctx, c.Concurrency, r.total, func(i int) error {
		ns, optedIn := namespaceName(i), !isPlain(i, c.PlainEvery)
		got, d, err := r.admitOne(ctx, ns, optedIn)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if created++; created%1000 == 0 {
			r.logf("%d of %d namespaces and pods in %s", created, r.total, time.Since(started).Round(time.Second))
		}
		switch {
		case !optedIn && got != 0:
			return fmt.Errorf("pod in plain namespace %s got %d pull secrets", ns, got)
		case !optedIn:
			plain = append(plain, d)
		case got == len(r.names):
			admission = append(admission, d)
		case got == 0:
			// The webhook did not answer in time, or failed: the API server admitted the pod
			// as it was (failurePolicy Ignore). Counted, not fatal: it is what scale does.
			res.FailedOpen++
		default:
			return fmt.Errorf("pod in %s got %d pull secrets, want %d", ns, got, len(r.names))
		}
		return nil
	})
	res.AdmissionP50, res.AdmissionP99 = percentiles(admission)
	res.PlainAdmissionP50, res.PlainAdmissionP99 = percentiles(plain)
	if err != nil {
		return err
	}
	if res.PullSecrets, err = countWith(ctx, r.kube, r.names, "password-1"); err != nil {
		return err
	}
	r.logf("%d pull secrets in place; first pod p50 %s p99 %s, plain %s %s, %d failed open", res.PullSecrets,
		res.AdmissionP50, res.AdmissionP99, res.PlainAdmissionP50, res.PlainAdmissionP99, res.FailedOpen)
	return nil
}

// admitOne creates namespace ns and its pod, and returns how many pull secrets admission gave the
// pod and how long its creation took.
func (r *run) admitOne(ctx context.Context, ns string, optedIn bool) (int, time.Duration, error) {
	meta := metav1.ObjectMeta{Name: ns, Labels: map[string]string{"pullpass.io/bench": "scale"}}
	if optedIn {
		meta.Annotations = map[string]string{"pullpass.io/inject": "enabled"}
	}
	if _, err := r.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: meta}, metav1.CreateOptions{}); err != nil {
		return 0, 0, err
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns}, Spec: corev1.PodSpec{
		SchedulingGates: []corev1.PodSchedulingGate{{Name: "pullpass.io/bench"}}}}
	for j := range r.names {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", j), Image: fmt.Sprintf("scale-%d.pullpass-bench.invalid/app:1", j)})
	}
	// The ServiceAccount admission plugin refuses a pod, before any webhook is called, until the
	// controller-manager made the namespace's default ServiceAccount, which it may be slow to
	// under this load: then the pod is created again once it is there, and timed so.
	for try := 0; ; try++ {
		t0 := time.Now()
		p, err := r.kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		d := time.Since(t0)
		if err == nil {
			return len(p.Spec.ImagePullSecrets), d, nil
		}
		if try == 3 || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "service account") {
			return 0, 0, err
		}
		if err := defaultServiceAccount(ctx, r.kube, ns); err != nil {
			return 0, 0, err
		}
	}
}

// rotateAll rotates every source at once and follows the pull secrets with one watch, between two
// runs of the baseline: the same number of updates of plain Secrets, from one client, same limits.
func (r *run) rotateAll(ctx context.Context) (err error) {
	c, res := r.c, r.res
	want := res.PullSecrets
	r.logf("baseline: %d plain secret updates", want)
	if !c.BaselineOnce {
		if res.BaselineBefore, err = baseline(ctx, r.kube, c, want, true); err != nil {
			return err
		}
		res.Baseline = res.BaselineBefore // until the one after
	}
	rotated, err := watchRotation(ctx, r.kube, r.names, "password-2", want)
	if err != nil {
		return err
	}
	before, err := secretWrites(ctx, r.kube, "PUT")
	if err != nil {
		return err
	}
	t0 := time.Now()
	for i, n := range r.names {
		if err := setSource(ctx, r.kube, n, fmt.Sprintf("scale-%d.pullpass-bench.invalid", i), "password-2", false); err != nil {
			return err
		}
	}
	select {
	case err := <-rotated:
		if err != nil {
			return err
		}
	case <-time.After(20 * time.Minute):
		return fmt.Errorf("not all of %d pull secrets rotated after 20 minutes", want)
	}
	res.Converge = time.Since(t0)
	after, err := secretWrites(ctx, r.kube, "PUT")
	if err != nil {
		return err
	}
	res.ConvergeWrites = after - before - c.Registries // less the rotations themselves
	r.logf("converged in %s with %d writes", res.Converge, res.ConvergeWrites)

	// The baseline again, after: the mean of the two runs, before and after, is the baseline, so
	// that load from elsewhere while the keeper ran weighs on both alike.
	if res.BaselineAfter, err = baseline(ctx, r.kube, c, want, c.BaselineOnce); err != nil {
		return err
	}
	res.Baseline = res.BaselineAfter
	if !c.BaselineOnce {
		res.Baseline = (res.BaselineBefore + res.BaselineAfter) / 2
	}
	r.logf("baseline before %s, after %s", res.BaselineBefore, res.BaselineAfter)
	return nil
}

// logSteady logs a steady period's figures as soon as they are taken.
func logSteady(logf func(string, ...any), what string, s Steady) {
	for _, b := range []struct {
		name string
		bin  Binary
	}{{"webhook", s.Webhook}, {"controller", s.Controller}} {
		for _, r := range b.bin.Replicas {
			if r.Unread != "" {
				logf("%s: %s %s (leader %v): metrics unread: %s; restarts %d", what, b.name, r.Pod, r.Leader, r.Unread, r.Restarts)
				continue
			}
			logf("%s: %s %s (leader %v): RSS %s, heap in use %s, allocated %s, next GC %s, GOMEMLIMIT %s, CPU %.4f, restarts %d", what, b.name, r.Pod, r.Leader,
				MiB(r.RSS), MiB(r.Heap), MiB(r.HeapAlloc), MiB(r.NextGC), MiB(r.MemLimit), r.CPU, r.Restarts)
		}
		logf("%s: %s requests/min %.1f", what, b.name, b.bin.RequestsPerMin)
	}
	logf("%s: %d secret writes; objects (serialized MiB): namespaces %d (%.1f), secrets %d (%.1f), pods %d (%.1f), events %d (%.1f)", what, s.SecretWrites,
		s.Objects["namespaces"], float64(s.ObjectBytes["namespaces"])/(1<<20), s.Objects["secrets"], float64(s.ObjectBytes["secrets"])/(1<<20),
		s.Objects["pods"], float64(s.ObjectBytes["pods"])/(1<<20), s.Objects["events"], float64(s.ObjectBytes["events"])/(1<<20))
}

// baseline times n updates of plain Secrets in the opted-in namespaces, from one client with
// the same limits, one request per update, as the keeper makes. The first time creates them.
func baseline(ctx context.Context, kube kubernetes.Interface, c Config, n int, create bool) (time.Duration, error) {
	if create {
		err := parallel(ctx, c.Concurrency, c.Namespaces, func(i int) error {
			_, err := kube.CoreV1().Secrets(optedInName(i, c.PlainEvery)).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "baseline"}, StringData: map[string]string{"v": "0"}}, metav1.CreateOptions{})
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	b0, err := secretWrites(ctx, kube, "PATCH")
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	err = parallel(ctx, c.Concurrency, n, func(i int) error {
		// A merge patch: one request, counted with verb PATCH.
		patch := fmt.Appendf(nil, `{"stringData":{"v":"%d"}}`, i)
		_, err := kube.CoreV1().Secrets(optedInName(i%c.Namespaces, c.PlainEvery)).Patch(ctx, "baseline", types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if b1, err := secretWrites(ctx, kube, "PATCH"); err != nil || b1-b0 < n {
		return 0, fmt.Errorf("the API server counted %d of the baseline's %d updates (%w)", b1-b0, n, err)
	}
	return d, nil
}

// Namespaces are numbered together, opted-in and plain interleaved.
func namespaceName(i int) string      { return fmt.Sprintf("scale-%05d", i) }
func isPlain(i, every int) bool       { return i%every == every-1 }
func optedInName(k, every int) string { return namespaceName(k + k/(every-1)) } // the k-th opted-in one

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

func setSource(ctx context.Context, kube kubernetes.Interface, name, host, password string, create bool) error {
	data, err := dockerconfig.ForHost(host, "bench", password).Marshal()
	if err != nil {
		return err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "src-" + name, Namespace: pullpassNS}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
	if create {
		_, err = kube.CoreV1().Secrets(pullpassNS).Create(ctx, s, metav1.CreateOptions{})
		return err
	}
	_, err = kube.CoreV1().Secrets(pullpassNS).Update(ctx, s, metav1.UpdateOptions{})
	return err
}

// countWith counts the bench's pull secrets that hold password.
func countWith(ctx context.Context, kube kubernetes.Interface, names []string, password string) (int, error) {
	list, err := kube.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: "pullpass.io/role=pull-secret"})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range list.Items {
		if holds(&s, names, password) {
			n++
		}
	}
	return n, nil
}

// secretWrites reads the API server's count of secret requests with any of verbs.
func secretWrites(ctx context.Context, kube kubernetes.Interface, verbs ...string) (int, error) {
	total := 0.0
	err := apiserverMetrics(ctx, kube, func(l string) {
		if !strings.HasPrefix(l, "apiserver_request_total{") || !strings.Contains(l, `resource="secrets"`) {
			return
		}
		for _, v := range verbs {
			if strings.Contains(l, `verb="`+v+`"`) {
				total += sampleValue(l)
			}
		}
	})
	return int(math.Round(total)), err
}

// apiserverMetrics calls f with each line of the API server's /metrics.
func apiserverMetrics(ctx context.Context, kube kubernetes.Interface, f func(line string)) error {
	raw, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("reading the API server's metrics: %w", err)
	}
	return eachLine(bytes.NewReader(raw), f)
}

func eachLine(r io.Reader, f func(line string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f(sc.Text())
	}
	return sc.Err()
}

// sampleValue is the value of a sample line of the text exposition format.
func sampleValue(line string) float64 {
	v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
	return v
}

// holds reports whether s is one of the bench's pull secrets and holds password.
func holds(s *corev1.Secret, names []string, password string) bool {
	if !strings.HasPrefix(s.Namespace, "scale-") || !slices.Contains(names, strings.TrimPrefix(s.Name, pullsecret.Prefix)) {
		return false
	}
	cfg, err := dockerconfig.Parse(s.Data[corev1.DockerConfigJsonKey])
	if err != nil {
		return false
	}
	for _, e := range cfg.Auths {
		return e.Password == password
	}
	return false
}

func parallel(ctx context.Context, workers, n int, f func(int) error) error {
	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	for i := 0; i < n && ctx.Err() == nil && !failed(); i++ { // the first error ends the run
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return first
}

// defaultServiceAccount waits for the default ServiceAccount of a new namespace.
func defaultServiceAccount(ctx context.Context, kube kubernetes.Interface, ns string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		switch {
		case err == nil:
			return nil
		case !apierrors.IsNotFound(err) || time.Now().After(deadline):
			return fmt.Errorf("the default ServiceAccount of %s: %w", ns, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func cleanup(kube kubernetes.Interface, regs registryclient.Interface, c Config, namespaces int, names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, d := range []string{c.WebhookDeployment, c.ControllerDeployment} {
		_ = kube.FlowcontrolV1().FlowSchemas().Delete(ctx, flowSchemaPrefix+d, metav1.DeleteOptions{})
	}
	for _, n := range names {
		if n != "" {
			_ = regs.Delete(ctx, n, metav1.DeleteOptions{})
			_ = kube.CoreV1().Secrets(pullpassNS).Delete(ctx, "src-"+n, metav1.DeleteOptions{})
		}
	}
	_ = parallel(ctx, c.Concurrency, namespaces, func(i int) error {
		_ = kube.CoreV1().Namespaces().Delete(ctx, namespaceName(i), metav1.DeleteOptions{})
		return nil // one gone already stops no other
	})
}
