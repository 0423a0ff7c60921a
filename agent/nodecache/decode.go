package nodecache

import (
	"bytes"
	"slices"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeFast decodes a cache file as the agent writes it (json.Marshal of a File) without
// reflection: the kubelet execs the plugin for every pull, and encoding/json took most of an
// answer's time in a fresh process. It answers only when it is sure: on anything unusual (an
// unknown, repeated or differently cased key, a null, a number that is not a small integer,
// invalid UTF-8, a surrogate escape) it returns false, and Read asks encoding/json, which also
// words the errors. FuzzDecodeFastAgrees checks every answer it gives against encoding/json.
func decodeFast(data []byte) (File, bool) {
	// One copy of the file: strings without escapes are parts of it, so reading a cache of n
	// registries allocates a few times, not 4n.
	d := decoder{b: data, s: string(data)}
	if n := bytes.Count(data, []byte(`"hosts"`)); n > 0 {
		d.entriesCap, d.hosts = n, make([]string, 0, n)
	}
	var f File
	ok := d.fields([]string{"version", "entries", "writtenAt"}, func(key string) (ok bool) {
		switch key {
		case "version":
			f.Version, ok = d.smallInt()
		case "entries":
			f.Entries, ok = d.entries()
		default:
			ok = d.time(&f.WrittenAt)
		}
		return ok
	})
	d.space()
	return f, ok && d.i == len(d.b)
}

type decoder struct {
	b []byte
	s string // b as a string
	i int
	// entriesCap is how many entries the file seems to have; hosts backs the entries' Hosts.
	entriesCap int
	hosts      []string
}

func (d *decoder) space() {
	for d.i < len(d.b) && (d.b[d.i] == ' ' || d.b[d.i] == '\t' || d.b[d.i] == '\n' || d.b[d.i] == '\r') {
		d.i++
	}
}

// next skips white space and consumes c if it comes next.
func (d *decoder) next(c byte) bool {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// null consumes a null if one comes next.
func (d *decoder) null() bool {
	d.space()
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// object reads an object, calling field for each key with the decoder at its value.
func (d *decoder) object(field func(key string) bool) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	for {
		key, ok := d.str()
		if !ok || !d.next(':') || !field(key) {
			return false
		}
		if d.next('}') {
			return true
		}
		if !d.next(',') {
			return false
		}
	}
}

// fields reads an object whose keys are all among keys, each once, calling read for each
// value that is not null (null leaves the zero value, as in encoding/json). Other keys are
// refused: encoding/json matches keys without regard to case.
func (d *decoder) fields(keys []string, read func(key string) bool) bool {
	seen := 0
	return d.object(func(key string) bool {
		i := slices.Index(keys, key)
		if i < 0 || seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		return d.null() || read(key)
	})
}

// array reads an array, calling elem with the decoder at each element.
func (d *decoder) array(elem func() bool) bool {
	if !d.next('[') {
		return false
	}
	if d.next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if d.next(']') {
			return true
		}
		if !d.next(',') {
			return false
		}
	}
}

func (d *decoder) entries() ([]Entry, bool) {
	out := make([]Entry, 0, d.entriesCap) // encoding/json gives [] as empty, not nil
	ok := d.array(func() bool {
		var e Entry
		ok := d.fields([]string{"registry", "hosts", "username", "password", "expiresAt"}, func(key string) (ok bool) {
			switch key {
			case "registry":
				e.Registry, ok = d.str()
			case "hosts":
				e.Hosts, ok = d.strings()
			case "username":
				e.Username, ok = d.str()
			case "password":
				e.Password, ok = d.str()
			default:
				ok = d.time(&e.ExpiresAt)
			}
			return ok
		})
		out = append(out, e)
		return ok
	})
	return out, ok
}

func (d *decoder) strings() ([]string, bool) {
	start := len(d.hosts)
	ok := d.array(func() bool {
		s, ok := d.str()
		d.hosts = append(d.hosts, s)
		return ok
	})
	if len(d.hosts) == start {
		return []string{}, ok // empty, not nil, as encoding/json gives []
	}
	// Capped, so that the next entry's hosts never overwrite these.
	return d.hosts[start:len(d.hosts):len(d.hosts)], ok
}

// smallInt reads a non-negative integer of at most 9 digits, in JSON's grammar.
func (d *decoder) smallInt() (int, bool) {
	d.space()
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	digits := d.b[start:d.i]
	if len(digits) == 0 || len(digits) > 9 || len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return 0, false
	}
	v, err := strconv.Atoi(string(digits))
	return v, err == nil
}

// time reads a string with time.Time's own UnmarshalJSON, which encoding/json calls with the
// literal as written: no escapes are undone, so a literal with one is left to encoding/json.
func (d *decoder) time(t *time.Time) bool {
	d.space()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return false
	}
	for end := d.i + 1; end < len(d.b); end++ {
		switch c := d.b[end]; {
		case c == '"':
			lit := d.b[d.i : end+1]
			d.i = end + 1
			return t.UnmarshalJSON(lit) == nil
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return false
		}
	}
	return false
}

// str reads a string literal.
func (d *decoder) str() (string, bool) {
	d.space()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return "", false
	}
	d.i++
	var buf []byte // only when there are escapes
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			run := d.b[start:d.i]
			d.i++
			if !utf8.Valid(run) {
				return "", false // encoding/json would replace the bad bytes
			}
			if buf == nil {
				return d.s[start : d.i-1], true
			}
			return string(append(buf, run...)), true
		case c < 0x20:
			return "", false // not valid JSON
		case c == '\\':
			run := d.b[start:d.i]
			if !utf8.Valid(run) {
				return "", false
			}
			buf = append(buf, run...)
			r, n, ok := unescape(d.b[d.i:])
			if !ok {
				return "", false
			}
			buf = utf8.AppendRune(buf, r)
			d.i += n
			start = d.i
		default:
			d.i++
		}
	}
	return "", false
}

// unescape reads one escape sequence at the start of b: the rune and the bytes it took.
func unescape(b []byte) (rune, int, bool) {
	if len(b) < 2 {
		return 0, 0, false
	}
	switch b[1] {
	case '"', '\\', '/':
		return rune(b[1]), 2, true
	case 'b':
		return '\b', 2, true
	case 'f':
		return '\f', 2, true
	case 'n':
		return '\n', 2, true
	case 'r':
		return '\r', 2, true
	case 't':
		return '\t', 2, true
	case 'u':
		if len(b) < 6 {
			return 0, 0, false
		}
		v, err := strconv.ParseUint(string(b[2:6]), 16, 16)
		if err != nil || utf16.IsSurrogate(rune(v)) {
			return 0, 0, false // surrogates, paired or not, are encoding/json's to judge
		}
		return rune(v), 6, true
	}
	return 0, 0, false
}
