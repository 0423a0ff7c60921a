// Package logging builds the slog logger every pullpass binary uses.
package logging

import (
	"log/slog"
	"os"
)

// New returns a logger on stderr: format "json" or text, level "debug", "info", "warn" or
// "error" (info when not one of those).
func New(format, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
