// Command pullpass-controller runs pullpass's leader-elected controllers: it keeps pull secrets
// fresh, verifies registries, counts image pull failures and grants the node agents their
// sources. It exits non-zero when it loses leadership; its pod restarts and stands again.
package main

import (
	"flag"
	"fmt"

	"github.com/pullpass/pullpass/pkg/cmdutil"
	"github.com/pullpass/pullpass/pkg/version"
	"github.com/pullpass/pullpass/webhook/controller"
)

func main() {
	o := controller.DefaultOptions()
	o.AddFlags(flag.CommandLine)
	showVersion := version.Flag(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Get().Line("pullpass-controller"))
		return
	}
	log := controller.NewLogger(o)
	cmdutil.Start(log)
	ctx, stop := cmdutil.SignalContext()
	err := controller.Run(ctx, o, log)
	stop()
	cmdutil.Exit("pullpass-controller", err)
}
