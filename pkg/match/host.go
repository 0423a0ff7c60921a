package match

import (
	"iter"
	"path"
	"slices"
	"strings"
)

// HostAnswer is what a credential provider may answer for an image so that the kubelet can
// cache the answer under the image's host (cacheKeyType Registry) and reuse it for any other
// image of that host without ever giving one of them a wrong answer.
//
// The kubelet caches a plugin's answer under the image, its host or globally, and for a later
// image looks up the image key, then the host key, then the global key before it runs the plugin
// again. It then matches every auth key of the cached answer against that image, with the rules
// of this package, and tries every key that matches. So an answer keyed by host must hold, for
// every repository of the host, the keys of exactly the entry that Table.Lookup picks for it:
//   - an answer with only the best entry of one image is wrong for an image of another path of
//     the host ("ghcr.io/team-b/app" after "ghcr.io/team-a/app"), and an empty answer is wrong
//     for every private image of the host that comes after a public one;
//   - an answer with every entry of the host is right when no two of its keys with different
//     values can match one repository: the kubelet then finds, for each repository, the keys of
//     its best entry only, or none where no entry matches.
type HostAnswer[V comparable] struct {
	// Best is the most specific entry matching the repository (Found), as Table.Lookup gives it.
	Best  Entry[V]
	Found bool
	// Uniform is true when Keys, given together, serve every repository of the host its best
	// entry and nothing else: the answer may be cached under the host. When it is false, only
	// Best may be given, cached under the image.
	Uniform bool
	// Keys are, when Uniform, the entries to give: for each path prefix that some entry of the
	// host has, the best entry with that path (the others never win on this host). None when
	// no entry serves the host.
	Keys []Entry[V]
}

// AnswerForHost computes the HostAnswer for an image repository ("host[:port]/path", as the
// kubelet sends it) from entries whose patterns are parsed only when they may match the host.
// Values are compared with == to tell entries apart: two keys with the same value may both match
// a repository (the kubelet offers the same credentials twice).
func AnswerForHost[V comparable](repository string, entries iter.Seq[Raw[V]]) HostAnswer[V] {
	var a HostAnswer[V]
	tg, ok := parseTarget(repository)
	if !ok {
		return a
	}
	// The kubelet keys an answer by the repository up to its first '/'; only for plain
	// repositories is that exactly the host and port matched here.
	uniform := plain(repository) && plainHostPort(repository)
	var onHost []Entry[V]
	best := -1
	for r := range entries {
		if !mayMatch(r.Pattern, tg) {
			continue
		}
		p, err := ParsePattern(r.Pattern)
		if err != nil || !p.matchesHost(tg) {
			continue
		}
		onHost = append(onHost, Entry[V]{Name: r.Name, Pattern: p, Value: r.Value})
		if e := &onHost[len(onHost)-1]; strings.HasPrefix(tg.path, p.path) && (best < 0 || compareEntries(e, &onHost[best]) < 0) {
			best = len(onHost) - 1
		}
	}
	if best >= 0 {
		a.Best, a.Found = onHost[best], true
	}
	if !uniform {
		return a
	}
	// The best entry of each path: sorted by path, then most specific first.
	slices.SortFunc(onHost, func(x, y Entry[V]) int {
		if c := strings.Compare(x.Pattern.path, y.Pattern.path); c != 0 {
			return c
		}
		return compareEntries(&x, &y)
	})
	onHost = slices.CompactFunc(onHost, func(x, y Entry[V]) bool { return x.Pattern.path == y.Pattern.path })
	// Sorted by path, the paths that have path i as a prefix follow it directly.
	for i, x := range onHost {
		for _, y := range onHost[i+1:] {
			if !strings.HasPrefix(y.Pattern.path, x.Pattern.path) {
				break
			}
			if y.Value != x.Value {
				return a // one repository would be offered both
			}
		}
	}
	a.Uniform, a.Keys = true, onHost
	return a
}

// matchesHost reports whether the pattern matches some repository of t's host and port: it
// matches t but for the path.
func (p Pattern) matchesHost(t target) bool {
	if p.port != t.port || len(p.labels) != t.labels {
		return false
	}
	if p.literal {
		return p.host == t.host
	}
	ok := true
	eachLabel(t.host, func(i int, l string) bool {
		ok, _ = path.Match(p.labels[i], l)
		return ok
	})
	return ok
}
