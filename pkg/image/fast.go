package image

import "strings"

// parseFast parses the common image forms without the reference library's regular
// expressions, which cost microseconds per image on the webhook's hot path. It answers only when
// it is sure: anything unusual (a digest, an IPv6 host, a grammar error) makes it return false,
// and Parse then asks the library, which also words the errors. FuzzParseFastAgrees checks that
// every answer it gives is the library's.
func parseFast(s string) (Reference, bool) {
	if len(s) == 0 || len(s) > 255 {
		return Reference{}, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '/' || c == ':' || c == '-' || c == '_' || c >= 'A' && c <= 'Z') {
			return Reference{}, false
		}
	}
	if len(s) == 64 {
		return Reference{}, false // may be a bare image ID, which the library refuses
	}
	var domain, remainder string
	first, rest, hasSlash := strings.Cut(s, "/")
	switch {
	case !hasSlash:
		domain, remainder = DockerHub, s
	case first == "localhost", strings.ContainsAny(first, ".:"), strings.ToLower(first) != first:
		domain, remainder = first, rest
	default:
		domain, remainder = DockerHub, s
	}
	remote, tag, hasTag := strings.Cut(remainder, ":")
	if hasTag && !fastTag(tag) {
		return Reference{}, false
	}
	if !fastDomain(domain) || !fastRemote(remote) {
		return Reference{}, false
	}
	if domain == "index.docker.io" {
		domain = DockerHub
	}
	if domain == DockerHub && !strings.Contains(remote, "/") {
		remote = "library/" + remote
	}
	if len(domain)+1+len(remote) > 255 {
		return Reference{}, false
	}
	return Reference{Host: domain, Path: remote, Tag: tag}, true
}

// fastDomain checks host[:port] with each dot-separated label alphanumeric with inner dashes.
func fastDomain(d string) bool {
	host, port, hasPort := strings.Cut(d, ":")
	if hasPort {
		if port == "" {
			return false
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return false
			}
		}
	}
	for l := range strings.SplitSeq(host, ".") {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// fastRemote checks path components: lower-case alphanumerics joined by '.', '_', '__' or dashes.
func fastRemote(r string) bool {
	for comp := range strings.SplitSeq(r, "/") {
		if comp == "" || !isAlnum(comp[0]) || !isAlnum(comp[len(comp)-1]) {
			return false
		}
		for i := 1; i < len(comp); i++ {
			c := comp[i]
			switch {
			case isAlnum(c), c == '-':
			case c == '.' || c == '_':
				// One '.', one '_' or exactly "__", always between alphanumerics.
				if c == '_' && comp[i+1] == '_' {
					i++
				}
				if !isAlnum(comp[i+1]) {
					return false
				}
			default:
				return false
			}
		}
		// Dashes may run, but never next to '.' or '_' (checked above for what follows them).
		if strings.Contains(comp, "-.") || strings.Contains(comp, "-_") {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// fastTag checks [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func fastTag(t string) bool {
	if t == "" || len(t) > 128 || t[0] == '.' || t[0] == '-' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
