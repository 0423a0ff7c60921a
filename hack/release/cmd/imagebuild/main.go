// Command imagebuild pushes one multi-platform image of pullpass's static binaries (package
// ociimage) and prints its reference by digest. Registry logins come from DOCKER_CONFIG; a
// registry's own CA from SSL_CERT_FILE.
//
//	imagebuild -ref R/pullpass-agent:v1.2.3 -binaries pullpass-agent,pullpass-credential-provider \
//	  -platform linux/amd64=DIR -platform linux/arm64=DIR -ca-bundle FILE -created RFC3339 -label K=V...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/pullpass/pullpass/hack/release/ociimage"
)

type pairs map[string]string

func (p pairs) String() string { return fmt.Sprint(map[string]string(p)) }
func (p pairs) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", s)
	}
	p[k] = v
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := ociimage.Config{Platforms: pairs{}, Labels: map[string]string{}}
	var binaries, created string
	flag.StringVar(&cfg.Ref, "ref", "", "where to push the index (REPO:TAG)")
	flag.StringVar(&binaries, "binaries", "", "comma-separated file names in each platform's directory; the first is the entrypoint")
	flag.Var(pairs(cfg.Platforms), "platform", "OS/ARCH=DIR, repeated")
	flag.StringVar(&cfg.CABundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "the CA bundle the image trusts")
	flag.Var(pairs(cfg.Labels), "label", "KEY=VALUE, repeated: config labels and index annotations")
	flag.StringVar(&created, "created", "", "creation time (RFC 3339)")
	flag.Parse()
	if binaries != "" {
		cfg.Binaries = strings.Split(binaries, ",")
	}
	var err error
	if cfg.Created, err = time.Parse(time.RFC3339, created); err != nil {
		return fmt.Errorf("-created: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	digest, err := ociimage.Push(ctx, cfg)
	if err != nil {
		return err
	}
	ref, _ := name.ParseReference(cfg.Ref)
	fmt.Printf("%s@%s\n", ref.Context().Name(), digest)
	return nil
}
