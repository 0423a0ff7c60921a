package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pullpass/pullpass/pkg/testenv"
)

// BenchmarkAgentAt1000Registries is Run against a pkg/testenv API server (kube-apiserver and
// etcd only, no pullpass deployed: the benchmark writes the node Secret as the controller's
// leader does), with the agent and the plugin built from this tree, or those named by
// PULLPASS_BENCH_AGENT and PULLPASS_BENCH_PLUGIN (another revision's: a before and after in one
// sitting), and PULLPASS_BENCH_STEADY the steady period (Config.Steady). One iteration is one run,
// about twice the steady period:
//
//	go test -run '^$' -bench AgentAt1000Registries -benchtime 1x -timeout 40m ./agent/bench/
func BenchmarkAgentAt1000Registries(b *testing.B) {
	agent, plugin := os.Getenv("PULLPASS_BENCH_AGENT"), os.Getenv("PULLPASS_BENCH_PLUGIN")
	for _, bin := range []struct {
		path *string
		pkg  string
	}{{&agent, "../../cmd/pullpass-agent"}, {&plugin, "../../cmd/pullpass-credential-provider"}} {
		if *bin.path != "" {
			continue
		}
		*bin.path = filepath.Join(b.TempDir(), filepath.Base(bin.pkg))
		build := exec.CommandContext(b.Context(), "go", "build", "-o", *bin.path, bin.pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("building %s: %v\n%s", bin.pkg, err, out)
		}
	}
	env, err := testenv.Start(b.Context(), testenv.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Stop() })
	kubeconfig := env.KubeconfigFile(b)
	var steady time.Duration
	if v := os.Getenv("PULLPASS_BENCH_STEADY"); v != "" {
		if steady, err = time.ParseDuration(v); err != nil {
			b.Fatalf("PULLPASS_BENCH_STEADY: %v", err)
		}
	}
	for b.Loop() {
		r, err := Run(b.Context(), Config{Kubeconfig: kubeconfig, AgentBin: agent, PluginBin: plugin, Registries: 1000,
			MetricsAddress: testenv.FreeAddress(b), Steady: steady, Out: os.Stderr})
		if err != nil {
			b.Fatal(err)
		}
		const mib = 1 << 20
		b.ReportMetric(r.Loaded.RSS/r.Idle.RSS, "loaded/idle-RSS")
		b.ReportMetric(r.Idle.RSS/mib, "idle-RSS-MiB")
		b.ReportMetric(r.Loaded.RSS/mib, "loaded-RSS-MiB")
		b.ReportMetric(r.Loaded.Heap/mib, "loaded-heap-MiB")
		b.ReportMetric(1000*r.Loaded.CPU, "rest-millicores")
		b.ReportMetric(r.TimeToServe.Max.Seconds(), "serve-max-s")
		b.ReportMetric(float64(r.TimeToServe.Missing), "never-served")
		b.Logf("idle %+v\nloaded %+v\nserved p50 %v p99 %v max %v, all after %v", r.Idle, r.Loaded,
			r.TimeToServe.P50, r.TimeToServe.P99, r.TimeToServe.Max, r.FillTime.Round(time.Millisecond))
	}
}
