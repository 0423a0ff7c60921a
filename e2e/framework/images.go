package framework

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullpass/pullpass/pkg/dockerconfig"
)

// CopyImage copies an image within the test registry with crane (CRANE, else crane on PATH,
// else the harness's), logged in through a docker config of its own: never one the kubelet
// reads.
func (e *Env) CopyImage(t testing.TB, src, dst string) {
	t.Helper()
	crane := os.Getenv("CRANE")
	if crane == "" {
		crane, _ = exec.LookPath("crane")
	}
	cache := os.Getenv("PULLPASS_CACHE")
	if cache == "" {
		cache = "/var/cache/pullpass"
	}
	for _, c := range []string{filepath.Join(RepoRoot(), "_output", "e2e", "bin", "crane"), filepath.Join(cache, "tools", "bin", "crane")} {
		if crane == "" {
			if _, err := os.Stat(c); err == nil {
				crane = c
			}
		}
	}
	if crane == "" {
		t.Fatal("crane not found: set CRANE, put it on PATH or run `make cluster-up`")
	}
	// The test registry by the name it has from where the suite runs (PUSH_REGISTRY on kind).
	if here := e.RegistryFromHere(); here != e.Registry {
		src = here + strings.TrimPrefix(src, e.Registry)
		dst = here + strings.TrimPrefix(dst, e.Registry)
	}
	dir := t.TempDir()
	cfg, err := dockerconfig.ForHost(e.RegistryFromHere(), e.RegistryUsername, e.RegistryPassword).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(Context(t, 2*time.Minute), crane, "copy", src, dst)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dir)
	if e.RegistryCA != "" {
		cmd.Env = append(cmd.Env, "SSL_CERT_FILE="+e.RegistryCA)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("crane copy %s %s: %v\n%s", src, dst, err, out)
	}
}
