// Package install puts the credential provider plugin where the kubelet finds it: the binary in
// the kubelet's provider bin dir and an entry for it in the kubelet's CredentialProviderConfig,
// beside whatever other providers are configured there (EKS's ecr-credential-provider, ...).
//
// The kubelet reads that config at start only. So that registries added later need no restart,
// the entry matches every host without a port: one "*" glob per label count ("*", "*.*", ...),
// since a kubelet glob matches exactly one label and never a port. A host with a port can only be
// matched by naming it: those are added when a registry names them, and the kubelet must then
// be restarted, which the installer logs and reports.
package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/pullpass/pullpass/agent/atomicfile"
	"github.com/pullpass/pullpass/agent/nodecache"
)

// DefaultPluginName is the provider's name in the config and the binary's in the bin dir.
const DefaultPluginName = "pullpass-credential-provider"

// DropInName is the file the installer owns when the kubelet's config is a directory.
const DropInName = "pullpass.yaml"

// TokenPluginSuffix names the second provider entry, and its plugin binary
// (cmd/pullpass-credential-provider-sa): the one the kubelet runs with the pod's service account
// token (KEP-4412). A provider entry with
// tokenAttributes is asked per service account and its pulls are recorded per service account
// (KEP-2535), so Cluster registries keep an entry of their own without it: their pulls stay
// node-wide, as the kubelet records any plugin's without a token.
const TokenPluginSuffix = "-sa"

// ServiceAccountAnnotations are the annotation keys the kubelet passes the token plugin: the
// registries a service account opts in to, and the ECR role it brings (pullpass's own, and EKS's
// for compatibility).
var ServiceAccountAnnotations = []string{
	"pullpass.io/registries",
	"pullpass.io/ecr-role-arn",
	"eks.amazonaws.com/ecr-role-arn",
}

// Tokens configures the token plugin's entry.
type Tokens struct {
	// Audience is the token audience the kubelet asks the API server for (nodes must be
	// granted it: RBAC verb request-serviceaccounts-token-audience).
	Audience string
	// CacheDuration is the longest the kubelet keeps an answer for a service account: how long
	// a namespace that lost its label may still be served new pulls (default 10 s).
	CacheDuration time.Duration
}

// Config configures an Installer.
type Config struct {
	// PluginSource is the plugin binary to install (shipped in the agent's image); only
	// InstallPlugin needs it.
	PluginSource string
	// TokenPluginSource is the token entry's plugin binary (cmd/pullpass-credential-provider-sa),
	// installed in token mode (Tokens set) under the entry's name.
	TokenPluginSource string
	// BinDir is the kubelet's --image-credential-provider-bin-dir.
	BinDir string
	// ConfigPath is the kubelet's --image-credential-provider-config: a file (merged) or a
	// directory (a drop-in file of pullpass's own).
	ConfigPath string
	PluginName string
	// CachePath is the node cache the plugin reads.
	CachePath string
	// CacheDuration is the longest the kubelet keeps an answer of the plugin (default 1 min):
	// how long a rotated password may take to reach new pulls.
	CacheDuration time.Duration
	// MatchImages are extra patterns to match (hosts with ports known ahead, e.g.
	// "registry.internal:5000").
	MatchImages []string
	// MaxLabels is how many labels the widest glob has (default 8: ECR hosts in China have 7).
	MaxLabels int
	// Tokens, when set, adds the token plugin's entry (kubelet 1.34+: an older kubelet refuses
	// to start with tokenAttributes in its config).
	Tokens *Tokens
	// FaultUnvalidated writes configs without Validate: only for the e2e test that proves a
	// config the kubelet refuses is rolled back (--fault-unvalidated-config).
	FaultUnvalidated bool
	Logger           *slog.Logger
}

// Installer installs the plugin and keeps its config entry current.
type Installer struct {
	cfg Config

	mu      sync.Mutex
	atStart []byte // our entry as found before the first write (nil: none)
	started bool
	current []byte // our entry as last written
	// running is our entry as the kubelet is known or assumed to run it: as found at start,
	// then as confirmed by a restart. A rollback puts it back.
	running []byte
	// held: a kubelet restart is under way; entries asked for meanwhile wait in want.
	held     bool
	want     []string
	wantSet  bool
	rejected map[string]bool // generations the kubelet did not come back with
}

