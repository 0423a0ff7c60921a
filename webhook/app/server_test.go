package app

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhmutating "github.com/slok/kubewebhook/v2/pkg/webhook/mutating"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/webhook/cluster"
)

func noopHandler(t *testing.T, reg *prometheus.Registry, log *slog.Logger) http.Handler {
	t.Helper()
	wh, err := kwhmutating.NewWebhook(kwhmutating.WebhookConfig{ID: "noop", Mutator: kwhmutating.MutatorFunc(
		func(context.Context, *model.AdmissionReview, metav1.Object) (*kwhmutating.MutatorResult, error) {
			return &kwhmutating.MutatorResult{}, nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandlerFor(wh, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

const smallReview = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"n"}}}}`

// onlyReader hides bytes.Reader's Len, so the request is sent without a Content-Length.
type onlyReader struct{ io.Reader }

// A body larger than an AdmissionReview can be is refused with 413, whether its length is
// declared or not; it is counted, and logged without its content. A review still passes.
func TestTooLargeReviewRefused(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	h := noopHandler(t, reg, slog.New(slog.NewTextHandler(&logs, nil)))
	big := `{"x":"` + strings.Repeat("SECRETCONTENT", int(MaxReviewBytes)/13+1) + `"}`

	for name, body := range map[string]io.Reader{"declared": strings.NewReader(big), "chunked": onlyReader{strings.NewReader(big)}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/mutate", body)
		if name == "chunked" {
			req.ContentLength = -1
		}
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "too large") {
			t.Errorf("%s: status %d %q, want 413 saying too large", name, rec.Code, rec.Body.String())
		}
	}
	if n := counterValue(t, reg, "pullpass_webhook_requests_too_large_total"); n != 2 {
		t.Errorf("counted %v refusals, want 2", n)
	}
	if strings.Contains(logs.String(), "SECRETCONTENT") || !strings.Contains(logs.String(), "too large") {
		t.Errorf("logs: %s", logs.String())
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", strings.NewReader(smallReview)))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"allowed":true`) {
		t.Fatalf("a review: status %d %s", rec.Code, rec.Body.String())
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A client that sends its body slowly, or keeps an idle connection, is cut off by the server's
// timeouts instead of holding the connection for ever.
func TestServerTimeoutsCutSlowClients(t *testing.T) {
	saved := cluster.ServerTimeouts
	cluster.ServerTimeouts.Read, cluster.ServerTimeouts.Idle = 300*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { cluster.ServerTimeouts = saved })
	srv := cluster.NewServer("", noopHandler(t, prometheus.NewRegistry(), nil), slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	closedWithin := func(t *testing.T, c net.Conn, d time.Duration) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server kept the connection open for %v", d)
		}
	}
	t.Run("slow body", func(t *testing.T) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		// Headers at once, then a tenth of the body, then nothing.
		_, _ = io.WriteString(c, "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat(" ", 100))
		closedWithin(t, c, 3*time.Second)
	})
	t.Run("idle", func(t *testing.T) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("healthz: %v %v", resp, err)
		}
		_ = resp.Body.Close()
		closedWithin(t, c, 3*time.Second)
	})
}
