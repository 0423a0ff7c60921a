// Package app wires the webhook binary: flags, clients, informers, TLS, HTTP servers.
package app

import (
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pullpass/pullpass/pkg/kubeconfig"
	"github.com/pullpass/pullpass/pkg/logging"
	"github.com/pullpass/pullpass/pkg/nodedelivery"
)

// Options are the webhook's flags, grouped by concern.
type Options struct {
	// Cluster access.
	Kubeconfig   string
	Namespace    string // pullpass's own namespace: source secrets, TLS secret
	KubeAPIQPS   float32
	KubeAPIBurst int

	// Serving.
	ListenAddress   string // HTTPS, AdmissionReviews
	MetricsAddress  string // HTTP: /metrics, /healthz, /readyz
	ShutdownTimeout time.Duration
	ShutdownDelay   time.Duration // not ready but still serving, before the server stops
	// EnsureTimeout: how long admission waits for a pod's pull secrets to be written.
	EnsureTimeout time.Duration

	// TLS: self-managed in a Secret (default), or files kept by cert-manager.
	TLSSecretName     string
	WebhookConfigName string
	ServiceName       string
	TLSDNSNames       []string
	TLSIPAddresses    []net.IP
	TLSCertFile       string
	TLSKeyFile        string

	// Credential sources.
	ECREndpoint string
	// SourceNamespaces may hold Registry sources besides Namespace (which always may).
	SourceNamespaces []string
	// AgentSourcesRole is the node agents' Role that the leader keeps to exactly the sources
	// they serve ('' when there are no agents).
	AgentSourcesRole string

	// NodeDelivery is what the node agents serve (none, cluster or tokens; '' judges nothing),
	// and AgentDaemonSet their DaemonSet in Namespace, whose ready pods count the serving nodes
	// ('' when no agents run): together they say whether each Registry is served.
	NodeDelivery   string
	AgentDaemonSet string

	// Injection.
	ClusterWide bool

	// Observability.
	WatchPulls         bool // count image pull failures across the cluster (on the leader)
	ExcludedNamespaces []string

	// Verification: logins to each registry with its credentials (on the leader).
	Verify             bool
	VerifyInterval     time.Duration
	VerifyTimeout      time.Duration
	VerifyWorkers      int
	RegistryCAFile     string // extra CAs trusted for registries (PEM)
	DockerHubHost      string // where Docker Hub's names are logged in to
	DockerHubAnonymous bool   // also read the anonymous Docker Hub pull limit
	RecreateStuckPods  bool   // the default of the pullpass.io/recreate-stuck-pods namespace annotation

	// Logs.
	Log logging.Options
}

// DefaultOptions returns the defaults.
func DefaultOptions() *Options {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "pullpass"
	}
	return &Options{
		Namespace:          ns,
		KubeAPIQPS:         200,
		KubeAPIBurst:       400,
		ListenAddress:      ":8443",
		MetricsAddress:     ":8080",
		ShutdownTimeout:    10 * time.Second,
		EnsureTimeout:      3 * time.Second,
		ShutdownDelay:      3 * time.Second,
		TLSSecretName:      "pullpass-webhook-tls",
		WebhookConfigName:  "pullpass",
		ServiceName:        "pullpass-webhook",
		ExcludedNamespaces: []string{"kube-system", "kube-public", "kube-node-lease"},
		WatchPulls:         true,
		Verify:             true,
		VerifyInterval:     time.Hour,
		VerifyTimeout:      10 * time.Second,
		VerifyWorkers:      4,
		Log:                logging.Defaults(),
	}
}

