// Package cluster is what the admission webhook and the controller both read of the cluster: the
// options that name it (namespaces, rate limits, credential endpoints, which namespaces are
// served), the informer caches over it, and the ops server each binary serves /metrics on.
package cluster

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/pullpass/pullpass/pkg/kubeconfig"
	"github.com/pullpass/pullpass/webhook/inject"
)

// Options are the flags both binaries take, alike.
type Options struct {
	// Cluster access.
	Kubeconfig   string
	Namespace    string // pullpass's own namespace: source secrets, TLS secret, Lease
	KubeAPIQPS   float32
	KubeAPIBurst int

	// Credential sources.
	ECREndpoint string
	// SourceNamespaces may hold Registry sources besides Namespace (which always may).
	SourceNamespaces []string

	// Which namespaces are served.
	ClusterWide        bool
	ExcludedNamespaces []string
}

// DefaultOptions returns the defaults: the namespace is $POD_NAMESPACE, or pullpass.
func DefaultOptions() Options {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "pullpass"
	}
	return Options{
		Namespace:          ns,
		KubeAPIQPS:         200,
		KubeAPIBurst:       400,
		ExcludedNamespaces: []string{"kube-system", "kube-public", "kube-node-lease"},
	}
}

// AddFlags registers the flags on fs; burstWhy says what needs the burst.
func (o *Options) AddFlags(fs *flag.FlagSet, burstWhy string) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig file; in-cluster config when empty")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "pullpass's namespace (source secrets, TLS secret, Lease); $POD_NAMESPACE by default")
	kubeconfig.AddRateLimitFlags(fs, &o.KubeAPIQPS, &o.KubeAPIBurst, burstWhy)
	fs.Func("source-namespaces", "namespaces besides --namespace whose Secrets Registries may name as sources, comma-separated (a source anywhere else is refused)", func(s string) error {
		o.SourceNamespaces = SplitList(s)
		return nil
	})
	fs.StringVar(&o.ECREndpoint, "ecr-endpoint", o.ECREndpoint, "ECR API endpoint instead of the region's (a VPC endpoint, or a local ECR API in tests)")
	fs.BoolVar(&o.ClusterWide, "cluster-wide", o.ClusterWide, "inject in every namespace but the excluded ones (otherwise only namespaces annotated pullpass.io/inject=enabled)")
	fs.Func("exclude-namespaces", "namespaces never injected, comma-separated (default kube-system,kube-public,kube-node-lease; pullpass's own is always excluded)", func(s string) error {
		o.ExcludedNamespaces = SplitList(s)
		return nil
	})
}

// Validate checks the options.
func (o *Options) Validate() error {
	if o.Namespace == "" {
		return fmt.Errorf("--namespace is required")
	}
	return kubeconfig.ValidateRateLimit(o.KubeAPIQPS, o.KubeAPIBurst)
}

// AllSourceNamespaces are the namespaces whose Secrets may be sources: pullpass's own first.
func (o *Options) AllSourceNamespaces() []string {
	out := []string{o.Namespace}
	for _, ns := range o.SourceNamespaces {
		if !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

// Excluded are the namespaces never served: pullpass's own, then --exclude-namespaces.
func (o *Options) Excluded() []string {
	return append([]string{o.Namespace}, o.ExcludedNamespaces...)
}

// Policy is which namespaces are served and which registries reach them.
func (o *Options) Policy() inject.Policy {
	m := map[string]bool{}
	for _, s := range o.Excluded() {
		m[s] = true
	}
	return inject.Policy{ClusterWide: o.ClusterWide, Excluded: m}
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
