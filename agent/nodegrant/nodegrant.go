// Package nodegrant is the node file of Namespaced registries delivered by the node: each
// registry's credentials and who may have them (namespaces, service accounts), as the node agent
// computed from Registry objects and namespace labels. The plugin, run by the kubelet with the
// pod's service account token, answers from it only for the namespace and service account the
// token proves. It is apart from the Cluster cache (agent/nodecache), which every pod is served
// from with no token, so neither path ever reads the other's credentials.
package nodegrant

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pullpass/pullpass/agent/atomicfile"
)

// Version is the format version; a reader refuses others.
const Version = 1

// File is the grants file.
type File struct {
	Version   int       `json:"version"`
	Grants    []Grant   `json:"grants"`
	WrittenAt time.Time `json:"writtenAt"`
}

// Grant is one registry's credentials and who may have them.
type Grant struct {
	Registry string   `json:"registry"`
	Hosts    []string `json:"hosts"`
	// Username and Password are the credentials the agent resolved; empty when it could not
	// (an ECR registry served only through service accounts' own roles).
	Username  string    `json:"username,omitempty"`
	Password  string    `json:"password,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// AllNamespaces: no namespaceSelector. Otherwise Namespaces lists, sorted, the namespaces
	// the selector selects now.
	AllNamespaces bool     `json:"allNamespaces,omitempty"`
	Namespaces    []string `json:"namespaces,omitempty"`
	// ServiceAccounts restricts the grant when set (spec.serviceAccounts).
	ServiceAccounts *ServiceAccounts `json:"serviceAccounts,omitempty"`
	// ECR is set for an ECR source: a service account annotated with a role gets that role's
	// token, which the agent fetches with the pod's own token.
	ECR *ECR `json:"ecr,omitempty"`
}

// ServiceAccounts are the service accounts a grant allows.
type ServiceAccounts struct {
	Names     []string `json:"names,omitempty"`
	Annotated bool     `json:"annotated,omitempty"`
}

// ECR says how to fetch an ECR token for a role.
type ECR struct {
	Region string `json:"region"`
}

// String never prints the password.
func (g Grant) String() string {
	return fmt.Sprintf("{registry:%s hosts:%v username:%q password:<redacted>}", g.Registry, g.Hosts, g.Username)
}

// Allows reports whether a pod of namespace running as serviceAccount, whose service account
// has the pullpass.io/registries annotation value given, may have g's credentials.
func (g *Grant) Allows(namespace, serviceAccount, annotation string) bool {
	if !g.AllNamespaces {
		if _, found := slices.BinarySearch(g.Namespaces, namespace); !found {
			return false
		}
	}
	sa := g.ServiceAccounts
	if sa == nil {
		return true
	}
	if slices.Contains(sa.Names, serviceAccount) {
		return true
	}
	if sa.Annotated {
		for item := range strings.SplitSeq(annotation, ",") {
			if strings.TrimSpace(item) == g.Registry {
				return true
			}
		}
	}
	return false
}

// Path is the grants file beside the node cache.
func Path(cachePath string) string {
	return filepath.Join(filepath.Dir(cachePath), "namespaced.json")
}

// Write replaces path with f atomically, mode 0600.
func Write(path string, f File) error {
	f.Version = Version
	for i := range f.Grants {
		slices.Sort(f.Grants[i].Namespaces)
	}
	return atomicfile.WriteJSON(path, f, 0o600)
}

// ErrNoFile is returned by Read when the agent has not written the file yet.
var ErrNoFile = errors.New("grants file: not written by the node agent yet")

// Read reads path; errors never quote the content.
func Read(path string) (File, error) {
	var f File
	if err := atomicfile.ReadJSON(path, "grants file", &f); errors.Is(err, os.ErrNotExist) {
		return File{}, ErrNoFile
	} else if err != nil {
		return File{}, err
	}
	if f.Version != Version {
		return File{}, fmt.Errorf("grants file %s: format version %d, this reader knows %d", path, f.Version, Version)
	}
	return f, nil
}