// New returns an Installer.
func New(cfg Config) (*Installer, error) {
	if cfg.BinDir == "" || cfg.ConfigPath == "" || cfg.CachePath == "" {
		return nil, errors.New("invalid configuration: bin dir, config path and cache path are required")
	}
	if cfg.PluginName == "" {
		cfg.PluginName = DefaultPluginName
	}
	if cfg.CacheDuration == 0 {
		cfg.CacheDuration = time.Minute
	}
	if cfg.MaxLabels == 0 {
		cfg.MaxLabels = 8
	}
	if t := cfg.Tokens; t != nil {
		if t.Audience == "" || strings.ContainsAny(t.Audience, " \t\n") {
			return nil, fmt.Errorf("invalid configuration: token audience %q", t.Audience)
		}
		if t.CacheDuration == 0 {
			t.CacheDuration = 10 * time.Second
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, p := range cfg.MatchImages {
		if strings.TrimSpace(p) == "" || strings.ContainsAny(p, " \t\n") {
			return nil, fmt.Errorf("invalid configuration: match image %q", p)
		}
	}
	return &Installer{cfg: cfg, rejected: readRejected(cfg.CachePath)}, nil
}

// InstallPlugin copies the plugin binaries into the bin dir, atomically, when they differ: the
// Cluster entry's, and in token mode the token entry's.
func (i *Installer) InstallPlugin() error {
	if i.cfg.PluginSource == "" {
		return errors.New("no plugin to install: the plugin source is not set")
	}
	sources := map[string]string{i.cfg.PluginName: i.cfg.PluginSource}
	if i.cfg.Tokens != nil {
		if i.cfg.TokenPluginSource == "" {
			return errors.New("no token plugin to install: the token plugin source is not set")
		}
		sources[i.tokenName()] = i.cfg.TokenPluginSource
	}
	for name, from := range sources {
		src, err := os.ReadFile(from)
		if err != nil {
			return fmt.Errorf("reading the plugin to install: %w", err)
		}
		dst := filepath.Join(i.cfg.BinDir, name)
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, src) {
			continue
		}
		if err := os.MkdirAll(i.cfg.BinDir, 0o755); err != nil {
			return fmt.Errorf("installing the plugin: %w", err)
		}
		if err := atomicfile.Write(dst, src, 0o755); err != nil {
			return fmt.Errorf("installing the plugin into %s: %w", i.cfg.BinDir, err)
		}
		i.cfg.Logger.Info("credential provider plugin installed", "path", dst)
	}
	return nil
}

// tokenName is the token plugin's provider and binary name.
func (i *Installer) tokenName() string { return i.cfg.PluginName + TokenPluginSuffix }

// ours reports whether a provider entry is one of pullpass's.
func (i *Installer) ours(p any) bool {
	m, ok := p.(map[string]any)
	return ok && (m["name"] == i.cfg.PluginName || m["name"] == i.tokenName())
}

// Write is the refresher's sink: it keeps the config entry matching the hosts the cache serves.
func (i *Installer) Write(_ context.Context, entries []nodecache.Entry) error {
	var hosts []string
	for _, e := range entries {
		hosts = append(hosts, e.Hosts...)
	}
	_, err := i.Configure(hosts)
	return err
}

// Configure writes the provider entry for hosts (the host patterns served), if it changed, and
// reports whether the kubelet must be restarted to use it: the entry changed since the kubelet
// last read it. That is known exactly once the plugin has run (it records the generation of the
// config it was started with); before, a change made by this installer counts.
func (i *Installer) Configure(hosts []string) (restartNeeded bool, err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.held {
		// Not while the kubelet restarts with the config written: the sequence would judge,
		// and maybe roll back, a config it did not restart with. Written on release.
		i.want, i.wantSet = slices.Clone(hosts), true
		return true, nil
	}
	return i.configureLocked(hosts)
}

func (i *Installer) configureLocked(hosts []string) (restartNeeded bool, err error) {
	entry, err := i.entry(hosts)
	if err != nil {
		return false, err
	}
	found, err := i.read()
	if err != nil {
		return false, err
	}
	if !i.started {
		i.started, i.atStart, i.running = true, found, found
	}
	if gen := Generation(entry); i.rejected[gen] {
		// The kubelet did not come back with this config: never written again. The entry
		// on disk (the one put back) stays until the hosts served change.
		if !bytes.Equal(i.current, found) || i.current == nil {
			i.cfg.Logger.Warn("not writing a credential provider config the kubelet did not come back with before", "generation", gen)
		}
		i.current = found
		return i.restartNeededLocked(), nil
	}
	changed := !bytes.Equal(found, entry)
	if changed {
		if err := i.write(entry); err != nil {
			return false, err
		}
		i.cfg.Logger.Info("credential provider config written", "path", i.cfg.ConfigPath, "matchImages", i.matchImages(hosts))
	}
	first := i.current == nil
	i.current = entry
	need := i.restartNeededLocked()
	if need && (changed || first) { // said once per change, not on every cache write
		i.cfg.Logger.Warn("the kubelet reads its credential provider config only at start: restart the kubelet on this node (e.g. systemctl restart kubelet); until then the node does not serve the hosts new to the config (on a first install, any host)",
			"config", i.cfg.ConfigPath)
	}
	return need, nil
}

// Serves reports whether the kubelet runs the entry written: one was written (or found) and no
// restart is needed for it.
func (i *Installer) Serves() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.current != nil && !i.restartNeededLocked()
}

