// Command pullpass-webhook is the admission webhook that adds the pull secrets each new pod needs.
package main

import (
	"flag"
	"fmt"

	"github.com/pullpass/pullpass/pkg/cmdutil"
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
	cmdutil.Start(log)
	ctx, stop := cmdutil.SignalContext()
	err := app.Run(ctx, o, log)
	stop()
	cmdutil.Exit("pullpass-webhook", err)
}
