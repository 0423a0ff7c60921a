// Package memlimit gives the Go runtime a soft memory limit below the container's: without one,
// the heap may grow to twice what is live before a collection, and the kernel kills the process
// at the container's limit first (the webhook did at 10,000 namespaces under the chart's 256 MiB,
// with 130 MB live).
package memlimit

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction of the container's limit given to the Go runtime; the rest is for what the runtime
// does not count (the binary's pages, the kernel's buffers) and for the collector to act in time.
const Fraction = 0.9

// Set sets the runtime's limit to Fraction of the container's memory limit, read from the cgroup
// files under root ("/sys/fs/cgroup"), and returns it. It does nothing and returns 0 when
// GOMEMLIMIT is set (the operator's choice wins) or no limit is found.
func Set(root string) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := Container(root)
	if limit <= 0 {
		return 0
	}
	l := int64(float64(limit) * Fraction)
	debug.SetMemoryLimit(l)
	return l
}

// Container returns the memory limit of the cgroup mounted at root, cgroup v2 or v1; 0 when
// there is none.
func Container(root string) int64 {
	for _, f := range []string{"memory.max", "memory/memory.limit_in_bytes"} {
		raw, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		// "max" in v2; v1 writes a number near 2^63 for no limit.
		if err != nil || v <= 0 || v >= 1<<60 {
			return 0
		}
		return v
	}
	return 0
}
