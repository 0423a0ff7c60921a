package image_test

import (
	"strings"
	"testing"

	"github.com/pullpass/pullpass/pkg/image"
)

func TestParse(t *testing.T) {
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		in   string
		want image.Reference
	}{
		{"nginx", image.Reference{Host: "docker.io", Path: "library/nginx"}},
		{"nginx:1.27", image.Reference{Host: "docker.io", Path: "library/nginx", Tag: "1.27"}},
		{"org/app", image.Reference{Host: "docker.io", Path: "org/app"}},
		{"docker.io/nginx", image.Reference{Host: "docker.io", Path: "library/nginx"}},
		{"index.docker.io/nginx", image.Reference{Host: "docker.io", Path: "library/nginx"}},
		{"index.docker.io/org/app:v1", image.Reference{Host: "docker.io", Path: "org/app", Tag: "v1"}},
		{"registry-1.docker.io/nginx", image.Reference{Host: "docker.io", Path: "library/nginx"}},
		{"registry-1.docker.io/org/app", image.Reference{Host: "docker.io", Path: "org/app"}},
		{"localhost/app", image.Reference{Host: "localhost", Path: "app"}},
		{"localhost:5000/app:dev", image.Reference{Host: "localhost:5000", Path: "app", Tag: "dev"}},
		{"127.0.0.1:5443/team/app", image.Reference{Host: "127.0.0.1:5443", Path: "team/app"}},
		{"ghcr.io/org/team/app:v1.2.3", image.Reference{Host: "ghcr.io", Path: "org/team/app", Tag: "v1.2.3"}},
		{"123456789012.dkr.ecr.us-east-1.amazonaws.com/app", image.Reference{Host: "123456789012.dkr.ecr.us-east-1.amazonaws.com", Path: "app"}},
		{"app@" + dgst, image.Reference{Host: "docker.io", Path: "library/app", Digest: dgst}},
		{"ghcr.io/o/app:v1@" + dgst, image.Reference{Host: "ghcr.io", Path: "o/app", Tag: "v1", Digest: dgst}},
		{"Registry.Example.com/app", image.Reference{Host: "Registry.Example.com", Path: "app"}},
		{"my-registry:5000/a/b/c/d", image.Reference{Host: "my-registry:5000", Path: "a/b/c/d"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := image.Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			// The canonical form parses back to the same reference.
			again, err := image.Parse(got.String())
			if err != nil || again != got {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{"", "empty"},
		{"Nginx", "must be lowercase"},
		{"docker.io/Org/app", "must be lowercase"},
		{"nginx:", "bad tag"},
		{"nginx:-bad", "bad tag"},
		{"nginx:" + strings.Repeat("a", 129), "bad tag"},
		{"nginx@sha256:zz", "digest"},
		{"nginx@nope", "bad digest"},
		{" nginx", "white space"},
		{"nginx ", "white space"},
		{"a//b", "not a valid image reference"},
		{"http://example.com/app", "not a valid image reference"},
		{":tag", "not a valid image reference"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := image.Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want error containing %q", tt.in, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"nginx", "org/app:v1", "localhost:5000/a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "index.docker.io/x", "Bad", "a:b:c", "[::1]:5000/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := image.Parse(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if ref.Host == "" || ref.Path == "" {
			t.Fatalf("Parse(%q) = %+v: empty host or path", s, ref)
		}
		again, err := image.Parse(ref.String())
		if err != nil || again != ref {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", s, again, err, ref)
		}
	})
}
