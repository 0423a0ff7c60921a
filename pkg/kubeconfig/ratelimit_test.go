package kubeconfig

import (
	"flag"
	"testing"
)

func TestRateLimitFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"--kube-api-qps=20", "--kube-api-burst=40"}, true},
		{[]string{"--kube-api-qps=0"}, false},
		{[]string{"--kube-api-qps=-1"}, false},
		{[]string{"--kube-api-qps=NaN"}, false},
		{[]string{"--kube-api-qps=+Inf"}, false},
		{[]string{"--kube-api-burst=0"}, false},
	} {
		qps, burst := float32(50), 100
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		AddRateLimitFlags(fs, &qps, &burst, "test")
		if err := fs.Parse(tt.args); err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if err := ValidateRateLimit(qps, burst); (err == nil) != tt.ok {
			t.Errorf("%v: %v, want ok=%t", tt.args, err, tt.ok)
		}
	}
	qps, burst := float32(1), 1
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	AddRateLimitFlags(fs, &qps, &burst, "test")
	if err := fs.Parse([]string{"--kube-api-qps=many"}); err == nil {
		t.Error("--kube-api-qps=many parsed")
	}
}
