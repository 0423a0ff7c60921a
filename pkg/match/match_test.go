package match_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pullpass/pullpass/pkg/match"
)

// kubeletCases are the kubelet's own TestURLsMatch table (k8s.io/kubernetes
// pkg/credentialprovider/keyring_test.go), which pullpass must agree with case for case.
var kubeletCases = []struct {
	glob, target string
	want         bool
}{
	{"*.kubernetes.io", "prefix.kubernetes.io", true},
	{"prefix.*.io", "prefix.kubernetes.io", true},
	{"prefix.kubernetes.*", "prefix.kubernetes.io", true},
	{"*-good.kubernetes.io", "prefix-good.kubernetes.io", true},
	{"*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true},
	{"prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true},
	{"*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", true},
	{"prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", true},
	{"*.kubernetes.io", "kubernetes.io", false},
	{"*.*.kubernetes.io", "prefix.kubernetes.io", false},
	{"*.*.kubernetes.io", "kubernetes.io", false},
	{"*kubernetes.io", "a.kubernetes.io", false},
	{"*kubernetes.io", "kubernetes.io", true},
	{"*.*.*.kubernetes.io", "a.b.c.kubernetes.io", true},
	{"kubernetes.io", "kubernetes.com", false},
	{"k*.io", "quay.io", false},
	{"*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", false},
	{"prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", false},
}

func TestPatternMatchesKubeletTable(t *testing.T) {
	for _, tt := range kubeletCases {
		p, err := match.ParsePattern(tt.glob)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tt.glob, err)
		}
		if got := p.Matches(tt.target); got != tt.want {
			t.Errorf("%q matches %q = %t, want %t", tt.glob, tt.target, got, tt.want)
		}
	}
}

func TestPatternMatches(t *testing.T) {
	tests := []struct {
		glob, target string
		want         bool
	}{
		// Ports are compared as strings and never globbed.
		{"localhost:5443", "localhost:5443/app", true},
		{"localhost:5443", "localhost/app", false},
		{"localhost", "localhost:5443/app", false},
		{"*", "localhost:5443/app", false},
		{"*:5443", "localhost:5443/app", true},
		// The path is a plain string prefix, as in the kubelet: "/team" covers "/teamwork".
		{"ghcr.io/team", "ghcr.io/team/app", true},
		{"ghcr.io/team", "ghcr.io/teamwork/app", true},
		{"ghcr.io/team/", "ghcr.io/teamwork/app", false},
		{"ghcr.io/team/app", "ghcr.io/team", false},
		// Docker Hub is matched under its canonical host.
		{"docker.io", "docker.io/library/nginx", true},
		{"docker.io/library", "docker.io/library/nginx", true},
		{"*.io", "docker.io/library/nginx", true},
		// One '*' spans any run within a label, never a dot.
		{"*", "localhost/app", true},
		{"*", "a.b/app", false},
		{"*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com/app", true},
		{"*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app", false},
		{"*.dkr.ecr.*.amazonaws.com.cn", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app", true},
		{"*.azurecr.io", "myreg.azurecr.io/app", true},
		{"*-docker.pkg.dev", "europe-west1-docker.pkg.dev/p/r/i", true},
		// Labels are case-sensitive, as in the kubelet.
		{"ghcr.io", "GHCR.io/app", false},
	}
	for _, tt := range tests {
		p, err := match.ParsePattern(tt.glob)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tt.glob, err)
		}
		if got := p.Matches(tt.target); got != tt.want {
			t.Errorf("%q matches %q = %t, want %t", tt.glob, tt.target, got, tt.want)
		}
	}
}

func TestParsePatternErrors(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{"", "empty"},
		{"ftp://ghcr.io", "only an https:// or http:// scheme"},
		{"HTTPS://ghcr.io", "only an https:// or http:// scheme"},
		{"https://https://ghcr.io", "only an https:// or http:// scheme"},
		{"https://", "no host"},
		{"https:///v1/", "no host"},
		{"https://ghcr.io?x", `only '*' is a glob`},
		{"https://Ghcr.io/Team", `(written "https://Ghcr.io/Team")`},
		{"reg?.io", "only '*' is a glob"},
		{"reg[0-9].io", "only '*' is a glob"},
		{"ghcr.io:abc", "invalid port"},
		{"ghcr.io:*", "invalid port"},
		{"a..io", "empty label"},
		{".io", "empty label"},
		{"user@ghcr.io", "'@'"},
		{"ghcr .io", "white space"},
		{"ghcr.io#x", "'#'"},
		{"reg!.io", "may hold only"},
		{"/path", "no host"},
	}
	for _, tt := range tests {
		_, err := match.ParsePattern(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParsePattern(%q) error %v, want one containing %q", tt.in, err, tt.wantErr)
		}
	}
}

