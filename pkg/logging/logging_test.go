package logging_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"k8s.io/klog/v2"

	"github.com/pullpass/pullpass/pkg/logging"
)

// client-go logs through klog (leader election, reflectors): with JSON logs those lines must be
// JSON too, not klog's text.
func TestKlogGoesToSlog(t *testing.T) {
	var buf bytes.Buffer
	logging.RouteKlog(slog.New(slog.NewJSONHandler(&buf, nil)))
	defer klog.ClearLogger()
	klog.InfoS("lease acquired", "lease", "pullpass/pullpass-keeper")
	klog.ErrorS(nil, "watch failed")
	klog.Flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if rec["source"] != "klog" || rec["msg"] == "" {
			t.Fatalf("record %v", rec)
		}
	}
	if !strings.Contains(lines[0], `"lease":"pullpass/pullpass-keeper"`) {
		t.Fatalf("key/values lost: %s", lines[0])
	}
}
