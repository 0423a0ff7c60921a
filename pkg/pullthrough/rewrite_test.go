package pullthrough_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/image"
	"github.com/pullpass/pullpass/pkg/match"
	"github.com/pullpass/pullpass/pkg/pullthrough"
)

const (
	ecrHost = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
	dgst    = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func cache(name, host, upstream, prefix string, sel *metav1.LabelSelector) *v1alpha1.Registry {
	return &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.RegistrySpec{
			Hosts:             []string{host},
			Auth:              v1alpha1.RegistryAuth{SecretRef: &v1alpha1.SecretReference{Name: name, Namespace: "pullpass"}},
			NamespaceSelector: sel,
			PullThrough:       &v1alpha1.PullThrough{Upstream: upstream, Prefix: prefix},
		},
	}
}

func TestRewrite(t *testing.T) {
	ecr := pullthrough.Target{Host: ecrHost, Prefix: "docker-hub"}
	gitlab := pullthrough.Target{Host: "gitlab.example.com", Prefix: "group/dependency_proxy/containers"}
	root := pullthrough.Target{Host: "mirror.internal:5000"}
	tests := []struct {
		target pullthrough.Target
		in     string
		want   string
	}{
		{ecr, "nginx", ecrHost + "/docker-hub/library/nginx"},
		{ecr, "nginx:1.27", ecrHost + "/docker-hub/library/nginx:1.27"},
		{ecr, "library/nginx:1.27", ecrHost + "/docker-hub/library/nginx:1.27"},
		{ecr, "docker.io/nginx", ecrHost + "/docker-hub/library/nginx"},
		{ecr, "docker.io/bitnami/redis@" + dgst, ecrHost + "/docker-hub/bitnami/redis@" + dgst},
		{ecr, "index.docker.io/nginx:1.27@" + dgst, ecrHost + "/docker-hub/library/nginx:1.27@" + dgst},
		{ecr, "registry-1.docker.io/org/team/app:v1", ecrHost + "/docker-hub/org/team/app:v1"},
		{ecr, "nginx:Latest_1.2-x", ecrHost + "/docker-hub/library/nginx:Latest_1.2-x"},
		{gitlab, "alpine:3", "gitlab.example.com/group/dependency_proxy/containers/library/alpine:3"},
		{root, "ghcr.io/org/app:v1", "mirror.internal:5000/org/app:v1"},
	}
	for _, tt := range tests {
		ref, err := image.Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := tt.target.Rewrite(ref)
		if !ok || got != tt.want {
			t.Errorf("Rewrite(%q) = %q, %t; want %q", tt.in, got, ok, tt.want)
		}
	}
	// A name longer than the grammar allows is not made.
	long, _ := image.Parse("org/" + strings.Repeat("a", 255-len("docker.io/org/")))
	if got, ok := ecr.Rewrite(long); ok {
		t.Errorf("Rewrite of a 255-character repository under a prefix = %q, want none", got)
	}
}

// Every reference form of the upstream keeps its tag and digest through the rewrite, and
// parses back to the same repository under the cache; the cache's own host pattern matches it
// (so the cache's pull secret applies), and the result is never an image of the upstream again
// (so a reinvoked webhook cannot rewrite it twice). Any valid pull-through configuration, any
// image of its upstream.
func FuzzRewrite(f *testing.F) {
	for _, s := range [][3]string{
		{"nginx", ecrHost, "docker-hub"},
		{"library/nginx:1.27", "harbor.example.com/myproject", "myproject"},
		{"docker.io/bitnami/redis@" + dgst, "gitlab.example.com", "group/dependency_proxy/containers"},
		{"index.docker.io/nginx:1@" + dgst, "localhost:5000", ""},
		{"ghcr.io/o/a:v1", "mirror.internal:5000/", "a__b/c-d"},
		{"quay.io/prometheus/node-exporter:v1.8.0", "Registry.Example.com", "quay"},
		{"registry.k8s.io/pause:3.10", "cache:5000/k8s", "k8s"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, img, host, prefix string) {
		ref, err := image.Parse(img)
		if err != nil {
			return
		}
		reg := cache("c", host, ref.Host, prefix, nil)
		if len(pullthrough.Validate(reg.Spec)) > 0 {
			// Most fuzzed configurations are invalid: every image still meets a valid one.
			fallback := [][2]string{{ecrHost, "docker-hub"}, {"harbor.example.com/myproject", "myproject"}, {"localhost:5000", ""}}[len(host)%3]
			if reg = cache("c", fallback[0], ref.Host, fallback[1], nil); len(pullthrough.Validate(reg.Spec)) > 0 {
				return
			}
			host, prefix = fallback[0], fallback[1]
		}
		target := pullthrough.TargetOf(reg.Spec)
		out, ok := target.Rewrite(ref)
		if !ok {
			if len(target.Repository(ref.Path)) <= 255 {
				t.Fatalf("Rewrite(%q) refused a name of %d characters", img, len(target.Repository(ref.Path)))
			}
			return
		}
		back, err := image.Parse(out)
		if err != nil {
			t.Fatalf("Rewrite(%q) to %s/%s = %q, which does not parse: %v", img, host, prefix, out, err)
		}
		if back.Repository() != target.Repository(ref.Path) || back.Tag != ref.Tag || back.Digest != ref.Digest {
			t.Fatalf("Rewrite(%q) = %q, parsed %+v; want repository %s, tag %q, digest %q", img, out, back, target.Repository(ref.Path), ref.Tag, ref.Digest)
		}
		if p, err := match.ParsePattern(host); err != nil || !p.Matches(back.Repository()) {
			t.Fatalf("the cache's host pattern %q does not match its image %q (%v)", host, out, err)
		}
		if pullthrough.NewIndex([]*v1alpha1.Registry{reg}).Upstream(back.Host) {
			t.Fatalf("Rewrite(%q) = %q is an image of the upstream %s again", img, out, ref.Host)
		}
	})
}
