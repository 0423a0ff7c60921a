package kube

import (
	"testing"

	"k8s.io/kubernetes/pkg/credentialprovider"

	"github.com/pullpass/pullpass/pkg/match"
)

// FuzzMatchesLikeKubelet checks pullpass's matcher against the kubelet's own URLsMatchStr, on
// every pattern pullpass accepts and any target at all. It lives in this module because only
// here may k8s.io/kubernetes be imported. Run: make fuzz-kubelet.
func FuzzMatchesLikeKubelet(f *testing.F) {
	seeds := [][2]string{
		{"*.kubernetes.io", "prefix.kubernetes.io"}, {"prefix.*.io/foo", "prefix.kubernetes.io/foo/bar"},
		{"*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah"}, {"*kubernetes.io", "a.kubernetes.io"},
		{"localhost:5443", "localhost:5443/e2e/hello"}, {"docker.io", "docker.io/library/nginx"},
		{"ghcr.io/team", "ghcr.io/teamwork/x"}, {"*", "a:b:c/x"}, {"0", "[0]:"}, {"0", "0:"}, {"a.io", "a.io/x?y"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, glob, target string) {
		p, err := match.ParsePattern(glob)
		if err != nil {
			return
		}
		want, kerr := credentialprovider.URLsMatchStr(glob, target)
		if kerr != nil {
			want = false
		}
		if got := p.Matches(target); got != want {
			t.Fatalf("pattern %q, target %q: pullpass %t, kubelet %t (%v)", glob, target, got, want, kerr)
		}
	})
}
