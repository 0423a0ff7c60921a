package bench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhmutating "github.com/slok/kubewebhook/v2/pkg/webhook/mutating"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

func pullpassHandler(t testing.TB, pullThrough bool) (http.Handler, []byte) {
	m, err := pullpassMutator(1000, pullThrough)
	if err != nil {
		t.Fatal(err)
	}
	h, err := app.NewHandler(m, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	body, err := review(10, pullThrough)
	if err != nil {
		t.Fatal(err)
	}
	return h, body
}
