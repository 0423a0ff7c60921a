package kube

import (
	"strings"
	"testing"

	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/util/parsers"

	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/pullsecret"
)

// FuzzMatchesLikeKubelet checks pullpass's matcher against the kubelet's own code, on every
// pattern pullpass accepts and any target at all. It lives in this module because only here may
// k8s.io/kubernetes be imported. Run: make fuzz-kubelet.
//
// Three things must hold:
//  1. the pattern's canonical form, which pullpass writes as matchImages, matches as the
//     kubelet's URLsMatchStr says;
//  2. the keys pullpass writes for the pattern (pull secrets, the plugin's answers), read by the
//     kubelet's own keyring, serve exactly the repositories the pattern matches;
//  3. the pattern as written, read by that keyring as a docker config key (scheme, "/v1/",
//     trailing "/"), serves what pullpass matches, but for Docker Hub's other names:
//     the kubelet never serves registry-1.docker.io, nor index.docker.io with a path, to Docker
//     Hub images, while pullpass reads them as docker.io (and writes docker.io, so the kubelet
//     serves them); and the kubelet serves an index.docker.io key, as its default registry, to
//     any image no other key matched whose host has no '.' or ':' ("localhost/app"), which
//     pullpass never does.
//
// Checks 2 and 3 use the repositories the kubelet looks credentials up for: image names it has
// already normalized ("nginx" is looked up as docker.io/library/nginx).
func FuzzMatchesLikeKubelet(f *testing.F) {
	seeds := [][2]string{
		{"*.kubernetes.io", "prefix.kubernetes.io"}, {"prefix.*.io/foo", "prefix.kubernetes.io/foo/bar"},
		{"*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah"}, {"*kubernetes.io", "a.kubernetes.io"},
		{"localhost:5443", "localhost:5443/e2e/hello"}, {"docker.io", "docker.io/library/nginx"},
		{"ghcr.io/team", "ghcr.io/teamwork/x"}, {"*", "a:b:c/x"}, {"0", "[0]:"}, {"0", "0:"}, {"a.io", "a.io/x?y"},
		// What people paste, and Docker Hub's names.
		{"https://ghcr.io", "ghcr.io/org/app"}, {"http://ghcr.io/", "ghcr.io/org/app"},
		{"https://ghcr.io/v2/org/", "ghcr.io/org/app"}, {"https://localhost:5443/v1/", "localhost:5443/e2e/hello"},
		{"index.docker.io", "docker.io/library/nginx"}, {"registry-1.docker.io", "docker.io/yourname/app"},
		{"https://index.docker.io/v1/", "docker.io/library/nginx"}, {"https://index.docker.io/v1/", "docker.io/yourname/app"},
		{"https://registry-1.docker.io/v2/", "docker.io/yourname/postgres"}, {"index.docker.io/yourname", "docker.io/yourname/app"},
		{"docker.io/yourname", "docker.io/library/nginx"}, {"index.docker.io", "ghcr.io/library/nginx"},
		// The kubelet serves an index.docker.io key to these too, which is why pullpass writes none.
		{"https://index.docker.io/v1/", "localhost/app"}, {"registry-1.docker.io", "0A0/0"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, glob, target string) {
		p, err := match.ParsePattern(glob)
		if err != nil {
			return
		}
		got := p.Matches(target)
		want, kerr := credentialprovider.URLsMatchStr(p.String(), target)
		if kerr != nil {
			want = false
		}
		if got != want {
			t.Fatalf("pattern %q (canonical %q), target %q: pullpass %t, kubelet matchImages %t (%v)", glob, p.String(), target, got, want, kerr)
		}
		repo, _, _, err := parsers.ParseImageName(target)
		if err != nil || repo != target {
			return // not a repository the kubelet would look up
		}
		if served := keyringServes(pullsecret.Keys(glob), target); served != got {
			t.Fatalf("pattern %q, repository %q: pullpass %t, the kubelet's keyring with keys %q %t", glob, target, got, pullsecret.Keys(glob), served)
		}
		if dockerHubDiffers(glob, p, target) {
			return
		}
		if served := keyringServes([]string{glob}, target); served != got {
			t.Fatalf("pattern %q, repository %q: pullpass %t, the kubelet's keyring with key %q %t", glob, target, got, glob, served)
		}
	})
}

// keyringServes says whether the kubelet's keyring, holding keys, gives credentials for repo.
func keyringServes(keys []string, repo string) bool {
	cfg := credentialprovider.DockerConfig{}
	for _, k := range keys {
		cfg[k] = credentialprovider.DockerConfigEntry{Username: "u", Password: "p"}
	}
	kr := &credentialprovider.BasicDockerKeyring{}
	kr.Add(nil, cfg)
	_, ok := kr.Lookup(repo)
	return ok
}

// dockerHubDiffers reports the cases of check 3 where pullpass reads a Docker Hub name
// differently from the kubelet's keyring, on purpose.
func dockerHubDiffers(glob string, p match.Pattern, repo string) bool {
	written := strings.TrimPrefix(strings.TrimPrefix(glob, "https://"), "http://")
	host, _, _ := strings.Cut(written, "/")
	repoHost, _, _ := strings.Cut(repo, "/")
	switch host {
	case "registry-1.docker.io":
		return true
	case "index.docker.io":
		return p.String() != match.DockerHub || repoHost != match.DockerHub
	}
	return false
}
