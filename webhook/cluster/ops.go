package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pullpass/pullpass/pkg/kubeconfig"
)

// OpsHandler serves /metrics from reg, /healthz, and /readyz as ready says (nil: ready).
func OpsHandler(reg *prometheus.Registry, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// ServerTimeouts bound every connection: any pod can reach the webhook's port, and a client that
// sends slowly, or never reads, must not hold a goroutine and its buffers for ever. The API
// server waits at most 30 s for a webhook (timeoutSeconds' maximum), so a request that takes
// longer is answered to no one. Tests shorten them.
var ServerTimeouts = struct{ ReadHeader, Read, Write, Idle time.Duration }{
	ReadHeader: 5 * time.Second, Read: 15 * time.Second, Write: 35 * time.Second, Idle: 2 * time.Minute,
}

// NewServer is an http.Server with ServerTimeouts, logging its errors through log.
func NewServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ServerTimeouts.ReadHeader,
		ReadTimeout:       ServerTimeouts.Read,
		WriteTimeout:      ServerTimeouts.Write,
		IdleTimeout:       ServerTimeouts.Idle,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Serve runs f (a ListenAndServe) and names the server in its error; a server shut down is none.
func Serve(name string, f func() error) error {
	if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s server: %w", name, err)
	}
	return nil
}

// Connect makes the binary's API clients (userAgent names it to the API server) and its metrics
// registry, with the Go and process collectors.
func Connect(o *Options, userAgent string) (*kubeconfig.Clients, *prometheus.Registry, error) {
	clients, err := kubeconfig.NewClients(o.Kubeconfig, userAgent, o.KubeAPIQPS, o.KubeAPIBurst)
	if err != nil {
		return nil, nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return clients, reg, nil
}
