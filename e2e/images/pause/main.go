// Command pause is the harness's pod sandbox image: it waits for SIGTERM or SIGINT and exits.
// The harness builds it so that no image has to come from the internet.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
