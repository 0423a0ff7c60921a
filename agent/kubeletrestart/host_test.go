package kubeletrestart_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pullpass/pullpass/agent/kubeletrestart"
)

// The kubelet's healthz: 200 is healthy; anything else, or nothing listening, is not, and says
// what it got.
func TestKubeletHealthz(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer ok.Close()
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "[-]syncloop failed", http.StatusInternalServerError)
	}))
	defer sick.Close()
	if err := (kubeletrestart.KubeletHealth{URL: ok.URL}).KubeletHealthy(t.Context()); err != nil {
		t.Fatalf("healthy kubelet: %v", err)
	}
	if err := (kubeletrestart.KubeletHealth{URL: sick.URL}).KubeletHealthy(t.Context()); err == nil || !strings.Contains(err.Error(), "syncloop") {
		t.Fatalf("sick kubelet: %v", err)
	}
	sick.Close()
	if err := (kubeletrestart.KubeletHealth{URL: sick.URL}).KubeletHealthy(t.Context()); err == nil {
		t.Fatal("no kubelet listening: healthy")
	}
}
