package slim

import (
	"encoding/binary"
	"slices"
	"sync"
)

// Strings gives one copy of each string that many cached objects repeat: a registry's name is in
// each of its pull secrets, 10,000 at 10,000 namespaces, and the decoder makes a copy for every
// one. It holds at most limit strings and, full, starts over: strings that tenants choose cannot
// grow it without end, and those it gave out stay shared by whoever holds them.
type Strings struct {
	mu  sync.Mutex
	m   map[string]string
	max int
}

// NewStrings returns an empty table of at most limit strings.
func NewStrings(limit int) *Strings { return &Strings{m: map[string]string{}, max: limit} }

// Intern returns the table's copy of v, adding v if it has none.
func (t *Strings) Intern(v string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.m[v]; ok {
		return c
	}
	if len(t.m) >= t.max {
		clear(t.m)
	}
	t.m[v] = v
	return v
}

// Len is how many strings the table holds.
func (t *Strings) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// Maps gives one copy of each small string map that many cached objects hold alike: the labels
// of a registry's pull secrets are the same in every namespace, and so are the annotations of
// every opted-in namespace. A shared map must never be written: cached objects are read-only
// (client-go's contract; pullpass copies one before it changes it). It holds at most limit maps
// and, full, starts over: a registry's labels change with each rotation of its credentials (the
// digest), and the maps of old ones must not stay forever.
type Maps struct {
	mu  sync.Mutex
	m   map[string]map[string]string
	max int
}

// NewMaps returns an empty table of at most limit maps.
func NewMaps(limit int) *Maps { return &Maps{m: map[string]map[string]string{}, max: limit} }

// Intern returns the table's copy of a map equal to m, adding m if it has none. A nil or empty
// map is returned as it is.
func (t *Maps) Intern(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	keys := make([]string, 0, len(m))
	n := 0
	for k, v := range m {
		keys = append(keys, k)
		n += len(k) + len(v) + 2*binary.MaxVarintLen64
	}
	slices.Sort(keys)
	b := make([]byte, 0, n)
	for _, k := range keys {
		// Each string after its length: no two maps give the same bytes, whatever they hold.
		v := m[k]
		b = append(binary.AppendUvarint(b, uint64(len(k))), k...)
		b = append(binary.AppendUvarint(b, uint64(len(v))), v...)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.m[string(b)]; ok {
		return c
	}
	if len(t.m) >= t.max {
		clear(t.m)
	}
	t.m[string(b)] = m
	return m
}

// Len is how many maps the table holds.
func (t *Maps) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
