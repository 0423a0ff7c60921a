package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhmutating "github.com/slok/kubewebhook/v2/pkg/webhook/mutating"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/webhook/app"
)

// CPUResult is the process CPU time (user and system, garbage collection included) one review
// costs a handler, without HTTP or TLS: the median and the least over interleaved rounds.
type CPUResult struct {
	Name           string
	Median, Lowest time.Duration
}

// CPU measures the handlers alone, in turns, by the CPU time the process spends: on a machine
// shared with other work, wall-clock latency mostly measures the others, CPU time much less.
// Both handlers get the same review.
func CPU(cfg Config, reviewsPerRound int) (pullpass, noop CPUResult, err error) {
	cfg.defaults()
	m, err := pullpassMutator(cfg.Registries, cfg.PullThrough)
	if err != nil {
		return pullpass, noop, err
	}
	pp, err := app.NewHandler(m, prometheus.NewRegistry(), nil)
	if err != nil {
		return pullpass, noop, err
	}
	no, err := app.NewMutatorHandler(kwhmutating.MutatorFunc(func(context.Context, *model.AdmissionReview, metav1.Object) (*kwhmutating.MutatorResult, error) {
		return &kwhmutating.MutatorResult{}, nil
	}), prometheus.NewRegistry())
	if err != nil {
		return pullpass, noop, err
	}
	body, err := review(cfg.Containers, cfg.PullThrough)
	if err != nil {
		return pullpass, noop, err
	}
	handlers := []struct {
		name string
		h    http.Handler
	}{{"no-op", no}, {"pullpass", pp}}
	per := map[string][]time.Duration{}
	for r := 0; r < cfg.Rounds; r++ {
		for _, s := range handlers {
			start := cpuTime()
			for i := 0; i < reviewsPerRound; i++ {
				rec := httptest.NewRecorder()
				s.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body)))
				if rec.Code != http.StatusOK {
					return pullpass, noop, fmt.Errorf("%s: status %d", s.name, rec.Code)
				}
			}
			per[s.name] = append(per[s.name], (cpuTime()-start)/time.Duration(reviewsPerRound))
		}
	}
	result := func(name string) CPUResult {
		d := per[name]
		slices.Sort(d)
		return CPUResult{Name: name, Median: d[len(d)/2], Lowest: d[0]}
	}
	return result("pullpass"), result("no-op"), nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
