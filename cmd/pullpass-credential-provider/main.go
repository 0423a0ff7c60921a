// Command pullpass-credential-provider is the kubelet image credential provider plugin that serves
// the node agent's cache. The kubelet runs it with a CredentialProviderRequest on stdin.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/pullpass/pullpass/agent/provider"
)

func main() {
	cache := flag.String("cache", "/var/lib/pullpass/credentials.json", "the node agent's credential cache")
	flag.Parse()
	if err := provider.Run(provider.Config{CachePath: *cache}, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pullpass-credential-provider:", err)
		os.Exit(1)
	}
}
