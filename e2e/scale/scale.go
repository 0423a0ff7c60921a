// Package scale measures the keeper on a real API server: N opted-in namespaces each using R
// registries (N×R pull secrets made at admission), then every source rotated at once: how long
// until every namespace has the new password, and how many API writes that took. The baseline,
// in the same run, is the same number of plain Secret updates from one client with the same rate
// limits: the floor for any controller.
package scale

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	Log         io.Writer
}

// Result are the figures.
type Result struct {
	PullSecrets    int
	AdmissionP50   time.Duration
	AdmissionP99   time.Duration
	Converge       time.Duration // rotation to every pull secret updated
	ConvergeWrites int           // secret PUTs the API server counted meanwhile
	QuietWrites    int           // secret PUTs in the QuietPeriod after, with nothing changing
	QuietPeriod    time.Duration
	Baseline       time.Duration // the same number of plain Secret updates from one client
	BaselineWrites int
}

const pullpassNS = "pullpass"

// Run runs the benchmark against the cluster of cfg, then cleans up.
func Run(ctx context.Context, rc *rest.Config, c Config) (Result, error) {
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
	logf := func(f string, a ...any) {
		if c.Log != nil {
			fmt.Fprintf(c.Log, time.Now().Format("15:04:05 ")+f+"\n", a...)
		}
	}
	cfg := rest.CopyConfig(rc)
	cfg.QPS, cfg.Burst = c.QPS, c.Burst
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Result{}, err
	}
	regs, err := registryclient.New(cfg)
	if err != nil {
		return Result{}, err
	}
	var res Result
	names := make([]string, c.Registries)
	defer cleanup(kube, regs, c, names)

	// Registries and their sources.
	for i := range names {
		names[i] = fmt.Sprintf("scale-%d", i)
		host := fmt.Sprintf("scale-%d.pullpass-bench.invalid", i)
		if err := setSource(ctx, kube, names[i], host, "password-1", true); err != nil {
			return res, err
		}
		r := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: names[i]}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{host}, Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: "src-" + names[i], Namespace: pullpassNS}}}}
		if _, err := regs.Create(ctx, r, metav1.CreateOptions{}); err != nil {
			return res, err
		}
	}
	time.Sleep(2 * time.Second) // the webhook's informer catches up

	// Namespaces, each with one pod that uses every registry. The pods never run (their node
	// does not exist): admission is what makes the pull secrets.
	logf("creating %d namespaces and pods", c.Namespaces)
	var admission []time.Duration
	var mu sync.Mutex
	err = parallel(ctx, c.Concurrency, c.Namespaces, func(i int) error {
		ns := fmt.Sprintf("scale-%04d", i)
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns, Labels: map[string]string{"pullpass.io/bench": "scale"}, Annotations: map[string]string{"pullpass.io/inject": "enabled"}}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns}, Spec: corev1.PodSpec{NodeName: "pullpass-bench-nowhere"}}
		for j := range names {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", j), Image: fmt.Sprintf("scale-%d.pullpass-bench.invalid/app:1", j)})
		}
		t0 := time.Now()
		created, err := kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		d := time.Since(t0)
		if len(created.Spec.ImagePullSecrets) != len(names) {
			return fmt.Errorf("pod in %s got %d pull secrets, want %d", ns, len(created.Spec.ImagePullSecrets), len(names))
		}
		mu.Lock()
		admission = append(admission, d)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return res, err
	}
	slices.Sort(admission)
	res.AdmissionP50, res.AdmissionP99 = admission[len(admission)/2], admission[len(admission)*99/100]
	if res.PullSecrets, err = countWith(ctx, kube, names, "password-1"); err != nil {
		return res, err
	}
	logf("%d pull secrets in place", res.PullSecrets)

	// Rotate every source at once.
	before, err := secretPuts(ctx, kube)
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	for i, n := range names {
		if err := setSource(ctx, kube, n, fmt.Sprintf("scale-%d.pullpass-bench.invalid", i), "password-2", false); err != nil {
			return res, err
		}
	}
	want := c.Namespaces * c.Registries
	for {
		n, err := countWith(ctx, kube, names, "password-2")
		if err != nil {
			return res, err
		}
		if n == want {
			break
		}
		if time.Since(t0) > 10*time.Minute {
			return res, fmt.Errorf("only %d of %d pull secrets rotated after 10 minutes", n, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
	res.Converge = time.Since(t0)
	after, err := secretPuts(ctx, kube)
	if err != nil {
		return res, err
	}
	res.ConvergeWrites = after - before - c.Registries // less the rotations themselves
	logf("converged in %s with %d writes", res.Converge, res.ConvergeWrites)

	res.QuietPeriod = 40 * time.Second // longer than the keeper's 30 s resync
	time.Sleep(res.QuietPeriod)
	quiet, err := secretPuts(ctx, kube)
	if err != nil {
		return res, err
	}
	res.QuietWrites = quiet - after

	// Baseline: the same number of updates of plain Secrets, from one client, same limits.
	logf("baseline: %d plain secret updates", want)
	err = parallel(ctx, c.Concurrency, c.Namespaces, func(i int) error {
		_, err := kube.CoreV1().Secrets(fmt.Sprintf("scale-%04d", i)).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "baseline"}, StringData: map[string]string{"v": "0"}}, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return res, err
	}
	b0, _ := secretWrites(ctx, kube, "PATCH")
	t1 := time.Now()
	err = parallel(ctx, c.Concurrency, want, func(i int) error {
		// One request per update, as the keeper makes: a merge patch is a PUT-less update, so
		// it is counted with verb PATCH; BaselineWrites counts those.
		ns := fmt.Sprintf("scale-%04d", i%c.Namespaces)
		patch := fmt.Appendf(nil, `{"stringData":{"v":"%d"}}`, i)
		_, err := kube.CoreV1().Secrets(ns).Patch(ctx, "baseline", types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	res.Baseline = time.Since(t1)
	b1, _ := secretWrites(ctx, kube, "PATCH")
	res.BaselineWrites = b1 - b0
	return res, err
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
		if !strings.HasPrefix(s.Namespace, "scale-") || !slices.Contains(names, strings.TrimPrefix(s.Name, pullsecret.Prefix)) {
			continue
		}
		cfg, err := dockerconfig.Parse(s.Data[corev1.DockerConfigJsonKey])
		if err != nil {
			continue
		}
		for _, e := range cfg.Auths {
			if e.Password == password {
				n++
			}
			break
		}
	}
	return n, nil
}

// secretPuts reads the API server's count of secret updates.
func secretPuts(ctx context.Context, kube kubernetes.Interface) (int, error) {
	return secretWrites(ctx, kube, "PUT")
}

// secretWrites reads the API server's count of secret requests with a verb.
func secretWrites(ctx context.Context, kube kubernetes.Interface, verb string) (int, error) {
	raw, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	total := 0.0
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "apiserver_request_total{") && strings.Contains(l, `resource="secrets"`) && strings.Contains(l, `verb="`+verb+`"`) {
			var v float64
			if _, err := fmt.Sscanf(l[strings.LastIndexByte(l, ' ')+1:], "%g", &v); err == nil {
				total += v
			}
		}
	}
	return int(math.Round(total)), nil
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
	for i := 0; i < n && ctx.Err() == nil; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return first
}

func cleanup(kube kubernetes.Interface, regs registryclient.Interface, c Config, names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, n := range names {
		if n != "" {
			_ = regs.Delete(ctx, n, metav1.DeleteOptions{})
			_ = kube.CoreV1().Secrets(pullpassNS).Delete(ctx, "src-"+n, metav1.DeleteOptions{})
		}
	}
	_ = parallel(ctx, c.Concurrency, c.Namespaces, func(i int) error {
		return kube.CoreV1().Namespaces().Delete(ctx, fmt.Sprintf("scale-%04d", i), metav1.DeleteOptions{})
	})
}