// AddFlags registers the flags on fs.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig file; in-cluster config when empty")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "pullpass's namespace (source secrets, TLS secret); $POD_NAMESPACE by default")
	kubeconfig.AddRateLimitFlags(fs, &o.KubeAPIQPS, &o.KubeAPIBurst, "a rotation rewrites one secret per namespace")
	fs.StringVar(&o.ListenAddress, "listen-address", o.ListenAddress, "HTTPS address for AdmissionReviews")
	fs.StringVar(&o.MetricsAddress, "metrics-address", o.MetricsAddress, "HTTP address for /metrics, /healthz and /readyz")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "how long in-flight requests may take at shutdown")
	fs.DurationVar(&o.EnsureTimeout, "ensure-timeout", o.EnsureTimeout, "how long admission waits for a pod's pull secrets to be written; past it the pod is admitted with the references and the secrets are written after (keep it under the webhook's timeoutSeconds)")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", o.ShutdownDelay, "at shutdown, how long /readyz fails while the webhook still serves, so endpoints and kube-proxy catch up")
	fs.StringVar(&o.TLSSecretName, "tls-secret-name", o.TLSSecretName, "Secret holding the webhook's CA and serving certificate (self-managed TLS)")
	fs.StringVar(&o.WebhookConfigName, "webhook-config-name", o.WebhookConfigName, "MutatingWebhookConfiguration whose caBundle the webhook keeps current ('' to leave it alone)")
	fs.StringVar(&o.ServiceName, "service-name", o.ServiceName, "Service in front of the webhook; its DNS names go into the certificate")
	fs.Func("tls-dns-names", "extra DNS names for the certificate, comma-separated", func(s string) error {
		o.TLSDNSNames = append(o.TLSDNSNames, splitList(s)...)
		return nil
	})
	fs.Func("tls-ip-addresses", "IP addresses for the certificate, comma-separated (for a webhook reached by URL)", func(s string) error {
		for _, v := range splitList(s) {
			ip := net.ParseIP(v)
			if ip == nil {
				return fmt.Errorf("%q is not an IP address", v)
			}
			o.TLSIPAddresses = append(o.TLSIPAddresses, ip)
		}
		return nil
	})
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", o.TLSCertFile, "serve this certificate (cert-manager) instead of a self-managed one")
	fs.StringVar(&o.TLSKeyFile, "tls-key-file", o.TLSKeyFile, "key of --tls-cert-file")
	fs.Func("source-namespaces", "namespaces besides --namespace whose Secrets Registries may name as sources, comma-separated (a source anywhere else is refused)", func(s string) error {
		o.SourceNamespaces = splitList(s)
		return nil
	})
	fs.StringVar(&o.AgentSourcesRole, "agent-sources-role", o.AgentSourcesRole, "Role in --namespace that the leader keeps granting the node agents exactly the Secrets they serve ('' when no agents run)")
	fs.StringVar(&o.NodeDelivery, "node-delivery", o.NodeDelivery, "what the node agents serve: none (no agents), cluster (Cluster-scope registries), tokens (also Namespaced registries with delivery Node); a registry they cannot serve is Served=False ('' judges nothing)")
	fs.StringVar(&o.AgentDaemonSet, "agent-daemonset", o.AgentDaemonSet, "the node agents' DaemonSet in --namespace, whose ready pods count the nodes serving registries delivered by the node ('' when no agents run)")
	fs.StringVar(&o.ECREndpoint, "ecr-endpoint", o.ECREndpoint, "ECR API endpoint instead of the region's (a VPC endpoint, or a local ECR API in tests)")
	fs.BoolVar(&o.WatchPulls, "watch-pulls", o.WatchPulls, "count image pull failures of every pod (pullpass_image_pull_failures_total); needs list/watch on pods and events")
	fs.BoolVar(&o.ClusterWide, "cluster-wide", o.ClusterWide, "inject in every namespace but the excluded ones (otherwise only namespaces annotated pullpass.io/inject=enabled)")
	fs.Func("exclude-namespaces", "namespaces never injected, comma-separated (default kube-system,kube-public,kube-node-lease; pullpass's own is always excluded)", func(s string) error {
		o.ExcludedNamespaces = splitList(s)
		return nil
	})
	fs.BoolVar(&o.Verify, "verify", o.Verify, "log in to each registry with its credentials (GET /v2/ and the token flow, never a pull) and report it in the Verified condition")
	fs.DurationVar(&o.VerifyInterval, "verify-interval", o.VerifyInterval, "how often a registry that verified is verified again (±10% jitter); changes are verified at once, failures retried from 30s doubling")
	fs.DurationVar(&o.VerifyTimeout, "verify-timeout", o.VerifyTimeout, "longest one login may take, all its requests together")
	fs.IntVar(&o.VerifyWorkers, "verify-workers", o.VerifyWorkers, "logins in flight at once")
	fs.StringVar(&o.RegistryCAFile, "registry-ca-file", o.RegistryCAFile, "PEM file of CAs trusted for registries besides the system's")
	fs.StringVar(&o.DockerHubHost, "docker-hub-host", o.DockerHubHost, "where Docker Hub's names (docker.io) are logged in to (default index.docker.io; a mirror or a test registry)")
	fs.BoolVar(&o.DockerHubAnonymous, "docker-hub-anonymous-limit", o.DockerHubAnonymous, "also read Docker Hub's anonymous pull limit (the nodes' own when they share the webhook's egress address)")
	fs.BoolVar(&o.RecreateStuckPods, "recreate-stuck-pods", o.RecreateStuckPods, "in every namespace not annotated pullpass.io/recreate-stuck-pods=disabled, delete controller-owned pods stuck pulling from a registry that verifies again (otherwise only where annotated enabled)")
	o.Log.AddFlags(fs)
}

// Validate checks the options.
func (o *Options) Validate() error {
	if o.EnsureTimeout <= 0 {
		return fmt.Errorf("--ensure-timeout must be positive")
	}
	if o.Namespace == "" {
		return fmt.Errorf("--namespace is required")
	}
	if err := kubeconfig.ValidateRateLimit(o.KubeAPIQPS, o.KubeAPIBurst); err != nil {
		return err
	}
	if o.VerifyInterval < time.Minute || o.VerifyTimeout <= 0 || o.VerifyWorkers <= 0 {
		return fmt.Errorf("--verify-interval must be at least 1m, --verify-timeout and --verify-workers positive")
	}
	if _, err := nodedelivery.Parse(o.NodeDelivery); err != nil {
		return fmt.Errorf("--node-delivery: %w", err)
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return fmt.Errorf("--tls-cert-file and --tls-key-file go together")
	}
	return o.Log.Validate()
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

// DNSNames are the names the certificate must carry.
func (o *Options) DNSNames() []string {
	names := append([]string{}, o.TLSDNSNames...)
	if o.ServiceName != "" {
		s := o.ServiceName + "." + o.Namespace
		names = append(names, o.ServiceName, s, s+".svc", s+".svc.cluster.local")
	}
	return names
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