// RestartNeeded reports whether the kubelet runs an older config than the one written.
func (i *Installer) RestartNeeded() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.restartNeededLocked()
}

func (i *Installer) restartNeededLocked() bool {
	if i.current == nil {
		return false
	}
	if i.rejected[Generation(i.current)] {
		return false
	}
	gen := Generation(i.current)
	if seen, err := os.ReadFile(nodecache.GenerationPath(i.cfg.CachePath)); err == nil {
		return strings.TrimSpace(string(seen)) != gen
	}
	return !bytes.Equal(i.atStart, i.current)
}

// RestartNeededSince reports whether a kubelet started at started runs an older entry than the
// one written, knowing when it started (the agent that restarts kubelets asks systemd): it
// reads its config only at start, so it does when pullpass's entry (the drop-in, or the merged
// file) was written after that, unless the plugin, called since, recorded the entry's
// generation. This holds where the generation record alone misleads: a kubelet started on a
// config without pullpass's entry (a node's bootstrap rewrote the file; a new node whose disk
// kept an old record), or an agent that died between its write and the restart.
func (i *Installer) RestartNeededSince(started time.Time) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.restartNeededSinceLocked(started)
}

func (i *Installer) restartNeededSinceLocked(started time.Time) bool {
	if i.current == nil {
		return false
	}
	gen := Generation(i.current)
	if i.rejected[gen] {
		return false
	}
	path := i.cfg.ConfigPath
	if i.isDir() {
		path = filepath.Join(path, DropInName)
	}
	st, err := os.Stat(path)
	if err != nil || !st.ModTime().After(started) {
		return false
	}
	genPath := nodecache.GenerationPath(i.cfg.CachePath)
	if gst, err := os.Stat(genPath); err == nil && gst.ModTime().After(started) {
		if seen, err := os.ReadFile(genPath); err == nil && strings.TrimSpace(string(seen)) == gen {
			return false
		}
	}
	return true
}

// Hold starts a kubelet restart for the config written, for a kubelet started at started: it
// returns the generation the kubelet will start with and whether a restart is needed
// (RestartNeededSince; when not, nothing is held). Until Confirm, Rollback or Release,
// Configure writes nothing, so that the restart is judged on the config it was made for.
func (i *Installer) Hold(started time.Time) (generation string, restartNeeded bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.held || !i.restartNeededSinceLocked(started) {
		return "", false
	}
	i.held = true
	return Generation(i.current), true
}

// Release ends a hold without a restart (none could be made), writing what was asked for
// meanwhile.
func (i *Installer) Release() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.releaseLocked()
}

func (i *Installer) releaseLocked() error {
	if !i.held {
		return nil
	}
	i.held = false
	if !i.wantSet {
		return nil
	}
	hosts := i.want
	i.want, i.wantSet = nil, false
	_, err := i.configureLocked(hosts)
	return err
}

