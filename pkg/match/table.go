package match

import (
	"cmp"
	"slices"
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
	// Entries are indexed so a lookup tries only those that could match: exact hosts by
	// host:port, globs by label count, port and (when literal) last label.
	exact    map[string][]*Entry[V]
	globs    map[globKey][]*Entry[V]
	wildLast map[globKey][]*Entry[V]
	size     int
}

type globKey struct {
	labels int
	port   string
	last   string
}

// NewTable builds a table. Entries are copied.
func NewTable[V any](entries []Entry[V]) *Table[V] {
	t := &Table[V]{
		exact:    map[string][]*Entry[V]{},
		globs:    map[globKey][]*Entry[V]{},
		wildLast: map[globKey][]*Entry[V]{},
		size:     len(entries),
	}
	for i := range entries {
		e := entries[i]
		p := e.Pattern
		switch last := p.labels[len(p.labels)-1]; {
		case p.literal:
			k := hostKey(p)
			t.exact[k] = append(t.exact[k], &e)
		case isLiteral(last):
			k := globKey{len(p.labels), p.port, last}
			t.globs[k] = append(t.globs[k], &e)
		default:
			k := globKey{labels: len(p.labels), port: p.port}
			t.wildLast[k] = append(t.wildLast[k], &e)
		}
	}
	for _, m := range []map[string][]*Entry[V]{t.exact} {
		for _, l := range m {
			slices.SortFunc(l, compareEntries[V])
		}
	}
	for _, m := range []map[globKey][]*Entry[V]{t.globs, t.wildLast} {
		for _, l := range m {
			slices.SortFunc(l, compareEntries[V])
		}
	}
	return t
}

func hostKey(p Pattern) string {
	h := joinLabels(p.labels)
	if p.port != "" {
		h += ":" + p.port
	}
	return h
}

func joinLabels(l []string) string {
	n := len(l) - 1
	for _, s := range l {
		n += len(s)
	}
	b := make([]byte, 0, n)
	for i, s := range l {
		if i > 0 {
			b = append(b, '.')
		}
		b = append(b, s...)
	}
	return string(b)
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
	consider(t.exact[tg.hostport])
	n := len(tg.labels)
	consider(t.globs[globKey{n, tg.port, tg.labels[n-1]}])
	consider(t.wildLast[globKey{labels: n, port: tg.port}])
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
	n := len(tg.labels)
	for _, l := range [][]*Entry[V]{t.exact[tg.hostport], t.globs[globKey{n, tg.port, tg.labels[n-1]}], t.wildLast[globKey{labels: n, port: tg.port}]} {
		for _, e := range l {
			if e.Pattern.matches(tg) {
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, compareEntries[V])
	res := make([]Entry[V], len(out))
	for i, e := range out {
		res[i] = *e
	}
	return res
}
