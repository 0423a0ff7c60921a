// Command pullpass-agent is the node agent: it serves the credentials of Cluster-scope registries
// to the kubelet of its node. `pullpass-agent uninstall` removes what it put on the node.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pullpass/pullpass/agent/app"
	"github.com/pullpass/pullpass/pkg/logging"
	"github.com/pullpass/pullpass/pkg/memlimit"
	"github.com/pullpass/pullpass/pkg/version"
)

func main() {
	o := app.DefaultOptions()
	o.AddFlags(flag.CommandLine)
	showVersion := version.Flag(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Get().Line("pullpass-agent"))
		return
	}
	log := app.NewLogger(o)
	logging.RouteKlog(log) // process-wide: client-go's klog lines go to the same handler
	if l := memlimit.Set("/sys/fs/cgroup"); l > 0 {
		log.Info("Go memory limit set below the container's", "bytes", l)
	}
	var err error
	switch flag.Arg(0) {
	case "":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err = app.Run(ctx, o, log)
	case "uninstall":
		err = app.Uninstall(o, log, false)
	default:
		err = fmt.Errorf("unknown command %q (the only command is uninstall)", flag.Arg(0))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pullpass-agent:", err)
		os.Exit(1)
	}
}