// Confirm records that the kubelet restarted with generation and came back healthy: it runs
// that config (it reads it only at start), recorded where the plugin records it, so the restart
// is not asked again before the plugin's first call. Then the hold ends.
func (i *Installer) Confirm(generation string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.current != nil && Generation(i.current) == generation {
		i.running = i.current
	}
	nodecache.RecordGeneration(i.cfg.CachePath, generation)
	return i.releaseLocked()
}

// Rollback records that the kubelet did not come back with generation: it is never written
// again (also across agent restarts: the list is kept beside the cache), and pullpass's entry
// as the kubelet ran it before is put back (none, if it had none). The hold ends; the caller
// restarts the kubelet again.
func (i *Installer) Rollback(generation string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.rejected[generation] = true
	var errs []error
	if err := writeRejected(i.cfg.CachePath, i.rejected); err != nil {
		errs = append(errs, err)
	}
	var err error
	if i.running == nil {
		err = i.RemoveEntry()
	} else {
		err = i.write(i.running)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("putting the previous credential provider config back: %w", err))
	} else {
		i.current = i.running
	}
	i.cfg.Logger.Warn("credential provider config rolled back: the kubelet did not come back with it", "generation", generation, "config", i.cfg.ConfigPath)
	return errors.Join(append(errs, i.releaseLocked())...)
}

// Rejected reports whether generation was rolled back before.
func (i *Installer) Rejected(generation string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.rejected[generation]
}

// RejectedPath is where the generations rolled back are kept, one a line.
func RejectedPath(cachePath string) string {
	return filepath.Join(filepath.Dir(cachePath), "provider-generations-rejected")
}

func readRejected(cachePath string) map[string]bool {
	out := map[string]bool{}
	data, err := os.ReadFile(RejectedPath(cachePath))
	if err != nil {
		return out
	}
	for _, l := range strings.Fields(string(data)) {
		out[l] = true
	}
	return out
}

func writeRejected(cachePath string, rejected map[string]bool) error {
	var lines []string
	for g := range rejected {
		lines = append(lines, g+"\n")
	}
	slices.Sort(lines)
	return atomicfile.Write(RejectedPath(cachePath), []byte(strings.Join(lines, "")), 0o600)
}

// ValidateOnDisk checks the config as it is on disk now (with every file of a config
// directory) as the kubelet will read it at its next start: what an uninstall checks before it
// restarts the kubelet.
func (i *Installer) ValidateOnDisk() error {
	if !i.isDir() {
		doc, _, err := readConfig(i.cfg.ConfigPath)
		if err != nil {
			return err
		}
		if doc == nil {
			return fmt.Errorf("%w: %s is empty or missing", ErrRefused, i.cfg.ConfigPath)
		}
		return Validate(doc, i.cfg.BinDir, nil, i.isOurName)
	}
	entries, err := os.ReadDir(i.cfg.ConfigPath)
	if err != nil {
		return fmt.Errorf("credential provider config: %w", err)
	}
	var names []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".json" && ext != ".yaml" && ext != ".yml") {
			continue
		}
		doc, _, err := readConfig(filepath.Join(i.cfg.ConfigPath, e.Name()))
		if err != nil {
			return err
		}
		if doc == nil {
			return fmt.Errorf("%w: %s is empty", ErrRefused, e.Name())
		}
		if err := Validate(doc, i.cfg.BinDir, names, i.isOurName); err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
		for _, p := range providers(doc) {
			if m, ok := p.(map[string]any); ok {
				n, _ := m["name"].(string)
				names = append(names, n)
			}
		}
	}
	if names == nil {
		return fmt.Errorf("%w: no provider in %s", ErrRefused, i.cfg.ConfigPath)
	}
	return nil
}

func (i *Installer) validate(doc map[string]any, otherNames []string) error {
	if i.cfg.FaultUnvalidated {
		i.cfg.Logger.Warn("fault: writing the credential provider config without validating it")
		return nil
	}
	return Validate(doc, i.cfg.BinDir, otherNames, i.isOurName)
}

func (i *Installer) isOurName(name string) bool {
	return name == i.cfg.PluginName || name == i.tokenName()
}

