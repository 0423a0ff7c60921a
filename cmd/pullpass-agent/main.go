// Command pullpass-agent is the node agent: it serves the credentials of Cluster-scope registries
// to the kubelet of its node. `pullpass-agent uninstall` removes what it put on the node;
// `pullpass-agent pre-delete` is the chart's hook before an uninstall (app.PreDelete).
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/pullpass/pullpass/agent/app"
	"github.com/pullpass/pullpass/pkg/cmdutil"
	"github.com/pullpass/pullpass/pkg/kubeconfig"
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
	case "pre-delete":
		err = preDelete(o, log)
	default:
		err = fmt.Errorf("unknown command %q (the commands are uninstall and pre-delete)", flag.Arg(0))
	}
	cmdutil.Exit("pullpass-agent", err)
}

func preDelete(o *app.Options, log *slog.Logger) error {
	if o.DaemonSetName == "" {
		return errors.New("pre-delete needs --daemonset-name")
	}
	clients, err := kubeconfig.NewClients(o.Kubeconfig, "pullpass-agent-pre-delete", o.KubeAPIQPS, o.KubeAPIBurst)
	if err != nil {
		return err
	}
	ctx, stop := cmdutil.SignalContext()
	defer stop()
	return app.PreDelete(ctx, clients.Kube, o.Namespace, o.DaemonSetName, o.PreDeleteWait, 2*time.Second, log)
}
