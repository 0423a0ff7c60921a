// Command pullpass manages pullpass's registry table. Installed as kubectl-pullpass, it is the
// kubectl plugin `kubectl pullpass`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pullpass/pullpass/pkg/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[0], os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	stop()
	os.Exit(code)
}
