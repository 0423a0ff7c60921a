// Package cmdutil is what every pullpass binary's main does alike: log setup, the Go memory
// limit, the context that ends on SIGTERM, the exit on error.
package cmdutil

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pullpass/pullpass/pkg/logging"
	"github.com/pullpass/pullpass/pkg/memlimit"
)

// Start routes client-go's klog lines to log (process-wide) and sets the Go memory limit below
// the container's.
func Start(log *slog.Logger) {
	logging.RouteKlog(log)
	if l := memlimit.Set("/sys/fs/cgroup"); l > 0 {
		log.Info("Go memory limit set below the container's", "bytes", l)
	}
}

// SignalContext ends on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Exit prints err after the command's name and exits 1; it does nothing when err is nil.
func Exit(name string, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
