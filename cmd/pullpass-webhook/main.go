// Command pullpass-webhook is the admission webhook that adds the pull secrets each new pod needs.
package main

import (
	"flag"

	"github.com/pullpass/pullpass/pkg/cmdutil"
	"github.com/pullpass/pullpass/webhook/app"
)

func main() {
	o := app.DefaultOptions()
	o.AddFlags(flag.CommandLine)
	flag.Parse()
	log := app.NewLogger(o)
	cmdutil.Start(log)
	ctx, stop := cmdutil.SignalContext()
	err := app.Run(ctx, o, log)
	stop()
	cmdutil.Exit("pullpass-webhook", err)
}
