// Command pullpass-credential-provider is the kubelet image credential provider plugin of the
// Cluster entry: it serves the node agent's cache of Cluster-scope registries. The kubelet runs it
// with a CredentialProviderRequest on stdin, for every pull of an image its matchImages cover.
// The token entry's plugin is cmd/pullpass-credential-provider-sa.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/pullpass/pullpass/agent/provider"
	"github.com/pullpass/pullpass/pkg/version"
)

func main() {
	flags := provider.NewFlags(flag.CommandLine, 5*time.Minute)
	showVersion := version.Flag(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Get().Line("pullpass-credential-provider"))
		return
	}
	if err := provider.Run(flags.Config(), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pullpass-credential-provider:", err)
		os.Exit(1)
	}
}
