package match

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func rawOf(entries [][3]string) func(func(Raw[string]) bool) {
	return func(yield func(Raw[string]) bool) {
		for _, e := range entries {
			if !yield(Raw[string]{Name: e[0], Pattern: e[1], Value: e[2]}) {
				return
			}
		}
	}
}

func TestAnswerForHost(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries [][3]string // name, pattern, value
		image   string
		best    string // value, "" for none
		uniform bool
		keys    []string
	}{
		{"two teams on one host", [][3]string{{"a", "ghcr.io/team-a/", "A"}, {"b", "ghcr.io/team-b/", "B"}},
			"ghcr.io/team-a/app", "A", true, []string{"ghcr.io/team-a/", "ghcr.io/team-b/"}},
		{"a public image of a served host", [][3]string{{"a", "ghcr.io/team-a/", "A"}, {"b", "ghcr.io/team-b/", "B"}},
			"ghcr.io/fluxcd/flux", "", true, []string{"ghcr.io/team-a/", "ghcr.io/team-b/"}},
		{"a host nothing serves", [][3]string{{"a", "ghcr.io/team-a/", "A"}, {"q", "quay.io", "Q"}},
			"docker.io/library/nginx", "", true, nil},
		{"nested paths of different registries", [][3]string{{"org", "ghcr.io/org", "O"}, {"team", "ghcr.io/org/team/", "T"}},
			"ghcr.io/org/team/app", "T", false, nil},
		{"a host-wide registry beside a path one", [][3]string{{"all", "ghcr.io", "ALL"}, {"a", "ghcr.io/team-a/", "A"}},
			"ghcr.io/other/app", "ALL", false, nil},
		{"nested paths of one registry", [][3]string{{"org", "ghcr.io/org", "O"}, {"org", "ghcr.io/org/team/", "O"}},
			"ghcr.io/org/x", "O", true, []string{"ghcr.io/org", "ghcr.io/org/team/"}},
		{"an exact host shadows a glob of the same path", [][3]string{{"g", "*.example.com", "G"}, {"e", "a.example.com", "E"}},
			"a.example.com/x", "E", true, []string{"a.example.com"}},
		{"the glob alone serves another host", [][3]string{{"g", "*.example.com", "G"}, {"e", "a.example.com", "E"}},
			"b.example.com/x", "G", true, []string{"*.example.com"}},
		{"ports are other hosts", [][3]string{{"p", "reg.local:5000/a/", "P"}, {"n", "reg.local/b/", "N"}},
			"reg.local:5000/a/x", "P", true, []string{"reg.local:5000/a/"}},
		{"an image the kubelet keys differently is answered for itself", [][3]string{{"a", "ghcr.io/team-a/", "A"}, {"b", "ghcr.io/team-b/", "B"}},
			"ghcr.io/team-a/APP?x", "A", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := AnswerForHost(tc.image, rawOf(tc.entries))
			if a.Found != (tc.best != "") || a.Best.Value != tc.best {
				t.Errorf("best = %q (found %v), want %q", a.Best.Value, a.Found, tc.best)
			}
			if a.Uniform != tc.uniform {
				t.Fatalf("uniform = %v, want %v", a.Uniform, tc.uniform)
			}
			var keys []string
			for _, k := range a.Keys {
				keys = append(keys, k.Pattern.String())
			}
			if !slices.Equal(keys, tc.keys) {
				t.Errorf("keys = %q, want %q", keys, tc.keys)
			}
		})
	}
}

// TestAnswerForHostServesEveryImageOfTheHost checks the promise of a uniform answer the way the
// kubelet uses it: the keys of the answer given for one image, matched against any other image
// of the same host, offer exactly the value Table.Lookup picks for that image. Random tables and
// images, from a fixed seed.
func TestAnswerForHostServesEveryImageOfTheHost(t *testing.T) {
	hosts := []string{"ghcr.io", "*.io", "g*.io", "reg.local:5000", "*.local:5000", "reg.local"}
	paths := []string{"", "/org", "/org/", "/org/team", "/org/team/", "/team-a/", "/team-b/", "/team"}
	images := []string{"ghcr.io/org/app", "ghcr.io/org/team/app", "ghcr.io/orgs/x", "ghcr.io/team-a/x", "ghcr.io/team-b/y",
		"ghcr.io/teamwork/z", "ghcr.io/public/x", "reg.local:5000/org/team/app", "reg.local:5000/team-a/x", "reg.local/team-b/x",
		"reg.local/x"}
	rng := rand.New(rand.NewPCG(1, 2))
	uniform := 0
	for round := range 3000 {
		var entries [][3]string
		var table []Entry[string]
		for i := range 1 + rng.IntN(5) {
			name := fmt.Sprintf("r%d", rng.IntN(4))
			pattern := hosts[rng.IntN(len(hosts))] + paths[rng.IntN(len(paths))]
			value := name // one registry, one value
			if rng.IntN(4) == 0 {
				value = fmt.Sprintf("%s-%d", name, i)
			}
			entries = append(entries, [3]string{name, pattern, value})
			p, err := ParsePattern(pattern)
			if err != nil {
				t.Fatal(err)
			}
			table = append(table, Entry[string]{Name: name, Pattern: p, Value: value})
		}
		tbl := NewTable(table)
		first := images[rng.IntN(len(images))]
		a := AnswerForHost(first, rawOf(entries))
		want, ok := tbl.Lookup(first)
		if a.Found != ok || a.Best.Value != want.Value || a.Best.Pattern.String() != want.Pattern.String() {
			t.Fatalf("round %d: best for %s = %v, want %v (entries %q)", round, first, a.Best, want, entries)
		}
		if !a.Uniform {
			continue
		}
		uniform++
		host := first[:len(first)-len(first[indexSlash(first):])]
		for _, img := range images {
			if img[:indexSlash(img)] != host {
				continue
			}
			offered := map[string]bool{}
			for _, k := range a.Keys {
				if k.Pattern.Matches(img) {
					offered[k.Value] = true
				}
			}
			want, ok := tbl.Lookup(img)
			if (ok && (len(offered) != 1 || !offered[want.Value])) || (!ok && len(offered) != 0) {
				t.Fatalf("round %d: the answer for %s offers %v to %s, whose best is %q (entries %q, keys %v)",
					round, first, offered, img, want.Value, entries, a.Keys)
			}
		}
	}
	if uniform < 500 {
		t.Fatalf("only %d of 3000 rounds were uniform: the test checks too little", uniform)
	}
}

func indexSlash(s string) int {
	for i := range len(s) {
		if s[i] == '/' {
			return i
		}
	}
	return len(s)
}
