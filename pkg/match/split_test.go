package match

import (
	"net"
	"testing"
)

// splitHostPort is net.SplitHostPort with the kubelet's fallback: on net's error, the whole is
// the host.
func FuzzSplitHostPort(f *testing.F) {
	for _, s := range []string{"", ":", "a", "a:1", "a:", ":1", "a:b:c", "[::1]:5000", "[::1]", "[a]b:1", "[a]:1:2", "[a:1", "a]:1", "[[a]]:1", "a[b]:1", "0:", "[0]:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, hostport string) {
		wantHost, wantPort, err := net.SplitHostPort(hostport)
		if err != nil {
			wantHost, wantPort = hostport, ""
		}
		if host, port := splitHostPort(hostport); host != wantHost || port != wantPort {
			t.Fatalf("splitHostPort(%q) = %q, %q; net says %q, %q", hostport, host, port, wantHost, wantPort)
		}
	})
}
