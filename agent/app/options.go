// Package app wires the node agent binary: flags, clients, informers, the refresher, the plugin
// installer or the legacy docker config writer, and the metrics server.
package app

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pullpass/pullpass/agent/nodetaint"
	"github.com/pullpass/pullpass/pkg/kubeconfig"
	"github.com/pullpass/pullpass/pkg/logging"
)

// Modes of serving the kubelet.
const (
	// ModeProvider: the credential provider plugin (KEP-2133); the kubelet runs with
	// --image-credential-provider-config and --image-credential-provider-bin-dir.
	ModeProvider = "provider"
	// ModeLegacy: the kubelet's own docker config file, for kubelets whose flags cannot change.
	ModeLegacy = "legacy"
)

// Options are the agent's flags, grouped by concern.
type Options struct {
	// Cluster access.
	Kubeconfig string
	Namespace  string // pullpass's namespace: the source secrets
	NodeName   string
	// Client rate limit. The agent watches each source Secret by name (a get, a list and a
	// watch at start): client-go's default of 5 per second took minutes for hundreds of sources.
	KubeAPIQPS   float32
	KubeAPIBurst int
	// DaemonSetName is the agent's DaemonSet: when it is gone at shutdown, pullpass is being
	// uninstalled and the agent cleans the node.
	DaemonSetName string

	// Node files.
	Mode                string
	CachePath           string
	PluginSource        string
	TokenPluginSource   string
	ProviderBinDir      string
	ProviderConfig      string
	PluginCacheTime     time.Duration
	MatchImages         []string
	KubeletDockerConfig string

	// Service account tokens (KEP-4412): Namespaced registries delivered by the node.
	ServiceAccountTokens bool
	TokenAudience        string
	TokenCacheTime       time.Duration

	// Kubelet restarts (issue #27): the agent restarts its node's kubelet for a new provider
	// config, one node at a time, and removes the startup taint once the node serves.
	RestartKubelet       bool
	KubeletUnit          string
	KubeletHealthzURL    string
	KubeletHealthTimeout time.Duration
	RestartLease         string
	RestartLeaseDuration time.Duration
	// RestartWait bounds the wait for the lease and for pods starting, each.
	RestartWait        time.Duration
	RemoveStartupTaint bool
	// PreDeleteWait bounds the chart's pre-delete hook's wait for the agents to stop.
	PreDeleteWait time.Duration
	// FaultUnvalidatedConfig writes provider configs without validating them: for the e2e
	// test of the rollback only.
	FaultUnvalidatedConfig bool

	// Credential sources.
	ECREndpoint string

	// Serving.
	MetricsAddress  string
	ShutdownTimeout time.Duration
	// SourceSyncTimeout bounds the wait at start for the node Secret's first read.
	SourceSyncTimeout time.Duration

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
		Namespace:              ns,
		NodeName:               os.Getenv("NODE_NAME"),
		KubeAPIQPS:             50,
		KubeAPIBurst:           100,
		Mode:                   ModeProvider,
		CachePath:              "/var/lib/pullpass/credentials.json",
		PluginSource:           "/pullpass-credential-provider",
		TokenPluginSource:      "/pullpass-credential-provider-sa",
		ProviderBinDir:         "/etc/kubernetes/image-credential-provider/bin",
		ProviderConfig:         "/etc/kubernetes/image-credential-provider/config",
		PluginCacheTime:        time.Minute,
		TokenAudience:          "pullpass.io",
		TokenCacheTime:         10 * time.Second,
		KubeletDockerConfig:    "/var/lib/kubelet/config.json",
		KubeletUnit:            "kubelet.service",
		KubeletHealthzURL:      "http://127.0.0.1:10248/healthz",
		KubeletHealthTimeout:   2 * time.Minute,
		RestartLease:           "pullpass-kubelet-restart",
		RestartLeaseDuration:   time.Minute,
		RestartWait:            2 * time.Minute,
		PreDeleteWait:          3*time.Minute + 30*time.Second,
		FaultUnvalidatedConfig: os.Getenv("PULLPASS_FAULT_UNVALIDATED_CONFIG") == "true",
		MetricsAddress:         ":8081",
		ShutdownTimeout:        10 * time.Second,
		SourceSyncTimeout:      10 * time.Second,
		Log:                    logging.Defaults(),
	}
}

