// Package nodesecret is the format of the Secret through which the controller hands the node
// agents what they serve (webhook/nodecreds writes it, agent/nodecreds reads it): one key per
// node-served registry, its name, holding the registry's spec and its resolved static credentials
// or the AWS keys its agent fetches ECR tokens with. The agents read nothing else: no Registry
// informer on every node, decoding each status write of the controller (one per registry and
// resync, to every node). It lives in pullpass's namespace under fixed names
// (Name, then Name-1 ... when one Secret would pass the API server's size limit), so the agents'
// Role names exactly those and nothing else: no Registry can give the nodes another Secret.
package nodesecret

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/secrets"
)

// Name is the first shard's name; the chart's Role names it and its MaxShards-1 followers.
const Name = "pullpass-node-credentials"

// MaxShards is how many Secrets the entries may be spread over. At the default shard budget
// (webhook/nodecreds, 768 KiB) that is 3 MiB: about 10,000 registries of one host with a username
// and a token (an entry of about 310 bytes, 140 of them the spec), or 1,300 with a GCR JSON key
// each.
const MaxShards = 4

// FormatKey is the key of the first shard that says which format its entries are in (no
// Registry is named with an underscore): an agent that finds it missing reads the Secret as an
// older controller's, not as "no registries", even when it holds no entry. FormatVersion is
// this one's: entries with the registries' specs.
const (
	FormatKey     = "_format"
	FormatVersion = "2"
)

// RoleNodeCredentials is the pullpass.io/role label value of the node Secrets.
const RoleNodeCredentials = "node-credentials"

// ShardName is the name of shard i (0: Name).
func ShardName(i int) string {
	if i == 0 {
		return Name
	}
	return Name + "-" + strconv.Itoa(i)
}

// ShardNames are every shard's name, in order.
func ShardNames() []string {
	out := make([]string, MaxShards)
	for i := range out {
		out[i] = ShardName(i)
	}
	return out
}

// Labels are the node Secrets' labels: pullpass's own, which no Registry may name as a source.
func Labels() map[string]string {
	return map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRole: RoleNodeCredentials}
}

// Entry is one registry's part of the node Secret: every node-served registry has one, with no
// credentials when its source gives none (the agent reports it unserved) or when its agents fetch
// ECR tokens with the node's own identity.
type Entry struct {
	// Spec is the Registry's spec at Generation: what the agent serves the credentials for.
	// Entries an older controller wrote have none.
	Spec *v1alpha1.RegistrySpec `json:"spec,omitempty"`
	// Username and Password are the static credentials (secretRef, dockerHub), resolved for the
	// registry's hosts.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// AWS are the keys of an ECR registry's accessKeySecretRef, from Source: the agent fetches
	// its tokens with them.
	AWS *AWSKeys `json:"aws,omitempty"`
	// Source is the Secret these came from, and Version its resourceVersion: it changes
	// whenever the credentials do. Empty: no credentials.
	Source  SourceRef `json:"source"`
	Version string    `json:"version,omitempty"`
	// Generation is the Registry's metadata.generation the entry was resolved for (its hosts
	// choose the credentials of a docker config).
	Generation int64 `json:"generation,omitempty"`
}

// HasCredentials reports whether the entry holds credentials (static ones or AWS keys).
func (e Entry) HasCredentials() bool { return e.Source.Name != "" }

// SourceRef names a source Secret.
type SourceRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// AWSKeys are static AWS keys.
type AWSKeys struct {
	AccessKeyID     string `json:"accessKeyID"`
	SecretAccessKey string `json:"secretAccessKey"`
	SessionToken    string `json:"sessionToken,omitempty"`
}

// String never prints a secret.
func (e Entry) String() string {
	return fmt.Sprintf("{spec:%t username:%q password:<redacted> aws:%t source:%s/%s version:%q}", e.Spec != nil, e.Username, e.AWS != nil, e.Source.Namespace, e.Source.Name, e.Version)
}

// Encode is an entry's value in the Secret.
func Encode(e Entry) []byte {
	b, _ := json.Marshal(e) // strings, and a spec the API server decoded: it cannot fail
	return b
}

// Decode reads an entry's value. Its error never quotes the value.
func Decode(registry string, b []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return Entry{}, invalid(registry)
	}
	return e, nil
}

// DecodeCredentials reads an entry's value but its spec (Spec is nil): what an agent's sync asks
// of each registry, whose spec it has already (DecodeSpec). The spec is skipped, not decoded.
func DecodeCredentials(registry string, b []byte) (Entry, error) {
	type plain Entry // Entry's fields, under which "spec" is shadowed
	var v struct {
		plain
		Spec skipped `json:"spec"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return Entry{}, invalid(registry)
	}
	return Entry(v.plain), nil
}

// DecodeSpec reads an entry's spec (nil: an older controller's entry) and generation, and
// skips the rest (no credential is copied out).
func DecodeSpec(registry string, b []byte) (*v1alpha1.RegistrySpec, int64, error) {
	var v struct {
		Spec       *v1alpha1.RegistrySpec `json:"spec"`
		Generation int64                  `json:"generation"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, 0, invalid(registry)
	}
	return v.Spec, v.Generation, nil
}

func invalid(registry string) error {
	return fmt.Errorf("node secret entry of registry %s is not valid JSON", registry)
}

// skipped takes a value and keeps nothing of it (encoding/json checked it is JSON).
type skipped struct{}

func (*skipped) UnmarshalJSON([]byte) error { return nil }
