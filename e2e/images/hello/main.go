// Command hello is the e2e test image: run as the image's entrypoint ("/hello serve") it prints a
// line and sleeps until stopped; run as "/hello" it prints a line and exits 0, so a pod's
// command can prove the image's content is there.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	fmt.Println("hello from the pullpass e2e image")
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
	}
}
