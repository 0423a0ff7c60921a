// Package logging builds the slog logger every pullpass binary uses, from the same two flags.
package logging

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"k8s.io/klog/v2"
)

// Options are the logging flags.
type Options struct {
	Format string // text or json
	Level  string // debug, info, warn or error
}

// Defaults are text at info.
func Defaults() Options { return Options{Format: "text", Level: "info"} }

// AddFlags registers --log-format and --log-level on fs.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Format, "log-format", o.Format, "text or json")
	fs.StringVar(&o.Level, "log-level", o.Level, "debug, info, warn or error")
}

// Validate checks both flags.
func (o Options) Validate() error {
	if o.Format != "text" && o.Format != "json" {
		return fmt.Errorf("--log-format %q: want text or json", o.Format)
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(o.Level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", o.Level)
	}
	return nil
}

// Logger returns a logger on stderr as the options say (info when the level does not parse).
func (o Options) Logger() *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(o.Level))
	opts := &slog.HandlerOptions{Level: l}
	if o.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// RouteKlog sends what client-go and other Kubernetes libraries log through klog to l, so
// --log-format=json output is JSON throughout rather than JSON mixed with klog's text lines.
func RouteKlog(l *slog.Logger) { klog.SetSlogLogger(l.With("source", "klog")) }
