// Package pullthrough routes images through pull-through caches: a Registry with
// spec.pullThrough is a cache of an upstream registry (an ECR pull-through cache rule, a Harbor
// proxy project, GitLab's dependency proxy, a distribution registry in proxy mode), and an image
// of that upstream is pulled from the cache under the cache's own name.
//
// The rewrite keeps everything but the registry: "nginx:1.27" (docker.io/library/nginx:1.27) with
// a cache at HOST under PREFIX becomes HOST/PREFIX/library/nginx:1.27, tag and digest as written.
// Official Docker Hub images keep their "library/" component, as ECR, Harbor and GitLab expect.
package pullthrough

import (
	"strings"

	"github.com/pullpass/pullpass/pkg/image"
)

// maxName is the longest repository name (host/path) the reference grammar accepts; a rewrite
// that would be longer is not made.
const maxName = 255

// Target is where a cache serves an upstream's repositories: Host (with its port, if any) and
// Prefix, the path under it ("" for the root).
type Target struct {
	Host   string
	Prefix string
}

// Repository is the cache's repository for an upstream path: HOST/PREFIX/PATH.
func (t Target) Repository(path string) string {
	if t.Prefix == "" {
		return t.Host + "/" + path
	}
	return t.Host + "/" + t.Prefix + "/" + path
}

// Rewrite returns the cache's name for an image of the upstream: the repository under the
// cache, the tag and digest as they were. It returns false when the name would be longer than
// the reference grammar allows; the image is then left as it is.
func (t Target) Rewrite(ref image.Reference) (string, bool) {
	n := len(t.Host) + 1 + len(ref.Path)
	if t.Prefix != "" {
		n += len(t.Prefix) + 1
	}
	if n > maxName {
		return "", false
	}
	var b strings.Builder
	b.Grow(n + 1 + len(ref.Tag) + 1 + len(ref.Digest))
	b.WriteString(t.Host)
	b.WriteByte('/')
	if t.Prefix != "" {
		b.WriteString(t.Prefix)
		b.WriteByte('/')
	}
	b.WriteString(ref.Path)
	if ref.Tag != "" {
		b.WriteByte(':')
		b.WriteString(ref.Tag)
	}
	if ref.Digest != "" {
		b.WriteByte('@')
		b.WriteString(ref.Digest)
	}
	return b.String(), true
}
