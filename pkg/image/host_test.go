package image_test

import (
	"testing"

	"github.com/pullpass/pullpass/pkg/image"
)

// Host gives the host Parse gives, for every image Parse accepts.
func FuzzHostAgrees(f *testing.F) {
	for _, s := range []string{"nginx", "library/nginx:1.27", "docker.io/bitnami/redis", "index.docker.io/nginx", "registry-1.docker.io/a/b",
		"localhost/app", "localhost:5000/app", "ghcr.io/o/a:v1", "Registry.Example.com/app", "my-registry:5000/a", "a/b/c",
		"[::1]:5000/x", "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "UPPER/app"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := image.Parse(s)
		if err != nil {
			return
		}
		if got := image.Host(s); got != ref.Host {
			t.Fatalf("Host(%q) = %q, Parse says %q", s, got, ref.Host)
		}
	})
}
