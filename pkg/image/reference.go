// Package image parses container image references the way the kubelet and containerd do.
package image

import (
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// DockerHub is the canonical host of Docker Hub images, as the kubelet names it when it
// normalises "nginx" to "docker.io/library/nginx".
const DockerHub = "docker.io"

// dockerHubAliases are the other names users write for Docker Hub.
var dockerHubAliases = map[string]bool{
	"index.docker.io":      true,
	"registry-1.docker.io": true,
}

// Reference is a parsed, normalised image reference.
type Reference struct {
	// Host is the registry host, with its port if the image names one ("localhost:5000").
	Host string
	// Path is the repository path within the registry ("library/nginx").
	Path string
	// Tag is empty when the image names none; the runtime then pulls "latest".
	Tag string
	// Digest is empty when the image names none.
	Digest string
}

// Repository is what the kubelet matches credentials against: "host/path", no tag or digest.
func (r Reference) Repository() string { return r.Host + "/" + r.Path }

// String gives the fully qualified reference.
func (r Reference) String() string {
	s := r.Repository()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Parse parses an image as written in a pod spec. Docker Hub short forms are expanded
// ("nginx" → docker.io/library/nginx) and Docker Hub aliases folded into docker.io.
func Parse(s string) (Reference, error) {
	if s == "" {
		return Reference{}, errors.New("invalid image reference: empty")
	}
	if strings.TrimSpace(s) != s {
		return Reference{}, fmt.Errorf("invalid image reference %q: leading or trailing white space", s)
	}
	if ref, ok := parseFast(s); ok {
		return foldDockerHub(ref), nil
	}
	return parseSlow(s)
}

// parseSlow parses with the reference library, the authority on the grammar.
func parseSlow(s string) (Reference, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Reference{}, fmt.Errorf("invalid image reference %q: %s", s, explain(s, err))
	}
	ref := Reference{Host: reference.Domain(named), Path: reference.Path(named)}
	if t, ok := named.(reference.Tagged); ok {
		ref.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		ref.Digest = d.Digest().String()
	}
	return foldDockerHub(ref), nil
}

// foldDockerHub folds Docker Hub's other names into docker.io.
func foldDockerHub(ref Reference) Reference {
	if dockerHubAliases[ref.Host] {
		ref.Host = DockerHub
		if !strings.Contains(ref.Path, "/") {
			ref.Path = "library/" + ref.Path
		}
	}
	return ref
}

// explain turns the reference library's terse errors into ones that say what is wrong.
func explain(s string, err error) string {
	switch {
	case errors.Is(err, reference.ErrNameContainsUppercase):
		return "repository name must be lowercase"
	case errors.Is(err, reference.ErrNameTooLong):
		return fmt.Sprintf("repository name longer than %d characters", reference.RepositoryNameTotalLengthMax)
	case errors.Is(err, reference.ErrDigestInvalidFormat):
		return "digest is not of the form algorithm:hex"
	case errors.Is(err, reference.ErrNameEmpty):
		return "repository name is empty"
	case errors.Is(err, reference.ErrTagInvalidFormat):
		return "tag must be 1 to 128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'"
	}
	// ErrReferenceInvalidFormat covers everything else; point at the usual culprit.
	if _, lerr := reference.ParseNormalizedNamed(lowerRepository(s)); lerr == nil {
		return "repository name must be lowercase"
	}
	name := s
	if i := strings.IndexByte(name, '@'); i >= 0 {
		if _, derr := digestCheck(name[i+1:]); derr != nil {
			return derr.Error()
		}
		name = name[:i]
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		tag := name[i+1:]
		if !validTag(tag) {
			return fmt.Sprintf("bad tag %q: a tag is 1 to 128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'", tag)
		}
	}
	return "not a valid image reference (expected [host[:port]/]path[:tag][@algorithm:digest])"
}

func digestCheck(d string) (string, error) {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || alg == "" || hex == "" {
		return "", fmt.Errorf("bad digest %q: expected algorithm:hex", d)
	}
	return d, nil
}

func validTag(t string) bool {
	if t == "" || len(t) > 128 || t[0] == '.' || t[0] == '-' {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// lowerRepository lower-cases the repository part of an image (not the host, which may
// have upper case, nor the tag or digest).
func lowerRepository(s string) string {
	end := len(s)
	if i := strings.IndexByte(s, '@'); i >= 0 {
		end = i
	}
	if i := strings.LastIndexByte(s[:end], ':'); i > strings.LastIndexByte(s[:end], '/') {
		end = i
	}
	start := 0
	if i := strings.IndexByte(s, '/'); i >= 0 && i < end && strings.ContainsAny(s[:i], ".:") {
		start = i
	}
	return s[:start] + strings.ToLower(s[start:end]) + s[end:]
}
