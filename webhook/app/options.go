// Package app wires the webhook binary: flags, clients, informers, TLS, HTTP servers.
package app

import (
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/pullpass/pullpass/pkg/logging"
	"github.com/pullpass/pullpass/webhook/cluster"
)

// Options are the webhook's flags, grouped by concern.
type Options struct {
	// Cluster access, credential sources and the namespaces served: as the controller's.
	cluster.Options

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

	// Logs.
	Log logging.Options
}

// DefaultOptions returns the defaults.
func DefaultOptions() *Options {
	return &Options{
		Options:           cluster.DefaultOptions(),
		ListenAddress:     ":8443",
		MetricsAddress:    ":8080",
		ShutdownTimeout:   10 * time.Second,
		EnsureTimeout:     3 * time.Second,
		ShutdownDelay:     3 * time.Second,
		TLSSecretName:     "pullpass-webhook-tls",
		WebhookConfigName: "pullpass",
		ServiceName:       "pullpass-webhook",
		Log:               logging.Defaults(),
	}
}

// AddFlags registers the flags on fs.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	o.Options.AddFlags(fs, "an admission may write one pull secret per registry")
	fs.StringVar(&o.ListenAddress, "listen-address", o.ListenAddress, "HTTPS address for AdmissionReviews")
	fs.StringVar(&o.MetricsAddress, "metrics-address", o.MetricsAddress, "HTTP address for /metrics, /healthz and /readyz")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "how long in-flight requests may take at shutdown")
	fs.DurationVar(&o.EnsureTimeout, "ensure-timeout", o.EnsureTimeout, "how long admission waits for a pod's pull secrets to be written; past it the pod is admitted with the references and the secrets are written after (keep it under the webhook's timeoutSeconds)")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", o.ShutdownDelay, "at shutdown, how long /readyz fails while the webhook still serves, so endpoints and kube-proxy catch up")
	fs.StringVar(&o.TLSSecretName, "tls-secret-name", o.TLSSecretName, "Secret holding the webhook's CA and serving certificate (self-managed TLS)")
	fs.StringVar(&o.WebhookConfigName, "webhook-config-name", o.WebhookConfigName, "MutatingWebhookConfiguration whose caBundle the webhook keeps current ('' to leave it alone)")
	fs.StringVar(&o.ServiceName, "service-name", o.ServiceName, "Service in front of the webhook; its DNS names go into the certificate")
	fs.Func("tls-dns-names", "extra DNS names for the certificate, comma-separated", func(s string) error {
		o.TLSDNSNames = append(o.TLSDNSNames, cluster.SplitList(s)...)
		return nil
	})
	fs.Func("tls-ip-addresses", "IP addresses for the certificate, comma-separated (for a webhook reached by URL)", func(s string) error {
		for _, v := range cluster.SplitList(s) {
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
	o.Log.AddFlags(fs)
}

// Validate checks the options.
func (o *Options) Validate() error {
	if o.EnsureTimeout <= 0 {
		return fmt.Errorf("--ensure-timeout must be positive")
	}
	if err := o.Options.Validate(); err != nil {
		return err
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return fmt.Errorf("--tls-cert-file and --tls-key-file go together")
	}
	return o.Log.Validate()
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
