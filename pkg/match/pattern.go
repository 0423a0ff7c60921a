// Package match decides which registry serves an image, with the kubelet's matchImages rules.
//
// A pattern is a host, an optional port and an optional path, like "*.dkr.ecr.*.amazonaws.com",
// "registry.example.com:5000" or "ghcr.io/my-org". It matches an image repository when
//   - the hosts have the same number of dot-separated labels and each pattern label is a glob
//     whose '*' stands for any run of characters, matching the image's label in the same place;
//   - the ports are equal (no port matches only no port; '*' never matches a port);
//   - the pattern's path, if any, is a string prefix of the image's path.
//
// These are the rules of the kubelet's credentialprovider.URLsMatch, which the kubelet applies
// both to credential provider plugins' matchImages and to pull secrets' registry keys. The kubelet
// reads patterns as URLs, so '?' starts a query and '[' an IPv6 literal there: the only glob that
// works in a kubelet is '*', and ParsePattern refuses the others rather than let them silently
// mean something else.
//
// A pattern may be written as people paste registry addresses, and as the kubelet and docker read
// docker config keys: "https://ghcr.io", "ghcr.io/", "https://index.docker.io/v1/". ParsePattern
// reads it in its canonical form, which String returns and which is what pullpass writes where
// the kubelet reads it (pull secret keys, the node cache, matchImages): no scheme, no "/v1/" or
// "/v2/" before the path, no lone trailing "/", and Docker Hub's other names (index.docker.io,
// registry-1.docker.io) as docker.io, the host the kubelet gives Docker Hub images.
package match

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
)

// DockerHub is Docker Hub's canonical host, the one the kubelet names images by ("nginx" is
// docker.io/library/nginx).
const DockerHub = "docker.io"

// dockerHubAliases are Docker Hub's other names, read as docker.io.
var dockerHubAliases = map[string]bool{"index.docker.io": true, "registry-1.docker.io": true}

// Pattern is a parsed host pattern.
type Pattern struct {
	raw    string // canonical
	host   string
	labels []string // host split on '.'
	port   string
	path   string // with its leading '/', or ""
	// literal is true when no label holds a glob character.
	literal bool
	// wildcards counts glob characters, for precedence.
	wildcards int
}

// ParsePattern parses and validates a host pattern. It accepts what the kubelet accepts in
// matchImages, less what can never match an image (a query, a user or an empty label), and the
// forms of canonical below.
func ParsePattern(written string) (Pattern, error) {
	if written == "" {
		return Pattern{}, errors.New("invalid host pattern: empty")
	}
	s := canonical(written)
	if s == "" || s[0] == '/' {
		return Pattern{}, fmt.Errorf("invalid host pattern %q: no host", written)
	}
	if strings.Contains(s, "://") {
		return Pattern{}, fmt.Errorf("invalid host pattern %q: only an https:// or http:// scheme may come before host[:port][/path]", written)
	}
	p, err := parseCanonical(s)
	if err != nil && s != written {
		// Name what the user wrote, and what it was read as.
		return Pattern{}, fmt.Errorf("%w (written %q)", err, written)
	}
	return p, err
}

// canonical reads a pattern as the kubelet reads a docker config key (keyring.go, Add): without
// an http(s):// scheme, with "/v1/" or "/v2/" cut from the front of the path and a path of a lone
// "/" dropped; and with Docker Hub's other names as docker.io.
func canonical(s string) string {
	if rest, ok := strings.CutPrefix(s, "https://"); ok {
		s = rest
	} else if rest, ok := strings.CutPrefix(s, "http://"); ok {
		s = rest
	}
	host, path, hasPath := strings.Cut(s, "/")
	if hasPath {
		path = "/" + path
		if strings.HasPrefix(path, "/v1/") || strings.HasPrefix(path, "/v2/") {
			path = path[3:]
		}
		if path == "/" {
			path = ""
		}
	}
	if dockerHubAliases[host] {
		host = DockerHub
	}
	return host + path
}

// Canonical returns a pattern's canonical form, or why it is not a pattern.
func Canonical(s string) (string, error) {
	p, err := ParsePattern(s)
	if err != nil {
		return "", err
	}
	return p.raw, nil
}

func parseCanonical(s string) (Pattern, error) {
	if strings.ContainsAny(s, "?[]") {
		return Pattern{}, fmt.Errorf("invalid host pattern %q: only '*' is a glob for the kubelet ('?' and '[' are read as URL syntax)", s)
	}
	if strings.ContainsAny(s, " \t\r\n#@\\") {
		return Pattern{}, fmt.Errorf("invalid host pattern %q: white space, '#', '@' and '\\' are not allowed", s)
	}
	if _, path, ok := strings.Cut(s, "/"); ok && !validPath(path) {
		return Pattern{}, fmt.Errorf("invalid host pattern %q: the path may hold only lower-case letters, digits, '.', '_', '-' and '/', as image paths do", s)
	}
	if hostport, _, _ := strings.Cut(s, "/"); strings.HasSuffix(hostport, ":") {
		return Pattern{}, fmt.Errorf("invalid host pattern %q: empty port", s)
	}
	u, err := url.Parse("https://" + s)
	if err != nil {
		return Pattern{}, fmt.Errorf("invalid host pattern %q: %w", s, errors.Unwrap(err))
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return Pattern{}, fmt.Errorf("invalid host pattern %q: only host[:port][/path] is allowed", s)
	}
	p := Pattern{raw: s, path: u.Path, literal: true}
	p.host, p.port = splitHostPort(u.Host)
	p.labels = strings.Split(p.host, ".")
	host := p.host
	if host == "" {
		return Pattern{}, fmt.Errorf("invalid host pattern %q: no host", s)
	}
	if p.port != "" {
		for _, c := range p.port {
			if c < '0' || c > '9' {
				return Pattern{}, fmt.Errorf("invalid host pattern %q: port %q must be digits (the kubelet never globs ports)", s, p.port)
			}
		}
	}
	for _, l := range p.labels {
		if l == "" {
			return Pattern{}, fmt.Errorf("invalid host pattern %q: empty label in host %q", s, host)
		}
		if !validLabel(l) {
			return Pattern{}, fmt.Errorf("invalid host pattern %q: label %q may hold only letters, digits, '-', '_' and '*'", s, l)
		}
		if n := strings.Count(l, "*"); n > 0 {
			p.literal = false
			p.wildcards += n
		}
	}
	return p, nil
}

