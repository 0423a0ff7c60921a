package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/agent/nodecreds"
	"github.com/pullpass/pullpass/agent/refresher"
	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/nodesecret"
	"github.com/pullpass/pullpass/pkg/testenv"
)

var controlPlane = testenv.New(testenv.Config{})

func TestMain(m *testing.M) { os.Exit(controlPlane.Run(m)) }

// syncAt returns a refresher over a node Secret of n registries shaped as Run's (one host, a
// docker config source each), its first sync done: what an agent at rest runs every few minutes.
func syncAt(tb testing.TB, n int) *refresher.Refresher {
	tb.Helper()
	const ns = "pullpass"
	data := map[string][]byte{nodesecret.FormatKey: []byte(nodesecret.FormatVersion)}
	for i := range n {
		name := fmt.Sprintf("agentbench-abcde-%d", i)
		data[name] = nodesecret.Encode(nodesecret.Entry{
			Spec: &v1alpha1.RegistrySpec{Hosts: []string{fmt.Sprintf("registry-%d.bench.example.com", i)}, Scope: v1alpha1.ScopeCluster,
				Auth: v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Namespace: "agentbench-abcde", Name: name}}},
			Username: "user", Password: fmt.Sprintf("password-%d", i),
			Source: nodesecret.SourceRef{Namespace: "agentbench-abcde", Name: name}, Version: "12345", Generation: 1,
		})
	}
	env := controlPlane.Env(tb)
	env.EnsureNamespace(tb, ns)
	kube := env.Kube
	_ = kube.CoreV1().Secrets(ns).Delete(context.Background(), nodesecret.Name, metav1.DeleteOptions{})
	if _, err := kube.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: nodesecret.Name}, Data: data}, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	reader, err := nodecreds.New(nodecreds.Config{Client: kube, Namespace: ns})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	reader.Run(ctx)
	for !reader.HasSynced() {
		time.Sleep(10 * time.Millisecond)
	}
	metrics, err := refresher.NewPrometheusMetrics(prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	r, err := refresher.New(refresher.Config{Registries: reader, Resolver: nodecreds.NewResolver(reader, nil, ""),
		CachePath: filepath.Join(tb.TempDir(), "credentials.json"), Metrics: metrics})
	if err != nil {
		tb.Fatal(err)
	}
	r.Sync(ctx)
	return r
}

func BenchmarkSyncAtRest(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			r := syncAt(b, n)
			b.ReportAllocs()
			for b.Loop() {
				r.Sync(context.Background())
			}
		})
	}
}

// A sync at rest at 1,000 registries allocates at most this: 63,139 before the cuts of
// 2026-12-07 (decoding each entry whole twice, reading the cache back, a goroutine per
// registry), 45,117 after (BenchmarkSyncAtRest). The margin is for the process's other
// goroutines (client-go's watch), which AllocsPerRun counts too.
const syncAllocBudget = 50_000

func TestSyncAtRestAllocationBudget(t *testing.T) {
	r := syncAt(t, 1000)
	if got := testing.AllocsPerRun(5, func() { r.Sync(context.Background()) }); got > syncAllocBudget {
		t.Fatalf("a sync at rest at 1,000 registries allocated %v times, budget %d", got, syncAllocBudget)
	}
}