// Patterns are read as people paste registry addresses, and as the kubelet and docker read docker
// config keys; Docker Hub has one name.
func TestParsePatternCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"ghcr.io":                          "ghcr.io",
		"https://ghcr.io":                  "ghcr.io",
		"http://ghcr.io/":                  "ghcr.io",
		"ghcr.io/":                         "ghcr.io",
		"https://ghcr.io/v2/":              "ghcr.io",
		"https://ghcr.io/v2/team/":         "ghcr.io/team/",
		"ghcr.io/v1/team":                  "ghcr.io/team",
		"ghcr.io/team/":                    "ghcr.io/team/", // a trailing slash on a path stops at it
		"ghcr.io/v2":                       "ghcr.io/v2",    // a repository named v2, as for the kubelet
		"localhost:5443/":                  "localhost:5443",
		"https://localhost:5443/v2/":       "localhost:5443",
		"docker.io":                        "docker.io",
		"index.docker.io":                  "docker.io",
		"registry-1.docker.io":             "docker.io",
		"https://index.docker.io/v1/":      "docker.io",
		"https://registry-1.docker.io/v2/": "docker.io",
		"index.docker.io/myorg":            "docker.io/myorg",
		"*.docker.io":                      "*.docker.io",
		"https://*.azurecr.io":             "*.azurecr.io",
	} {
		p, err := match.ParsePattern(in)
		if err != nil {
			t.Errorf("ParsePattern(%q): %v", in, err)
			continue
		}
		if p.String() != want {
			t.Errorf("ParsePattern(%q) = %q, want %q", in, p.String(), want)
		}
		if c, err := match.Canonical(in); err != nil || c != want {
			t.Errorf("Canonical(%q) = %q, %v", in, c, err)
		}
	}
	// Every Docker Hub spelling serves Docker Hub images, and only them.
	for _, spelling := range []string{"docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"} {
		p, _ := match.ParsePattern(spelling)
		for _, repo := range []string{"docker.io/library/nginx", "docker.io/yourname/app"} {
			if !p.Matches(repo) {
				t.Errorf("%q does not match %q", spelling, repo)
			}
		}
		if p.Matches("ghcr.io/library/nginx") {
			t.Errorf("%q matches ghcr.io", spelling)
		}
	}
}

func entries(t testing.TB, specs ...string) []match.Entry[string] {
	t.Helper()
	var out []match.Entry[string]
	for _, s := range specs {
		name, pat, _ := strings.Cut(s, "=")
		p, err := match.ParsePattern(pat)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", pat, err)
		}
		out = append(out, match.Entry[string]{Name: name, Pattern: p, Value: s})
	}
	return out
}

func TestTablePrecedence(t *testing.T) {
	tests := []struct {
		name    string
		entries []string
		repo    string
		want    string // winning entry name, "" for none
	}{
		{"longer path beats exact host", []string{"exact=ghcr.io", "team=*.io/team"}, "ghcr.io/team/app", "team"},
		{"longest path wins", []string{"a=ghcr.io/team", "b=ghcr.io/team/app", "c=ghcr.io"}, "ghcr.io/team/app/x", "b"},
		{"exact host beats glob", []string{"glob=*.example.com", "exact=reg.example.com"}, "reg.example.com/app", "exact"},
		{"fewer wildcards win", []string{"two=*.dkr.ecr.*.amazonaws.com", "one=*.dkr.ecr.eu-west-1.amazonaws.com"}, "1.dkr.ecr.eu-west-1.amazonaws.com/app", "one"},
		{"wildcards counted, not labels", []string{"a=*.*.example.com", "b=*-x.*.example.com"}, "a-x.b.example.com/app", "a"},
		{"name breaks ties", []string{"zeta=reg.example.com", "alpha=reg.example.com"}, "reg.example.com/app", "alpha"},
		{"glob with literal last label vs wild last", []string{"wild=reg.example.*", "lit=*.example.com"}, "reg.example.com/app", "lit"},
		{"glob on last label only", []string{"wild=reg.example.*"}, "reg.example.org/app", "wild"},
		{"port must match", []string{"noport=localhost", "port=localhost:5443"}, "localhost:5443/app", "port"},
		{"no match", []string{"a=ghcr.io", "b=*.gcr.io"}, "quay.io/app", ""},
		{"no match for wrong label count", []string{"b=*.gcr.io"}, "gcr.io/app", ""},
		{"path prefix not met", []string{"a=ghcr.io/team"}, "ghcr.io/other/app", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := entries(t, tt.entries...)
			// Input order must not matter.
			for _, order := range [][]match.Entry[string]{es, reversed(es)} {
				got, ok := match.NewTable(order).Lookup(tt.repo)
				if tt.want == "" {
					if ok {
						t.Fatalf("Lookup(%q) = %q, want no match", tt.repo, got.Name)
					}
					continue
				}
				if !ok || got.Name != tt.want {
					t.Fatalf("Lookup(%q) = %q (ok=%t), want %q", tt.repo, got.Name, ok, tt.want)
				}
				all := match.NewTable(order).All(tt.repo)
				if len(all) == 0 || all[0].Name != tt.want {
					t.Fatalf("All(%q)[0] = %v, want %q first", tt.repo, all, tt.want)
				}
			}
		})
	}
}

