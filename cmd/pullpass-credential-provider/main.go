// Command pullpass-credential-provider is the kubelet image credential provider plugin that serves
// the node agent's cache. The kubelet runs it with a CredentialProviderRequest on stdin.
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
	cache := flag.String("cache", "/var/lib/pullpass/credentials.json", "the node agent's credential cache")
	maxCache := flag.Duration("max-cache-duration", 5*time.Minute, "the longest the kubelet may keep an answer")
	generation := flag.String("generation", "", "the provider config's generation (set by the agent)")
	noRecord := flag.Bool("no-record", false, "do not count requests beside the cache")
	audience := flag.String("service-account-token-audience", "", "the token entry: verify the pod's service account token for this audience and answer from the grants of Namespaced registries")
	showVersion := version.Flag(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Get().Line("pullpass-credential-provider"))
		return
	}
	cfg := provider.Config{CachePath: *cache, MaxCacheDuration: *maxCache, Generation: *generation, Record: !*noRecord, TokenAudience: *audience}
	if *audience != "" {
		cfg.Exchange = provider.SocketExchanger{Path: provider.SocketPath(*cache), Timeout: 45 * time.Second}
	}
	if err := provider.Run(cfg, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pullpass-credential-provider:", err)
		os.Exit(1)
	}
}
