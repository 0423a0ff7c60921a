// Command pullpass-credential-provider-sa is the kubelet image credential provider plugin of the
// token entry (KEP-4412): the kubelet runs it with the pod's service account token, which it
// verifies, and it answers from the grants of Namespaced registries with delivery Node, for that
// namespace and service account only. A binary of its own, so that the Cluster entry's plugin
// links none of the token verification.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/pullpass/pullpass/agent/provider"
	"github.com/pullpass/pullpass/agent/provider/token"
	"github.com/pullpass/pullpass/pkg/version"
)

func main() {
	flags := provider.NewFlags(flag.CommandLine, 10*time.Second)
	audience := flag.String("service-account-token-audience", "", "the audience the pod's service account token must carry (required)")
	showVersion := version.Flag(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Get().Line("pullpass-credential-provider-sa"))
		return
	}
	if *audience == "" {
		fmt.Fprintln(os.Stderr, "pullpass-credential-provider-sa: --service-account-token-audience is required")
		os.Exit(2)
	}
	cfg := flags.Config()
	lookup := token.Config{Audience: *audience, Exchange: token.SocketExchanger{Path: token.SocketPath(cfg.CachePath), Timeout: 45 * time.Second}}
	cfg.Lookup = lookup.Lookup
	if err := provider.Run(cfg, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pullpass-credential-provider-sa:", err)
		os.Exit(1)
	}
}
