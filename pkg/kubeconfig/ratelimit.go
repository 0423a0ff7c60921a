package kubeconfig

import (
	"flag"
	"fmt"
	"math"
	"strconv"
)

// AddRateLimitFlags registers --kube-api-qps and --kube-api-burst, the client's limit of requests
// to the API server, on fs; why says what the binary needs them for.
func AddRateLimitFlags(fs *flag.FlagSet, qps *float32, burst *int, why string) {
	fs.Func("kube-api-qps", fmt.Sprintf("requests per second to the API server (default %v): %s", *qps, why), func(v string) error {
		f, err := strconv.ParseFloat(v, 32)
		*qps = float32(f)
		return err
	})
	fs.IntVar(burst, "kube-api-burst", *burst, "burst of requests to the API server")
}

// ValidateRateLimit refuses what client-go would not take as written: a QPS of 0, negative or not
// a number becomes its default of 5/s, and a burst below 1 refuses every request.
func ValidateRateLimit(qps float32, burst int) error {
	if !(qps > 0) || math.IsInf(float64(qps), 0) || burst < 1 {
		return fmt.Errorf("--kube-api-qps (%v) must be a positive number and --kube-api-burst (%d) at least 1", qps, burst)
	}
	return nil
}
