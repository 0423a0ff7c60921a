package image

import (
	"strings"
	"testing"
)

// FuzzParseFastAgrees checks the fast path against the reference library: whenever parseFast
// answers, the library must accept the same string and give the same reference.
func FuzzParseFastAgrees(f *testing.F) {
	for _, s := range []string{
		"nginx", "nginx:1.27", "org/app", "ghcr.io/o/a:v1", "localhost:5000/a", "Registry.Example.com/app",
		"a__b/c", "a___b", "a--b.c_d/e", "a-.b", "a._b", "a/b/", "x:", ":x", "a:b:c", "a.b:5000/c:d",
		"index.docker.io/x", "registry-1.docker.io/x", "UPPER", "a/B", "0123456789012345678901234567890123456789012345678901234567890123",
		"-a/b", "a-/b", "a.-b/c", "a/b.c_d-e", "a:5000x/b", "1.2.3.4:5/x", strings.Repeat("a", 256), "a/" + strings.Repeat("b", 253),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := parseFast(s)
		if !ok {
			return
		}
		slow, err := parseSlow(s)
		if err != nil {
			t.Fatalf("parseFast(%q) = %+v, but the library refuses it: %v", s, fast, err)
		}
		if foldDockerHub(fast) != slow {
			t.Fatalf("parseFast(%q) = %+v, library %+v", s, foldDockerHub(fast), slow)
		}
	})
}

// The fast path answers for the forms pods use most, so the hot path avoids the regexps.
func TestParseFastCoversCommonForms(t *testing.T) {
	for _, s := range []string{"nginx", "nginx:1.27", "org/app:v1", "ghcr.io/org/team/app:v1.2.3", "localhost:5000/app", "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:latest", "quay.io/prometheus/node-exporter:v1.8.0"} {
		if _, ok := parseFast(s); !ok {
			t.Errorf("parseFast(%q) fell back to the library", s)
		}
	}
}