// Generation names the content of pullpass's provider entries (a JSON list).
func Generation(entries []byte) string {
	var list []map[string]any
	if err := json.Unmarshal(entries, &list); err == nil {
		for _, p := range list {
			if args, ok := p["args"].([]any); ok {
				// The generation is an argument itself: leave it out.
				p["args"] = slices.DeleteFunc(slices.Clone(args), func(a any) bool {
					s, _ := a.(string)
					return strings.HasPrefix(s, "--generation=")
				})
			}
		}
		entries, _ = json.Marshal(list)
	}
	sum := sha256.Sum256(entries)
	return hex.EncodeToString(sum[:8])
}

// matchImages are the globs for every port-less host plus the patterns with ports.
func (i *Installer) matchImages(hosts []string) []string {
	var out []string
	glob := "*"
	for n := 1; n <= i.cfg.MaxLabels; n++ {
		out = append(out, glob)
		glob += ".*"
	}
	var named []string
	for _, h := range append(slices.Clone(i.cfg.MatchImages), hosts...) {
		host, _, _ := strings.Cut(h, "/")
		if strings.Contains(host, ":") {
			named = append(named, h)
		}
	}
	slices.Sort(named)
	return append(out, slices.Compact(named)...)
}

// entry is pullpass's provider entries as canonical JSON: a list of the Cluster entry and, in
// token mode, the token entry.
func (i *Installer) entry(hosts []string) ([]byte, error) {
	list := []map[string]any{{
		"name":                 i.cfg.PluginName,
		"apiVersion":           "credentialprovider.kubelet.k8s.io/v1",
		"matchImages":          i.matchImages(hosts),
		"defaultCacheDuration": i.cfg.CacheDuration.String(),
		"args": []string{
			"--cache=" + i.cfg.CachePath,
			"--max-cache-duration=" + i.cfg.CacheDuration.String(),
		},
	}}
	if t := i.cfg.Tokens; t != nil {
		list = append(list, map[string]any{
			"name":                 i.tokenName(),
			"apiVersion":           "credentialprovider.kubelet.k8s.io/v1",
			"matchImages":          i.matchImages(hosts),
			"defaultCacheDuration": t.CacheDuration.String(),
			"args": []string{
				"--cache=" + i.cfg.CachePath,
				"--max-cache-duration=" + t.CacheDuration.String(),
				"--service-account-token-audience=" + t.Audience,
			},
			// Asked once per service account (and annotation values) for each cache
			// duration; never called for pods without a service account (static pods).
			"tokenAttributes": map[string]any{
				"serviceAccountTokenAudience":          t.Audience,
				"cacheType":                            "ServiceAccount",
				"requireServiceAccount":                true,
				"optionalServiceAccountAnnotationKeys": ServiceAccountAnnotations,
			},
		})
	}
	b, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	gen := "--generation=" + Generation(b)
	for _, p := range list {
		p["args"] = append(p["args"].([]string), gen)
	}
	return json.Marshal(list)
}

// isDir reports whether the kubelet's config is a directory. A path that does not exist yet is
// a directory unless it names a .yaml, .yml or .json file.
func (i *Installer) isDir() bool {
	st, err := os.Stat(i.cfg.ConfigPath)
	if err == nil {
		return st.IsDir()
	}
	ext := filepath.Ext(i.cfg.ConfigPath)
	return ext != ".yaml" && ext != ".yml" && ext != ".json"
}

// read returns pullpass's entry as it is in the config now, canonical JSON, or nil.
func (i *Installer) read() ([]byte, error) {
	path := i.cfg.ConfigPath
	if i.isDir() {
		path = filepath.Join(path, DropInName)
	}
	doc, _, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, nil
	}
	var ours []any
	for _, p := range providers(doc) {
		if i.ours(p) {
			ours = append(ours, p)
		}
	}
	if ours == nil {
		return nil, nil
	}
	return json.Marshal(ours)
}