func validPath(p string) bool {
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/') {
			return false
		}
	}
	return true
}

func validLabel(l string) bool {
	for _, c := range l {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '*') {
			return false
		}
	}
	return true
}

// splitHostPort splits a URL host as the kubelet does: net.SplitHostPort, and on its error the
// whole as the host with no port. Written out (FuzzSplitHostPort checks it against the net
// package) because net.SplitHostPort allocates its error for every host without a port, and
// because importing net makes the credential provider plugin a dynamically linked binary when
// cgo is on, which costs every exec the dynamic loader.
func splitHostPort(hostport string) (host, port string) {
	j, k := 0, 0
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return hostport, ""
	}
	if hostport[0] == '[' {
		end := strings.IndexByte(hostport, ']')
		if end < 0 || end+1 != i {
			return hostport, ""
		}
		host = hostport[1:end]
		j, k = 1, end+1
	} else {
		host = hostport[:i]
		if strings.IndexByte(host, ':') >= 0 {
			return hostport, ""
		}
	}
	if strings.IndexByte(hostport[j:], '[') >= 0 || strings.IndexByte(hostport[k:], ']') >= 0 {
		return hostport, ""
	}
	return host, hostport[i+1:]
}

// String returns the pattern in its canonical form.
func (p Pattern) String() string { return p.raw }

// Literal reports whether the pattern's host has no glob.
func (p Pattern) Literal() bool { return p.literal }

// Port returns the pattern's port, or "".
func (p Pattern) Port() string { return p.port }

// Path returns the pattern's path prefix, or "".
func (p Pattern) Path() string { return p.path }

// Covers reports whether p matches every repository q matches: credentials meant for p may be
// given for q. A glob label of q is covered only by "*" or the same glob.
func (p Pattern) Covers(q Pattern) bool {
	if p.port != q.port || len(p.labels) != len(q.labels) || !strings.HasPrefix(q.path, p.path) {
		return false
	}
	for i, l := range p.labels {
		ql := q.labels[i]
		if l == ql || l == "*" {
			continue
		}
		if ok, _ := path.Match(l, ql); !ok || strings.Contains(ql, "*") {
			return false
		}
	}
	return true
}

// Matches reports whether the pattern matches an image repository ("host[:port]/path").
func (p Pattern) Matches(repository string) bool {
	t, ok := parseTarget(repository)
	return ok && p.matches(t)
}

// target is an image repository split the way patterns are. Its strings are parts of the
// repository wherever they can be: a lookup runs for every image of every pod.
type target struct {
	hostport string // host, and ":port" if it has one: the exact-host index key
	host     string
	port     string
	path     string
	labels   int // dot-separated labels in host
}

func parseTarget(repository string) (target, bool) {
	var hostport, path string
	if plain(repository) && plainHostPort(repository) {
		// Image repositories hold no scheme, query, escape or user, so a split on the first '/'
		// is what url.Parse would give; it is done by hand because it runs for every image.
		hostport, _, _ = strings.Cut(repository, "/")
		path = repository[len(hostport):]
	} else {
		// Anything else is read exactly as the kubelet reads it.
		u, err := url.Parse("https://" + repository)
		if err != nil {
			return target{}, false
		}
		hostport, path = u.Host, u.Path
	}
	// An empty host is one empty label, as for the kubelet: "*" matches it.
	t := target{path: path}
	t.host, t.port = splitHostPort(hostport)
	t.labels = strings.Count(t.host, ".") + 1
	// The index key is rebuilt from the parts, as a pattern's is: "0:" and "0" are one host.
	switch {
	case t.port == "":
		t.hostport = t.host
	case len(hostport) == len(t.host)+1+len(t.port) && hostport[:len(t.host)] == t.host && hostport[len(t.host)] == ':':
		t.hostport = hostport
	default:
		t.hostport = t.host + ":" + t.port
	}
	return t, true
}

// eachLabel calls f with each dot-separated label of host and its position, until f returns
// false; strings.Split would allocate.
func eachLabel(host string, f func(i int, label string) bool) {
	for i := 0; ; i++ {
		l, rest, more := strings.Cut(host, ".")
		if !f(i, l) || !more {
			return
		}
		host = rest
	}
}

// plainHostPort reports whether the host part has at most one ':', followed by digits only.
func plainHostPort(repository string) bool {
	hostport, _, _ := strings.Cut(repository, "/")
	i := strings.IndexByte(hostport, ':')
	if i < 0 {
		return true
	}
	for _, c := range hostport[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// plain reports whether s holds only characters that url.Parse leaves as they are.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':' || c == '*' || c == '/') {
			return false
		}
	}
	return true
}

func (p Pattern) matches(t target) bool {
	return strings.HasPrefix(t.path, p.path) && p.matchesHost(t)
}
