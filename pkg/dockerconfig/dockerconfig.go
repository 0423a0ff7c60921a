// Package dockerconfig reads and writes docker client configs (config.json, and the
// .dockerconfigjson of kubernetes.io/dockerconfigjson Secrets) as `docker login` writes them.
//
// Errors name the registry key at fault and never quote a credential.
package dockerconfig

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Config is a docker client config. Only the fields pullpass uses are kept; Parse keeps the
// rest of a file (credsStore, proxies, ...) so Merge can write it back untouched.
type Config struct {
	Auths map[string]AuthEntry `json:"auths"`

	extra map[string]json.RawMessage
}

// AuthEntry holds one registry's credentials. After Parse, Username and Password are filled
// in from Auth when the file had only that.
type AuthEntry struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	Email         string `json:"email,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// Redacted is what an AuthEntry prints as, so a stray %v never leaks a secret.
func (e AuthEntry) String() string {
	return fmt.Sprintf("{username:%q password:<redacted>}", e.Username)
}

// GoString redacts too.
func (e AuthEntry) GoString() string { return e.String() }

// SyntaxError reports input that is not a JSON object of the expected shape. It carries a byte
// offset, never the input around it, since that could be a credential.
type SyntaxError struct {
	Offset int64
	Reason string
}

func (e *SyntaxError) Error() string {
	if e.Offset > 0 {
		return fmt.Sprintf("docker config: %s (at byte %d)", e.Reason, e.Offset)
	}
	return "docker config: " + e.Reason
}

// EntryError reports a bad entry, naming its registry key.
type EntryError struct {
	Key    string
	Reason string
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("docker config: entry %q: %s", e.Key, e.Reason)
}

// Parse reads a config.json or .dockerconfigjson. The legacy .dockercfg form (a bare map of
// registry to entry, with no "auths") is accepted too, as the kubelet accepts it.
func Parse(data []byte) (*Config, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, jsonError(err)
	}
	if top == nil {
		return nil, &SyntaxError{Reason: "not a JSON object"}
	}
	raw, ok := top["auths"]
	var entries map[string]json.RawMessage
	if ok {
		if err := json.Unmarshal(raw, &entries); err != nil {
			return nil, &SyntaxError{Reason: `"auths" is not an object of registry entries`}
		}
		delete(top, "auths")
	} else if looksLegacy(top) {
		entries, top = top, nil
	}
	cfg := &Config{Auths: make(map[string]AuthEntry, len(entries)), extra: top}
	for key, raw := range entries {
		var e AuthEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, &EntryError{Key: key, Reason: "not an object with string fields"}
		}
		if err := e.decodeAuth(key); err != nil {
			return nil, err
		}
		cfg.Auths[key] = e
	}
	return cfg, nil
}

// looksLegacy reports whether a top-level object is a .dockercfg: every value an object.
func looksLegacy(top map[string]json.RawMessage) bool {
	if len(top) == 0 {
		return false
	}
	for _, v := range top {
		if t := bytes.TrimSpace(v); len(t) == 0 || t[0] != '{' {
			return false
		}
	}
	return true
}

func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return &SyntaxError{Offset: se.Offset, Reason: "not valid JSON"}
	case errors.As(err, &te):
		return &SyntaxError{Offset: te.Offset, Reason: "not a JSON object"}
	default:
		return &SyntaxError{Reason: "not valid JSON"}
	}
}

// decodeAuth fills Username and Password from Auth, checking that the two agree when both are set.
func (e *AuthEntry) decodeAuth(key string) error {
	if e.Auth == "" {
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(e.Auth)
	if err != nil {
		// docker itself writes padded base64, but some tools drop the padding.
		if raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(e.Auth, "=")); err != nil {
			return &EntryError{Key: key, Reason: `"auth" is not valid base64`}
		}
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return &EntryError{Key: key, Reason: `"auth" does not decode to username:password (no colon)`}
	}
	if e.Username != "" && e.Username != user || e.Password != "" && e.Password != pass {
		return &EntryError{Key: key, Reason: `"auth" disagrees with "username"/"password"`}
	}
	e.Username, e.Password = user, pass
	return nil
}

// Marshal writes the config as `docker login` does, with both "auth" and username/password
// set for every entry that has a username, so every client reads it. Keys are sorted.
func (c *Config) Marshal() ([]byte, error) {
	out := make(map[string]any, len(c.extra)+1)
	for k, v := range c.extra {
		out[k] = v
	}
	auths := make(map[string]AuthEntry, len(c.Auths))
	for k, e := range c.Auths {
		// A username with a colon cannot be written as "auth" (it would read back split in
		// the wrong place); username/password alone are still read by every client.
		e.Auth = ""
		if (e.Username != "" || e.Password != "") && !strings.Contains(e.Username, ":") {
			e.Auth = base64.StdEncoding.EncodeToString([]byte(e.Username + ":" + e.Password))
			// JSON strings cannot carry bytes that are not UTF-8; "auth" carries them exactly.
			if !utf8.ValidString(e.Username) || !utf8.ValidString(e.Password) {
				e.Username, e.Password = "", ""
			}
		}
		auths[k] = e
	}
	out["auths"] = auths
	return json.Marshal(out) // encoding/json sorts map keys
}

// NormalizeKey turns a config key into the registry host (with port and path) it stands for:
// "https://index.docker.io/v1/" → "docker.io", "https://ghcr.io" → "ghcr.io",
// "registry.example.com:5000/team" stays as it is.
func NormalizeKey(key string) string {
	k := strings.TrimSpace(key)
	if i := strings.Index(k, "://"); i >= 0 {
		k = k[i+3:]
	}
	k = strings.TrimSuffix(k, "/")
	host, path, _ := strings.Cut(k, "/")
	switch host {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		host = "docker.io"
		if path == "v1" || path == "v2" {
			path = ""
		}
	default:
		// docker login against a v1/v2 endpoint writes the API version as a path.
		if path == "v1" || path == "v2" {
			path = ""
		}
	}
	if path != "" {
		return host + "/" + path
	}
	return host
}

// Lookup returns the entry for a registry host ("ghcr.io", "localhost:5443", "docker.io"),
// whatever form its key was written in.
func (c *Config) Lookup(host string) (AuthEntry, bool) {
	want := NormalizeKey(host)
	for _, k := range c.keys() {
		if NormalizeKey(k) == want {
			return c.Auths[k], true
		}
	}
	return AuthEntry{}, false
}

// Hosts returns the normalized hosts of every entry, sorted.
func (c *Config) Hosts() []string {
	seen := map[string]bool{}
	var out []string
	for k := range c.Auths {
		if h := NormalizeKey(k); !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out
}

func (c *Config) keys() []string {
	keys := make([]string, 0, len(c.Auths))
	for k := range c.Auths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ForHost builds a config holding one registry's credentials, the content pullpass writes to
// the pull secrets it manages.
func ForHost(host, username, password string) *Config {
	return &Config{Auths: map[string]AuthEntry{host: {Username: username, Password: password}}}
}

// HasExtra reports whether the file had fields besides "auths" (kept by Marshal).
func (c *Config) HasExtra() bool { return len(c.extra) > 0 }
