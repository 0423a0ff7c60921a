package memlimit_test

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/pullpass/pullpass/pkg/memlimit"
)

func cgroup(t *testing.T, file, content string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, file)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestContainer(t *testing.T) {
	tests := []struct {
		name, file, content string
		want                int64
	}{
		{"v2", "memory.max", "268435456\n", 268435456},
		{"v2 without a limit", "memory.max", "max\n", 0},
		{"v1", "memory/memory.limit_in_bytes", "134217728\n", 134217728},
		{"v1 without a limit", "memory/memory.limit_in_bytes", "9223372036854771712\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := memlimit.Container(cgroup(t, tt.file, tt.content)); got != tt.want {
				t.Fatalf("Container = %d, want %d", got, tt.want)
			}
		})
	}
	if got := memlimit.Container(t.TempDir()); got != 0 {
		t.Fatalf("no cgroup files: %d, want 0", got)
	}
}

func TestSet(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	root := cgroup(t, "memory.max", "1000000000")
	if got := memlimit.Set(root); got != 900000000 || debug.SetMemoryLimit(-1) != 900000000 {
		t.Fatalf("Set = %d, runtime limit %d; want 900000000", got, debug.SetMemoryLimit(-1))
	}
	// The operator's GOMEMLIMIT wins.
	debug.SetMemoryLimit(12345678)
	t.Setenv("GOMEMLIMIT", "500MiB")
	if got := memlimit.Set(root); got != 0 || debug.SetMemoryLimit(-1) != 12345678 {
		t.Fatalf("with GOMEMLIMIT: Set = %d, runtime limit %d", got, debug.SetMemoryLimit(-1))
	}
}
