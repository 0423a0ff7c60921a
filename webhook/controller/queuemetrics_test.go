package controller

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/util/workqueue"
)

// A queue measured by QueueMetrics reports, under its name, what controller-runtime's would:
// one add for an item added twice while it waits, its retry, and nothing waiting once done.
func TestQueueMetricsCountWhatTheQueueDoes(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewQueueMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "pullpass-keeper", MetricsProvider: m})
	defer q.ShutDown()
	q.Add("r")
	q.Add("r") // already waiting: not added again
	if got := testutil.ToFloat64(m.depth.WithLabelValues("pullpass-keeper")); got != 1 {
		t.Fatalf("depth %v, want 1", got)
	}
	item, _ := q.Get()
	q.AddRateLimited(item) // a failure: retried later
	q.Done(item)
	want := `
# HELP workqueue_adds_total Items added to the work queue (an item already waiting is not added again).
# TYPE workqueue_adds_total counter
workqueue_adds_total{name="pullpass-keeper"} 1
# HELP workqueue_depth Current depth of the work queue: items waiting for a worker.
# TYPE workqueue_depth gauge
workqueue_depth{name="pullpass-keeper"} 0
# HELP workqueue_retries_total Items put back on the work queue after a failure (rate-limited).
# TYPE workqueue_retries_total counter
workqueue_retries_total{name="pullpass-keeper"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "workqueue_adds_total", "workqueue_depth", "workqueue_retries_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.work, "workqueue_work_duration_seconds"); n != 1 {
		t.Fatalf("%d work duration series, want 1", n)
	}
	if _, err := NewQueueMetrics(reg); err == nil {
		t.Fatal("registered twice on one registry without an error")
	}
}
