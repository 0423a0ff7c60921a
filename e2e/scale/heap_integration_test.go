package scale

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/credentials/userpass"
	"github.com/pullpass/pullpass/pkg/pullsecret"
	"github.com/pullpass/pullpass/pkg/testenv"
	"github.com/pullpass/pullpass/webhook/cluster"
	"github.com/pullpass/pullpass/webhook/controller"
)

// TestHeapOfEachBinary says what the webhook's and the controller's memory is made of, which
// their /metrics cannot: the objects of scalebench (namespaces opted in, each with a pod of 5
// images and its 5 pull secrets, as admission leaves them) in a real API server, then, in this
// process, the webhook's caches synced, and the controller leading with its caches synced and
// settled; the live heap of each over the process's own, and a heap profile of each (every
// allocation sampled) in SCALEBENCH_HEAP_DIR. Opt-in, it is not a test of anything:
//
//	SCALEBENCH_HEAP_NAMESPACES=2000 SCALEBENCH_HEAP_DIR=/tmp/heap go test -run TestHeapOfEachBinary -v ./e2e/scale/
//	go tool pprof -sample_index=inuse_space -top /tmp/heap/controller.pprof
func TestHeapOfEachBinary(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SCALEBENCH_HEAP_NAMESPACES"))
	dir := os.Getenv("SCALEBENCH_HEAP_DIR")
	if n == 0 || dir == "" {
		t.Skip("set SCALEBENCH_HEAP_NAMESPACES and SCALEBENCH_HEAP_DIR to measure")
	}
	runtime.MemProfileRate = 1
	env := controlPlane.Env(t)
	env.EnsureNamespace(t, pullpassNS)
	ctx := t.Context()
	var regs []*v1alpha1.Registry
	for i := range 5 {
		name, host := fmt.Sprintf("scale-%d", i), fmt.Sprintf("scale-%d.pullpass-bench.invalid", i)
		env.SourceSecret(t, pullpassNS, "src-"+name, host, "password-1")
		regs = append(regs, env.CreateRegistry(t, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.RegistrySpec{
			Hosts: []string{host}, Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: "src-" + name, Namespace: pullpassNS}}}}))
	}
	err := parallel(ctx, 32, n, func(i int) error {
		ns := namespaceName(i)
		if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{"pullpass.io/bench": "scale"}, Annotations: map[string]string{"pullpass.io/inject": "enabled"}}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns}, Spec: corev1.PodSpec{NodeName: "pullpass-bench-nowhere"}}
		for j, r := range regs {
			s, err := pullsecret.Build(ns, r, userpass.Credentials{Username: "user", Password: "password-1"})
			if err != nil {
				return err
			}
			if _, err := env.Kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
				return err
			}
			pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s.Name})
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", j), Image: fmt.Sprintf("scale-%d.pullpass-bench.invalid/app:1", j)})
		}
		_, err := env.Kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// The webhook's caches, as it builds them.
	base := liveHeap(t, "", "")
	o := cluster.DefaultOptions()
	o.Namespace = pullpassNS
	cctx, cancel := context.WithCancel(ctx)
	caches := cluster.NewCaches(env.Kube, env.Registries, &o, log)
	caches.Start(cctx)
	cache.WaitForCacheSync(cctx.Done(), caches.Synced)
	time.Sleep(5 * time.Second)
	t.Logf("%d namespaces × 5 registries: the webhook's caches take %s of live heap", n, MiB(float64(liveHeap(t, dir, "webhook")-base)))
	cancel()
	caches.Shutdown()

	// The controller, leading.
	base = liveHeap(t, "", "")
	co := controller.DefaultOptions()
	co.Kubeconfig = env.KubeconfigFile(t)
	co.Namespace = pullpassNS
	co.MetricsAddress = testenv.FreeAddress(t)
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- controller.Run(rctx, co, log) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("the controller: %v", err)
		}
	}()
	testenv.Eventually(t, 5*time.Minute, func() error {
		resp, err := http.Get("http://" + co.MetricsAddress + "/readyz")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	time.Sleep(40 * time.Second) // a keeper resync, the verifier's first round
	t.Logf("the controller leading takes %s of live heap", MiB(float64(liveHeap(t, dir, "controller")-base)))
}

// liveHeap collects twice and returns the heap's live bytes, writing a heap profile to
// dir/name.pprof when given.
func liveHeap(t *testing.T, dir, name string) uint64 {
	t.Helper()
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if dir != "" {
		f, err := os.Create(filepath.Join(dir, name+".pprof"))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Close() }()
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
	}
	return m.HeapAlloc
}
