package pullthrough

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
)

// The formats and limits of the CRD's schema for spec.pullThrough (the markers in
// pkg/apis/pullpass/v1alpha1), checked again here for objects that never went through an API
// server; the CRD's integration test runs the same cases through both.
const (
	maxUpstream = 253
	maxPrefix   = 200
)

var (
	upstreamRE  = regexp.MustCompile(`^(localhost(:[0-9]+)?|[a-z0-9]([a-z0-9-]*[a-z0-9])?([.][a-z0-9]([a-z0-9-]*[a-z0-9])?)+(:[0-9]+)?|[a-z0-9]([a-z0-9-]*[a-z0-9])?:[0-9]+)$`)
	prefixRE    = regexp.MustCompile(`^[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([.]|_|__|-+)[a-z0-9]+)*)*$`)
	cacheHostRE = regexp.MustCompile(`^(localhost(:[0-9]+)?|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?([.][a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+(:[0-9]+)?|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?:[0-9]+)(/.*)?$`)
)

// Validate checks a Registry's spec.pullThrough, and what it asks of spec.hosts, with the
// schema's messages. It returns nothing when pullThrough is not set.
func Validate(spec v1alpha1.RegistrySpec) []error {
	pt := spec.PullThrough
	if pt == nil {
		return nil
	}
	var errs []error
	switch {
	case pt.Upstream == "":
		errs = append(errs, errors.New("spec.pullThrough.upstream: Required value"))
	case len(pt.Upstream) > maxUpstream:
		errs = append(errs, fmt.Errorf("spec.pullThrough.upstream: Too long: may not be more than %d bytes", maxUpstream))
	case !upstreamRE.MatchString(pt.Upstream):
		errs = append(errs, fmt.Errorf("spec.pullThrough.upstream: %q must be a registry host as images name it, with an optional port (docker.io, ghcr.io, registry.example.com:5000): lower case, no scheme, path or '*'", pt.Upstream))
	case pt.Upstream == "index.docker.io" || pt.Upstream == "registry-1.docker.io":
		errs = append(errs, fmt.Errorf("spec.pullThrough.upstream: %q: Docker Hub is written docker.io", pt.Upstream))
	}
	switch {
	case len(pt.Prefix) > maxPrefix:
		errs = append(errs, fmt.Errorf("spec.pullThrough.prefix: Too long: may not be more than %d bytes", maxPrefix))
	case pt.Prefix != "" && !prefixRE.MatchString(pt.Prefix):
		errs = append(errs, fmt.Errorf("spec.pullThrough.prefix: %q must be a repository path: lower-case letters and digits, with '.', '_', '__' or dashes between them, '/' between components, no leading or trailing '/'", pt.Prefix))
	}
	if spec.EffectiveScope() == v1alpha1.ScopeNamespaced && spec.EffectiveDelivery() == v1alpha1.DeliveryNode {
		errs = append(errs, errors.New("spec: pullThrough: a cache delivered by the node (scope Namespaced, delivery Node) has no pull secret for the webhook to give the pods it rewrites: use delivery PullSecret, or scope Cluster"))
	}
	if len(spec.Hosts) != 1 || strings.Contains(spec.Hosts[0], "*") {
		return append(errs, errors.New("spec: pullThrough needs exactly one host in spec.hosts, without '*': the cache's host, which images are rewritten to"))
	}
	host := spec.Hosts[0]
	if !cacheHostRE.MatchString(host) {
		errs = append(errs, errors.New("spec: pullThrough: spec.hosts[0] must be a host images can name, written host[:port][/path] with no scheme: dot-separated labels of letters, digits and inner '-', with a '.' or a port, or localhost"))
	}
	if strings.HasPrefix(host+"/", pt.Upstream+"/") {
		errs = append(errs, errors.New("spec: pullThrough.upstream is the cache's own host"))
	}
	for _, hub := range []string{"docker.io/", "index.docker.io/", "registry-1.docker.io/"} {
		if strings.HasPrefix(host+"/", hub) {
			errs = append(errs, errors.New("spec: pullThrough: a cache cannot be on Docker Hub (spec.hosts[0])"))
		}
	}
	if i := strings.IndexByte(host, '/'); i >= 0 && !strings.HasPrefix(prefixPath(pt.Prefix), host[i:]) {
		errs = append(errs, errors.New("spec: pullThrough: the cache's images (HOST/PREFIX/...) must be matched by spec.hosts[0], so its path must begin pullThrough.prefix"))
	}
	return errs
}

// prefixPath is the path every cache image starts with, as a host pattern's path is written.
func prefixPath(prefix string) string {
	if prefix == "" {
		return "/"
	}
	return "/" + prefix + "/"
}

// TargetOf returns where a valid pull-through Registry serves its upstream.
func TargetOf(spec v1alpha1.RegistrySpec) Target {
	host, _, _ := strings.Cut(spec.Hosts[0], "/")
	return Target{Host: host, Prefix: spec.PullThrough.Prefix}
}
