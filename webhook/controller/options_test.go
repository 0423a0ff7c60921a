package controller

import (
	"flag"
	"strings"
	"testing"
	"time"
)

// Flags parse into the options, and bad leader election timings are refused with a message that
// names the flags.
func TestOptions(t *testing.T) {
	o := DefaultOptions()
	fs := flag.NewFlagSet("pullpass-controller", flag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--namespace=pp", "--lease-name=l", "--lease-duration=30s", "--source-namespaces=a, b", "--cluster-wide"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
	if o.Namespace != "pp" || o.LeaseName != "l" || o.LeaseDuration != 30*time.Second || !o.ClusterWide ||
		strings.Join(o.AllSourceNamespaces(), ",") != "pp,a,b" || strings.Join(o.Excluded(), ",") != "pp,kube-system,kube-public,kube-node-lease" {
		t.Fatalf("options %+v", o)
	}
	for name, f := range map[string]func(*Options){
		"renew not under the lease": func(o *Options) { o.RenewDeadline = o.LeaseDuration },
		"retry not under renew":     func(o *Options) { o.RetryPeriod = o.RenewDeadline },
		"no lease name":             func(o *Options) { o.LeaseName = "" },
		"no namespace":              func(o *Options) { o.Namespace = "" },
	} {
		o := DefaultOptions()
		f(o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), "--") {
			t.Errorf("%s: %v, want an error naming the flag", name, err)
		}
	}
}