func (i *Installer) write(entry []byte) error {
	var ours []any
	if err := json.Unmarshal(entry, &ours); err != nil {
		return err
	}
	if i.isDir() {
		if err := os.MkdirAll(i.cfg.ConfigPath, 0o755); err != nil {
			return fmt.Errorf("credential provider config: %w", err)
		}
		doc := map[string]any{"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig", "providers": ours}
		out, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		if err := i.validate(doc, otherProviderNames(i.cfg.ConfigPath)); err != nil {
			return fmt.Errorf("not writing %s: %w", filepath.Join(i.cfg.ConfigPath, DropInName), err)
		}
		out = append([]byte("# Written by the pullpass node agent; changes are overwritten.\n"), out...)
		return writeConfig(filepath.Join(i.cfg.ConfigPath, DropInName), out, 0o644)
	}
	doc, isJSON, err := readConfig(i.cfg.ConfigPath)
	if err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if st, err := os.Stat(i.cfg.ConfigPath); err == nil {
		perm = st.Mode().Perm()
	}
	if doc == nil {
		doc = map[string]any{"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig"}
		isJSON = filepath.Ext(i.cfg.ConfigPath) == ".json"
	}
	// Ours replace ours where the first of them was, every other provider kept in its place.
	var list []any
	placed := false
	for _, p := range providers(doc) {
		if !i.ours(p) {
			list = append(list, p)
		} else if !placed {
			list, placed = append(list, ours...), true
		}
	}
	if !placed {
		list = append(list, ours...)
	}
	doc["providers"] = list
	if err := i.validate(doc, nil); err != nil {
		return fmt.Errorf("not writing %s: %w", i.cfg.ConfigPath, err)
	}
	out, err := marshalConfig(doc, isJSON)
	if err != nil {
		return err
	}
	return writeConfig(i.cfg.ConfigPath, out, perm)
}

// marshalConfig writes a config document back in the format it was read in.
func marshalConfig(doc map[string]any, isJSON bool) ([]byte, error) {
	if !isJSON {
		return yaml.Marshal(doc)
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	return append(out, '\n'), err
}

// Remove takes pullpass's entry out of the config (and its drop-in file) and the plugin binary
// out of the bin dir: what `pullpass-agent uninstall` does on a node.
func (i *Installer) Remove() error {
	if err := i.RemoveEntry(); err != nil {
		return err
	}
	for _, name := range []string{i.cfg.PluginName, i.tokenName()} {
		if err := os.Remove(filepath.Join(i.cfg.BinDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// RemoveEntry takes pullpass's entry out of the config, leaving the plugin binary: a running
// kubelet keeps executing it until it restarts (with no cache, it answers "no credentials").
func (i *Installer) RemoveEntry() error {
	if i.isDir() {
		if err := os.Remove(filepath.Join(i.cfg.ConfigPath, DropInName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		doc, isJSON, err := readConfig(i.cfg.ConfigPath)
		if err != nil {
			return err
		}
		if doc != nil {
			list := slices.DeleteFunc(providers(doc), i.ours)
			doc["providers"] = list
			out, err := marshalConfig(doc, isJSON)
			if err != nil {
				return err
			}
			st, err := os.Stat(i.cfg.ConfigPath)
			if err != nil {
				return err
			}
			if err := writeConfig(i.cfg.ConfigPath, out, st.Mode().Perm()); err != nil {
				return err
			}
		}
	}
	return nil
}

// readConfig reads a CredentialProviderConfig file (YAML or JSON) as a generic document, so that
// every field pullpass does not own is written back as it was. A missing file is a nil document.
func readConfig(path string) (doc map[string]any, isJSON bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("credential provider config: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, false, nil
	}
	isJSON = bytes.HasPrefix(bytes.TrimSpace(data), []byte("{"))
	js, err := yaml.YAMLToJSON(data)
	if err == nil {
		err = json.Unmarshal(js, &doc)
	}
	if err != nil {
		// Never rewrite a file that cannot be read: the kubelet may read it differently.
		return nil, false, fmt.Errorf("credential provider config %s is not a YAML or JSON object; it is left as it is: %s", path, firstLine(err))
	}
	if k, _ := doc["kind"].(string); k != "" && k != "CredentialProviderConfig" {
		return nil, false, fmt.Errorf("credential provider config %s has kind %q, want CredentialProviderConfig; it is left as it is", path, k)
	}
	if p, ok := doc["providers"]; ok && p != nil {
		if _, ok := p.([]any); !ok {
			return nil, false, fmt.Errorf("credential provider config %s: providers is not a list; it is left as it is", path)
		}
	}
	return doc, isJSON, nil
}

func providers(doc map[string]any) []any {
	l, _ := doc["providers"].([]any)
	return l
}

func writeConfig(path string, data []byte, perm os.FileMode) error {
	if err := atomicfile.Write(path, data, perm); err != nil {
		return fmt.Errorf("credential provider config: %w", err)
	}
	return nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
