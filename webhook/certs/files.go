package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Files serves a certificate from files another tool keeps current (cert-manager's Secret
// mounted into the pod), reloading them when they change.
type Files struct {
	CertFile, KeyFile string
	Interval          time.Duration
	Logger            *slog.Logger

	cert    atomic.Pointer[tls.Certificate]
	modTime time.Time
}

// GetCertificate serves the current certificate.
func (f *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := f.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no serving certificate loaded")
}

// Ready reports whether a certificate is loaded.
func (f *Files) Ready() bool { return f.cert.Load() != nil }

// Load reads the files if they changed.
func (f *Files) Load() error {
	st, err := os.Stat(f.CertFile)
	if err != nil {
		return err
	}
	if f.cert.Load() != nil && !st.ModTime().After(f.modTime) {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return err
	}
	f.cert.Store(&pair)
	f.modTime = st.ModTime()
	return nil
}

// Run reloads until ctx ends.
func (f *Files) Run(ctx context.Context) {
	if f.Interval == 0 {
		f.Interval = 30 * time.Second
	}
	t := time.NewTicker(f.Interval)
	defer t.Stop()
	for {
		if err := f.Load(); err != nil && f.Logger != nil {
			f.Logger.Error("loading the serving certificate", "cert", f.CertFile, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
