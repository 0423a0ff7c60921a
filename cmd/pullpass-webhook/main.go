// Command pullpass-webhook is the admission webhook that adds the pull secrets each new pod needs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pullpass/pullpass/pkg/logging"
	"github.com/pullpass/pullpass/pkg/memlimit"
	"github.com/pullpass/pullpass/pkg/version"
	"github.com/pullpass/pullpass/webhook/app"
)

func main() {
	o := app.DefaultOptions()
	o.AddFlags(flag.CommandLine)
	showVersion := version.Flag(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Get().Line("pullpass-webhook"))
		return
	}
	log := app.NewLogger(o)
	logging.RouteKlog(log) // process-wide: client-go's klog lines go to the same handler
	if l := memlimit.Set("/sys/fs/cgroup"); l > 0 {
		log.Info("Go memory limit set below the container's", "bytes", l)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "pullpass-webhook:", err)
		os.Exit(1)
	}
}
