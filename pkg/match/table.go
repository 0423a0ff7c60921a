package match

import (
	"cmp"
	"iter"
	"slices"
	"strings"
)

// Entry is one host pattern of one registry.
type Entry[V any] struct {
	// Name names the registry the pattern belongs to; it breaks the last ties.
	Name    string
	Pattern Pattern
	Value   V
}

// Table finds the most specific entry for an image repository. When several entries match,
// the winner is the one with, in this order:
//  1. the longer path prefix ("ghcr.io/team" over "ghcr.io");
//  2. an exact host over a glob ("ecr.example.com" over "*.example.com");
//  3. fewer wildcards ("*.dkr.ecr.eu-west-1.amazonaws.com" over "*.dkr.ecr.*.amazonaws.com");
//  4. the smaller name, then the smaller pattern, so the answer never depends on input order.
//
// A Table is immutable once built and safe for concurrent use.
type Table[V any] struct {
	// Entries are indexed so a lookup tries only those that could match. Exact hosts are keyed
	// by host:port. A glob is keyed by one of its literal labels (the rarest in the table, so
	// "*.dkr.ecr.*.amazonaws.com" patterns that differ only by account land apart) with its
	// position, label count and port; a glob with no literal label by label count and port.
	exact    map[string][]*Entry[V]
	globs    map[globKey][]*Entry[V]
	wildOnly map[globKey][]*Entry[V]
	size     int
}

type globKey struct {
	labels int
	port   string
	pos    int
	label  string
}

// NewTable builds a table. Entries are copied.
func NewTable[V any](entries []Entry[V]) *Table[V] {
	t := &Table[V]{
		exact:    map[string][]*Entry[V]{},
		globs:    map[globKey][]*Entry[V]{},
		wildOnly: map[globKey][]*Entry[V]{},
		size:     len(entries),
	}
	keysOf := func(p Pattern) []globKey {
		var ks []globKey
		for i, l := range p.labels {
			if isLiteral(l) {
				ks = append(ks, globKey{len(p.labels), p.port, i, l})
			}
		}
		return ks
	}
	freq := map[globKey]int{}
	for _, e := range entries {
		if !e.Pattern.literal {
			for _, k := range keysOf(e.Pattern) {
				freq[k]++
			}
		}
	}
	for i := range entries {
		e := entries[i]
		p := e.Pattern
		if p.literal {
			k := hostKey(p)
			t.exact[k] = append(t.exact[k], &e)
			continue
		}
		ks := keysOf(p)
		if len(ks) == 0 {
			k := globKey{labels: len(p.labels), port: p.port}
			t.wildOnly[k] = append(t.wildOnly[k], &e)
			continue
		}
		best := ks[0]
		for _, k := range ks[1:] {
			if freq[k] < freq[best] {
				best = k
			}
		}
		t.globs[best] = append(t.globs[best], &e)
	}
	for _, l := range t.exact {
		slices.SortFunc(l, compareEntries[V])
	}
	for _, m := range []map[globKey][]*Entry[V]{t.globs, t.wildOnly} {
		for _, l := range m {
			slices.SortFunc(l, compareEntries[V])
		}
	}
	return t
}

func hostKey(p Pattern) string {
	if p.port != "" {
		return p.host + ":" + p.port
	}
	return p.host
}

func isLiteral(label string) bool {
	for i := 0; i < len(label); i++ {
		if label[i] == '*' {
			return false
		}
	}
	return true
}

// compareEntries orders entries most specific first.
func compareEntries[V any](a, b *Entry[V]) int {
	if c := cmp.Compare(len(b.Pattern.path), len(a.Pattern.path)); c != 0 {
		return c
	}
	if a.Pattern.literal != b.Pattern.literal {
		if a.Pattern.literal {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.Pattern.wildcards, b.Pattern.wildcards); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return cmp.Compare(a.Pattern.raw, b.Pattern.raw)
}

// Len returns the number of entries.
func (t *Table[V]) Len() int { return t.size }

// Lookup returns the most specific entry matching an image repository ("host[:port]/path",
// as image.Reference.Repository gives it).
func (t *Table[V]) Lookup(repository string) (Entry[V], bool) {
	tg, ok := parseTarget(repository)
	if !ok {
		return Entry[V]{}, false
	}
	var best *Entry[V]
	consider := func(l []*Entry[V]) {
		// Each list is sorted most specific first, so its first match is its best.
		for _, e := range l {
			if best != nil && compareEntries(e, best) >= 0 {
				return
			}
			if e.Pattern.matches(tg) {
				best = e
				return
			}
		}
	}
	t.candidates(tg, consider)
	if best == nil {
		return Entry[V]{}, false
	}
	return *best, true
}

// All returns every entry matching a repository, most specific first.
func (t *Table[V]) All(repository string) []Entry[V] {
	tg, ok := parseTarget(repository)
	if !ok {
		return nil
	}
	var out []*Entry[V]
	t.candidates(tg, func(l []*Entry[V]) {
		for _, e := range l {
			if e.Pattern.matches(tg) {
				out = append(out, e)
			}
		}
	})
	slices.SortFunc(out, compareEntries[V])
	res := make([]Entry[V], len(out))
	for i, e := range out {
		res[i] = *e
	}
	return res
}

// candidates calls f with each index bucket that may hold entries matching tg.
func (t *Table[V]) candidates(tg target, f func([]*Entry[V])) {
	f(t.exact[tg.hostport])
	n := tg.labels
	if len(t.globs) > 0 {
		eachLabel(tg.host, func(i int, l string) bool {
			if b := t.globs[globKey{n, tg.port, i, l}]; b != nil {
				f(b)
			}
			return true
		})
	}
	f(t.wildOnly[globKey{labels: n, port: tg.port}])
}

// Raw is an entry whose pattern is not parsed yet.
type Raw[V any] struct {
	Name    string
	Pattern string
	Value   V
}

// LookupOnce answers as NewTable(the valid entries).Lookup(repository) would, for a single
// lookup: it parses only the patterns that may match, where building a table parses them all.
// The credential provider plugin answers one lookup per exec, from a cache of any size.
func LookupOnce[V any](repository string, entries iter.Seq[Raw[V]]) (Entry[V], bool) {
	tg, ok := parseTarget(repository)
	if !ok {
		return Entry[V]{}, false
	}
	var best *Entry[V]
	for r := range entries {
		if !mayMatch(r.Pattern, tg) {
			continue
		}
		p, err := ParsePattern(r.Pattern)
		if err != nil || !p.matches(tg) {
			continue
		}
		e := &Entry[V]{Name: r.Name, Pattern: p, Value: r.Value}
		if best == nil || compareEntries(e, best) < 0 {
			best = e
		}
	}
	if best == nil {
		return Entry[V]{}, false
	}
	return *best, true
}

// mayMatch is false when a pattern cannot match tg, judged from the pattern as written. It judges
// only patterns of plain characters, whose host url.Parse leaves as written; it leaves the others
// to ParsePattern.
func mayMatch(pattern string, tg target) bool {
	hostport, _, _ := strings.Cut(pattern, "/")
	if !plain(hostport) {
		return true
	}
	if !strings.Contains(hostport, "*") {
		// A valid literal pattern matches only its own host and port: its index key.
		return hostport == tg.hostport
	}
	host, port := splitHostPort(hostport)
	return port == tg.port && strings.Count(host, ".")+1 == tg.labels
}
