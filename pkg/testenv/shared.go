package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
)

// Shared is the control plane of one test package: started by the first test that asks for it
// (so a package's unit tests run without one), stopped by TestMain through Run.
type Shared struct {
	cfg  Config
	once sync.Once
	env  *Env
	err  error
}

// New returns a Shared control plane that starts with cfg; nothing runs yet.
func New(cfg Config) *Shared { return &Shared{cfg: cfg} }

// Env returns the running control plane, starting it on the first call. If it cannot start
// (binaries missing, a port race lost three times), every test that asks fails with the reason.
func (s *Shared) Env(t testing.TB) *Env {
	t.Helper()
	s.once.Do(func() { s.env, s.err = Start(context.Background(), s.cfg) })
	if s.err != nil {
		t.Fatalf("starting the test control plane: %v", s.err)
	}
	return s.env
}

// Run runs the package's tests, then stops the control plane if one started. Call it from
// TestMain: os.Exit(shared.Run(m)).
func (s *Shared) Run(m *testing.M) int {
	code := m.Run()
	if s.env != nil {
		if err := s.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the test control plane: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}