func reversed[T any](s []T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// TestTableAgreesWithLinearScan checks the index against the obvious algorithm.
func TestTableAgreesWithLinearScan(t *testing.T) {
	var specs []string
	hosts := []string{"a.example.com", "*.example.com", "a.*.com", "a.example.*", "*", "localhost", "localhost:5000", "*:5000", "*.*.com", "a.example.com/x", "*.example.com/x/y"}
	for i, h := range hosts {
		specs = append(specs, fmt.Sprintf("r%02d=%s", i, h))
	}
	es := entries(t, specs...)
	table := match.NewTable(es)
	targets := []string{"a.example.com/x/y/z", "b.example.com/x", "a.b.com/q", "a.example.org/z", "localhost/a", "localhost:5000/a", "other:5000/a", "x/y", "c.d.com/x/y"}
	for _, tg := range targets {
		var want []string
		for _, e := range es {
			if e.Pattern.Matches(tg) {
				want = append(want, e.Name)
			}
		}
		all := table.All(tg)
		if len(all) != len(want) {
			t.Errorf("All(%q) has %d entries, linear scan %d (%v)", tg, len(all), len(want), want)
		}
	}
}

func FuzzPattern(f *testing.F) {
	for _, c := range kubeletCases {
		f.Add(c.glob, c.target)
	}
	f.Fuzz(func(t *testing.T, glob, target string) {
		p, err := match.ParsePattern(glob)
		if err != nil {
			return
		}
		got := p.Matches(target)
		// A table of one entry answers as the pattern does. (That the pattern answers as the
		// kubelet does is FuzzMatchesLikeKubelet's job, in hack/tools/kube.)
		_, ok := match.NewTable([]match.Entry[int]{{Name: "x", Pattern: p}}).Lookup(target)
		if ok != got {
			t.Fatalf("table(%q).Lookup(%q) = %t, pattern says %t", glob, target, ok, got)
		}
	})
}

// LookupOnce answers as a table of the same entries, invalid patterns left out as table
// builders leave them out. Patterns are given comma-separated, each named by its position.
func FuzzLookupOnceAgrees(f *testing.F) {
	f.Add("a.example.com,*.example.com,a.example.com/x,*:5000,*", "a.example.com/x/y")
	f.Add("localhost:5000,localhost,%6cocalhost,*.*.com", "localhost:5000/a")
	f.Add("*.dkr.ecr.*.amazonaws.com,1.dkr.ecr.eu-west-1.amazonaws.com", "1.dkr.ecr.eu-west-1.amazonaws.com/app")
	f.Add("A.io,a.io,0,0:1", "A.io/x")
	f.Fuzz(func(t *testing.T, patterns, target string) {
		var parsed []match.Entry[int]
		var raw []match.Raw[int]
		for i, s := range strings.Split(patterns, ",") {
			name := fmt.Sprintf("r%02d", i)
			raw = append(raw, match.Raw[int]{Name: name, Pattern: s, Value: i})
			if p, err := match.ParsePattern(s); err == nil {
				parsed = append(parsed, match.Entry[int]{Name: name, Pattern: p, Value: i})
			}
		}
		want, wantOK := match.NewTable(parsed).Lookup(target)
		got, ok := match.LookupOnce(target, slices.Values(raw))
		if ok != wantOK || got.Name != want.Name || got.Pattern.String() != want.Pattern.String() {
			t.Fatalf("LookupOnce(%q) among %q = %v %q, table says %v %q", target, patterns, ok, got.Name, wantOK, want.Name)
		}
	})
}