// AddFlags registers the flags on fs.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig file; in-cluster config when empty")
	kubeconfig.AddRateLimitFlags(fs, &o.KubeAPIQPS, &o.KubeAPIBurst, "three per source Secret at start")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "pullpass's namespace (source secrets); $POD_NAMESPACE by default")
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "this node's name, for logs; $NODE_NAME by default")
	fs.StringVar(&o.DaemonSetName, "daemonset-name", o.DaemonSetName, "the agent's DaemonSet: when it is gone at shutdown (uninstall), the agent removes its credentials and config from the node")

	fs.StringVar(&o.Mode, "mode", o.Mode, "how the kubelet is served: provider (credential provider plugin) or legacy (the kubelet's docker config.json)")
	fs.StringVar(&o.CachePath, "cache", o.CachePath, "the node credential cache (its directory must be the agent's only)")
	fs.StringVar(&o.PluginSource, "plugin-source", o.PluginSource, "provider mode: the plugin binary to install")
	fs.StringVar(&o.TokenPluginSource, "token-plugin-source", o.TokenPluginSource, "provider mode with service account tokens: the token entry's plugin binary to install")
	fs.StringVar(&o.ProviderBinDir, "provider-bin-dir", o.ProviderBinDir, "provider mode: the kubelet's --image-credential-provider-bin-dir")
	fs.StringVar(&o.ProviderConfig, "provider-config", o.ProviderConfig, "provider mode: the kubelet's --image-credential-provider-config (a file, merged, or a directory)")
	fs.DurationVar(&o.PluginCacheTime, "plugin-cache-duration", o.PluginCacheTime, "provider mode: the longest the kubelet keeps an answer (a rotated password reaches new pulls within it)")
	fs.Func("match-images", "provider mode: extra matchImages patterns, comma-separated (hosts with ports known ahead, which otherwise need a kubelet restart when first added)", func(v string) error {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				o.MatchImages = append(o.MatchImages, p)
			}
		}
		return nil
	})
	fs.StringVar(&o.KubeletDockerConfig, "kubelet-docker-config", o.KubeletDockerConfig, "legacy mode: the docker config the kubelet reads (<kubelet root dir>/config.json)")

	fs.BoolVar(&o.ServiceAccountTokens, "service-account-tokens", o.ServiceAccountTokens, "provider mode: serve Namespaced registries delivered by the node, to the namespaces and service accounts they allow, through a second plugin entry the kubelet runs with the pod's service account token (kubelet 1.34+; an older kubelet refuses to start with it)")
	fs.StringVar(&o.TokenAudience, "token-audience", o.TokenAudience, "the audience of the service account tokens the kubelet asks for (nodes need RBAC verb request-serviceaccounts-token-audience on it)")
	fs.DurationVar(&o.TokenCacheTime, "token-cache-duration", o.TokenCacheTime, "the longest the kubelet keeps an answer for a service account: how long a namespace that lost its label may still be served")
	fs.BoolVar(&o.RestartKubelet, "restart-kubelet", o.RestartKubelet, "provider mode: restart this node's kubelet through the host's systemd (its private D-Bus socket, /run/systemd/private) when it runs an older credential provider config than the one written, one node at a time (a Lease), rolling back a config it does not come back healthy with; and after an uninstall")
	fs.StringVar(&o.KubeletUnit, "kubelet-unit", o.KubeletUnit, "the kubelet's systemd unit")
	fs.StringVar(&o.KubeletHealthzURL, "kubelet-healthz-url", o.KubeletHealthzURL, "the kubelet's healthz, as the agent reaches it (on the host network)")
	fs.DurationVar(&o.KubeletHealthTimeout, "kubelet-health-timeout", o.KubeletHealthTimeout, "how long a restarted kubelet has to be healthy (healthz, Node Ready) before its config is rolled back")
	fs.StringVar(&o.RestartLease, "restart-lease", o.RestartLease, "the Lease in pullpass's namespace that lets one node restart its kubelet at a time")
	fs.DurationVar(&o.RestartLeaseDuration, "restart-lease-duration", o.RestartLeaseDuration, "how long the Lease of an agent that died blocks the other nodes")
	fs.DurationVar(&o.RestartWait, "restart-wait", o.RestartWait, "the longest a restart waits for pods the kubelet is starting on the node")
	fs.BoolVar(&o.RemoveStartupTaint, "remove-startup-taint", o.RemoveStartupTaint, "remove the taint "+nodetaint.Key+" from this node once it serves the node path (the kubelet runs the config written)")
	fs.DurationVar(&o.PreDeleteWait, "pre-delete-wait", o.PreDeleteWait, "pre-delete (the chart's hook before an uninstall): how long to wait for the agents to stop after their DaemonSet is deleted")
	fs.BoolVar(&o.FaultUnvalidatedConfig, "fault-unvalidated-config", o.FaultUnvalidatedConfig, "TESTS ONLY: write provider configs without validating them, to prove the rollback ($PULLPASS_FAULT_UNVALIDATED_CONFIG=true)")
	fs.StringVar(&o.ECREndpoint, "ecr-endpoint", o.ECREndpoint, "ECR API endpoint override (a VPC endpoint)")

	fs.StringVar(&o.MetricsAddress, "metrics-address", o.MetricsAddress, "HTTP address for /metrics, /healthz and /readyz")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "how long to let requests finish on shutdown")
	fs.DurationVar(&o.SourceSyncTimeout, "source-sync-timeout", o.SourceSyncTimeout, "how long to wait at start for the first read of the node secret (the credentials the controller writes for the nodes) before serving what the cache holds")

	o.Log.AddFlags(fs)
}

