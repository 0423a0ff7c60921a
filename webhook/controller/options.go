// Package controller wires the pullpass-controller binary: the leader-elected controllers that
// keep pull secrets fresh (keeper), verify registries (verifier), count image pull failures (pull
// watcher), recreate pods stuck on a registry that works again, and grant the node agents their
// credentials (the node Secret). One replica leads at a time, and a replica that loses the Lease exits:
// the process restarts and stands for election again, with nothing left of its last term.
package controller

import (
	"flag"
	"fmt"
	"time"

	"github.com/pullpass/pullpass/pkg/logging"
	"github.com/pullpass/pullpass/pkg/nodedelivery"
	"github.com/pullpass/pullpass/pkg/nodesecret"
	"github.com/pullpass/pullpass/webhook/cluster"
)

// Options are the controller's flags, grouped by concern.
type Options struct {
	// Cluster access, credential sources and the namespaces served: as the webhook's.
	cluster.Options

	// Serving: HTTP /metrics, /healthz, /readyz.
	MetricsAddress string

	// Leader election: a Lease in Namespace.
	LeaseName     string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration

	// NodeCredentials makes the leader write what the node agents serve into the node Secret
	// in Namespace (webhook/nodecreds; off when there are no agents).
	NodeCredentials bool

	// NodeDelivery is what the node agents serve (none, cluster or tokens; '' judges nothing),
	// and AgentDaemonSet their DaemonSet in Namespace, whose ready pods count the serving nodes
	// ('' when no agents run): together they say whether each Registry is served.
	NodeDelivery   string
	AgentDaemonSet string

	// Observability.
	WatchPulls bool // count image pull failures across the cluster

	// Verification: logins to each registry with its credentials.
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

// DefaultLeaseName is the Lease the keeper's leader has always held, the webhook's before the
// controller's: during an upgrade from a chart whose webhook led, the old webhook and the new
// controller stand for the same Lease, so their keepers never run side by side.
const DefaultLeaseName = "pullpass-keeper"

// DefaultOptions returns the defaults (client-go's usual leader election timings).
func DefaultOptions() *Options {
	return &Options{
		Options:        cluster.DefaultOptions(),
		MetricsAddress: ":8080",
		LeaseName:      DefaultLeaseName,
		LeaseDuration:  15 * time.Second,
		RenewDeadline:  10 * time.Second,
		RetryPeriod:    2 * time.Second,
		WatchPulls:     true,
		Verify:         true,
		VerifyInterval: time.Hour,
		VerifyTimeout:  10 * time.Second,
		VerifyWorkers:  4,
		Log:            logging.Defaults(),
	}
}

// AddFlags registers the flags on fs.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	o.Options.AddFlags(fs, "a rotation rewrites one secret per namespace")
	fs.StringVar(&o.MetricsAddress, "metrics-address", o.MetricsAddress, "HTTP address for /metrics, /healthz and /readyz")
	fs.StringVar(&o.LeaseName, "lease-name", o.LeaseName, "Lease in --namespace that one replica holds while it leads")
	fs.DurationVar(&o.LeaseDuration, "lease-duration", o.LeaseDuration, "how long standby replicas wait after the last renewal before taking the Lease")
	fs.DurationVar(&o.RenewDeadline, "renew-deadline", o.RenewDeadline, "how long the leader retries renewing before it gives up leading (and exits)")
	fs.DurationVar(&o.RetryPeriod, "retry-period", o.RetryPeriod, "how often replicas try to take or renew the Lease")
	fs.BoolVar(&o.NodeCredentials, "node-credentials", o.NodeCredentials, "write what the node agents serve (Cluster-scope and node-delivered registries' credentials) into the Secret "+nodesecret.Name+" in --namespace, the only Secret the agents read (off when no agents run)")
	fs.StringVar(&o.NodeDelivery, "node-delivery", o.NodeDelivery, "what the node agents serve: none (no agents), cluster (Cluster-scope registries), tokens (also Namespaced registries with delivery Node); a registry they cannot serve is Served=False ('' judges nothing)")
	fs.StringVar(&o.AgentDaemonSet, "agent-daemonset", o.AgentDaemonSet, "the node agents' DaemonSet in --namespace, whose ready pods count the nodes serving registries delivered by the node ('' when no agents run)")
	fs.BoolVar(&o.WatchPulls, "watch-pulls", o.WatchPulls, "count image pull failures of every pod (pullpass_image_pull_failures_total); needs list/watch on pods and events")
	fs.BoolVar(&o.Verify, "verify", o.Verify, "log in to each registry with its credentials (GET /v2/ and the token flow, never a pull) and report it in the Verified condition")
	fs.DurationVar(&o.VerifyInterval, "verify-interval", o.VerifyInterval, "how often a registry that verified is verified again (±10% jitter); changes are verified at once, failures retried from 30s doubling")
	fs.DurationVar(&o.VerifyTimeout, "verify-timeout", o.VerifyTimeout, "longest one login may take, all its requests together")
	fs.IntVar(&o.VerifyWorkers, "verify-workers", o.VerifyWorkers, "logins in flight at once")
	fs.StringVar(&o.RegistryCAFile, "registry-ca-file", o.RegistryCAFile, "PEM file of CAs trusted for registries besides the system's")
	fs.StringVar(&o.DockerHubHost, "docker-hub-host", o.DockerHubHost, "where Docker Hub's names (docker.io) are logged in to (default index.docker.io; a mirror or a test registry)")
	fs.BoolVar(&o.DockerHubAnonymous, "docker-hub-anonymous-limit", o.DockerHubAnonymous, "also read Docker Hub's anonymous pull limit (the nodes' own when they share the controller's egress address)")
	fs.BoolVar(&o.RecreateStuckPods, "recreate-stuck-pods", o.RecreateStuckPods, "in every namespace not annotated pullpass.io/recreate-stuck-pods=disabled, delete controller-owned pods stuck pulling from a registry that verifies again (otherwise only where annotated enabled)")
	o.Log.AddFlags(fs)
}

// Validate checks the options.
func (o *Options) Validate() error {
	if err := o.Options.Validate(); err != nil {
		return err
	}
	if o.LeaseName == "" {
		return fmt.Errorf("--lease-name is required")
	}
	if o.RetryPeriod <= 0 || o.RenewDeadline <= o.RetryPeriod || o.LeaseDuration <= o.RenewDeadline {
		return fmt.Errorf("leader election needs 0 < --retry-period < --renew-deadline < --lease-duration")
	}
	if o.VerifyInterval < time.Minute || o.VerifyTimeout <= 0 || o.VerifyWorkers <= 0 {
		return fmt.Errorf("--verify-interval must be at least 1m, --verify-timeout and --verify-workers positive")
	}
	if _, err := nodedelivery.Parse(o.NodeDelivery); err != nil {
		return fmt.Errorf("--node-delivery: %w", err)
	}
	return o.Log.Validate()
}
