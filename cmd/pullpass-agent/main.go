// Command pullpass-agent is the node agent: it serves the credentials of Cluster-scope registries
// to the kubelet of its node. `pullpass-agent uninstall` removes what it put on the node.
package main

import (
	"flag"
	"fmt"

	"github.com/pullpass/pullpass/agent/app"
	"github.com/pullpass/pullpass/pkg/cmdutil"
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
	cmdutil.Start(log)
	var err error
	switch flag.Arg(0) {
	case "":
		ctx, stop := cmdutil.SignalContext()
		err = app.Run(ctx, o, log)
		stop()
	case "uninstall":
		err = app.Uninstall(o, log, false)
	default:
		err = fmt.Errorf("unknown command %q (the only command is uninstall)", flag.Arg(0))
	}
	cmdutil.Exit("pullpass-agent", err)
}