// Validate checks the options.
func (o *Options) Validate() error {
	var errs []error
	if err := kubeconfig.ValidateRateLimit(o.KubeAPIQPS, o.KubeAPIBurst); err != nil {
		errs = append(errs, err)
	}
	if o.Mode != ModeProvider && o.Mode != ModeLegacy {
		errs = append(errs, fmt.Errorf("--mode %q: want provider or legacy", o.Mode))
	}
	if o.CachePath == "" {
		errs = append(errs, errors.New("--cache is required"))
	}
	if o.Mode == ModeProvider && (o.ProviderBinDir == "" || o.ProviderConfig == "" || o.PluginSource == "") {
		errs = append(errs, errors.New("provider mode needs --provider-bin-dir, --provider-config and --plugin-source"))
	}
	if o.Mode == ModeLegacy && o.KubeletDockerConfig == "" {
		errs = append(errs, errors.New("legacy mode needs --kubelet-docker-config"))
	}
	if o.ServiceAccountTokens && o.Mode != ModeProvider {
		errs = append(errs, errors.New("--service-account-tokens needs provider mode"))
	}
	if o.ServiceAccountTokens && (o.TokenAudience == "" || o.TokenCacheTime < time.Second) {
		errs = append(errs, errors.New("--service-account-tokens needs --token-audience and a --token-cache-duration of at least 1s"))
	}
	if o.RestartKubelet && (o.Mode != ModeProvider || o.NodeName == "" || o.KubeletUnit == "" || o.RestartLease == "") {
		errs = append(errs, errors.New("--restart-kubelet needs provider mode, --node-name, --kubelet-unit and --restart-lease"))
	}
	if o.RestartKubelet && (o.KubeletHealthTimeout < time.Second || o.RestartLeaseDuration < 3*time.Second || o.RestartWait < 0) {
		errs = append(errs, errors.New("--restart-kubelet needs a --kubelet-health-timeout of at least 1s and a --restart-lease-duration of at least 3s"))
	}
	if o.RemoveStartupTaint && o.NodeName == "" {
		errs = append(errs, errors.New("--remove-startup-taint needs --node-name"))
	}
	if o.PluginCacheTime < time.Second {
		errs = append(errs, fmt.Errorf("--plugin-cache-duration %s: at least 1s", o.PluginCacheTime))
	}
	if err := o.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
