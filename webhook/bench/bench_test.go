package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhmutating "github.com/slok/kubewebhook/v2/pkg/webhook/mutating"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/allocbudget"
	"github.com/pullpass/pullpass/webhook/app"
)

// The handlers without HTTP and TLS, to see what the mutator itself costs per review.
func benchHandler(b *testing.B, h http.Handler, body []byte) {
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

func BenchmarkReviewNoop(b *testing.B) {
	noop := kwhmutating.MutatorFunc(func(context.Context, *model.AdmissionReview, metav1.Object) (*kwhmutating.MutatorResult, error) {
		return &kwhmutating.MutatorResult{}, nil
	})
	h, err := app.NewMutatorHandler(noop, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	body, _ := review(10, false)
	benchHandler(b, h, body)
}

func BenchmarkReviewPullpass(b *testing.B) {
	h, body := pullpassHandler(b, false)
	benchHandler(b, h, body)
}

// With a pull-through cache of Docker Hub in the table and five Docker Hub images to rewrite.
func BenchmarkReviewPullpassRewriting(b *testing.B) {
	h, body := pullpassHandler(b, true)
	benchHandler(b, h, body)
}

// pullpassHandler serves the benchmark's mutator; body is the benchmark's review.
func pullpassHandler(t testing.TB, pullThrough bool) (h http.Handler, body []byte) {
	m, err := pullpassMutator(1000, pullThrough)
	if err != nil {
		t.Fatal(err)
	}
	h, err = app.NewHandler(m, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err = review(10, pullThrough)
	if err != nil {
		t.Fatal(err)
	}
	return h, body
}

// One review of the benchmark's pod: decode, plan, patch and kubewebhook's own work (145
// allocations of the no-op's 145 are kubewebhook's and the recorder's).
func TestReviewAllocationBudget(t *testing.T) {
	h, body := pullpassHandler(t, false)
	serve := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body)))
		return rec
	}
	// The review measured is one that adds the pull secrets.
	rec := serve()
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || strings.Count(string(out.Response.Patch), `"pullpass-reg-`) != 5 {
		t.Fatalf("status %d, answer %s (%v): want five pull secrets added", rec.Code, rec.Body, err)
	}
	allocbudget.Check(t, "one admission review", 160, func() { serve() })
}
