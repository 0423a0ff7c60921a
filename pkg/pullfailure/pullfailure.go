// Package pullfailure classifies image pull failures from the messages the kubelet reports (pod
// container statuses and Failed events), which carry the container runtime's error text.
package pullfailure

import (
	"regexp"
	"strings"
)

// Reason is a class of pull failure; the set is closed (it is a metric label).
type Reason string

const (
	Auth        Reason = "auth"
	NotFound    Reason = "not_found"
	RateLimited Reason = "rate_limited"
	TLS         Reason = "tls"
	Network     Reason = "network"
	Other       Reason = "other"
)

// Reasons lists every reason, for initializing metrics.
var Reasons = []Reason{Auth, NotFound, RateLimited, TLS, Network, Other}

// Checked in order: a message can match several (a 403 that says "denied" is auth; a TLS
// handshake that timed out is tls).
var rules = []struct {
	reason Reason
	re     *regexp.Regexp
}{
	// 429 first: Docker Hub's "toomanyrequests" comes with a 429 and sometimes "denied".
	{RateLimited, regexp.MustCompile(`(?i)\b429\b|toomanyrequests|too many requests|rate limit`)},
	{Auth, regexp.MustCompile(`(?i)\b401\b|\b403\b|unauthorized|authentication required|authorization failed|access denied|\bdenied\b|forbidden|no basic auth credentials|authorization token has expired|token has expired|invalid username/password|incorrect username or password`)},
	{NotFound, regexp.MustCompile(`(?i)code = notfound|: not found\b|manifest unknown|name unknown|\b404\b|repository does not exist|not found: manifest`)},
	{TLS, regexp.MustCompile(`(?i)x509:|tls:|certificate|server gave http response to https client|first record does not look like a tls handshake`)},
	{Network, regexp.MustCompile(`(?i)dial tcp|connection refused|no such host|i/o timeout|network is unreachable|connection reset|context deadline exceeded|no route to host|eof\b|temporary failure in name resolution|server misbehaving`)},
}

// Classify returns the reason of a pull failure message.
func Classify(message string) Reason {
	m := detail(message)
	for _, r := range rules {
		if r.re.MatchString(m) {
			return r.reason
		}
	}
	return Other
}

// detail drops the kubelet's prefix, which quotes the image: an image named "denied/app" must
// not make every failure an auth failure.
func detail(message string) string {
	for _, p := range []string{"Failed to pull image ", "Back-off pulling image "} {
		if rest, ok := strings.CutPrefix(message, p); ok {
			if i := strings.Index(rest, "\": "); i >= 0 {
				message = rest[i+3:]
			}
		}
	}
	// containerd repeats the image, quoted ("failed to resolve reference "X"") and not
	// ("X: not found"): take it out so image names never decide the class.
	if m := imageRef.FindStringSubmatch(message); m != nil && m[1] != "" {
		message = strings.ReplaceAll(message, m[1], "IMAGE")
	}
	return quoted.ReplaceAllString(message, `"Q"`)
}

var (
	imageRef = regexp.MustCompile(`(?:image|reference) "([^"]+)"`)
	quoted   = regexp.MustCompile(`"[^"]*"`)
)
