// Package legacy serves Cluster-scope registries to a kubelet whose flags cannot be changed, through
// the docker config file the kubelet reads on its own (`<kubelet root dir>/config.json`, re-read
// at most every 5 minutes). pullpass owns only the entries it wrote, recorded beside the node cache;
// every other entry, and every other field of the file, is kept as it was.
package legacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/pullpass/pullpass/agent/atomicfile"
	"github.com/pullpass/pullpass/agent/nodecache"
	"github.com/pullpass/pullpass/pkg/dockerconfig"
)

// Config configures a Writer.
type Config struct {
	// Path is the kubelet's docker config (default /var/lib/kubelet/config.json).
	Path string
	// OwnedPath records which keys pullpass wrote (beside the node cache).
	OwnedPath string
	Logger    *slog.Logger
}

// Writer keeps pullpass's entries in the kubelet's docker config.
type Writer struct{ cfg Config }

// New returns a Writer.
func New(cfg Config) (*Writer, error) {
	if cfg.Path == "" || cfg.OwnedPath == "" {
		return nil, errors.New("invalid configuration: path and owned path are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Writer{cfg: cfg}, nil
}

// Write makes the file hold exactly the entries' credentials under their host patterns, next
// to everything pullpass does not own. A key someone else wrote is never taken over.
func (w *Writer) Write(_ context.Context, entries []nodecache.Entry) error {
	cfg, perm, err := w.read()
	if err != nil {
		return err
	}
	owned, err := w.owned()
	if err != nil {
		return err
	}
	for _, k := range owned {
		delete(cfg.Auths, k)
	}
	var now []string
	for _, e := range entries {
		for _, h := range e.Hosts {
			if _, taken := cfg.Auths[h]; taken && !slices.Contains(now, h) {
				w.cfg.Logger.Warn("the kubelet's docker config already has an entry for this host that pullpass did not write; it is left as it is",
					"path", w.cfg.Path, "host", h, "registry", e.Registry)
				continue
			}
			cfg.Auths[h] = dockerconfig.AuthEntry{Username: e.Username, Password: e.Password}
			now = append(now, h)
		}
	}
	slices.Sort(now)
	now = slices.Compact(now)
	if len(owned) == 0 && len(now) == 0 {
		return nil // pullpass has nothing there and nothing to add: the file is not touched
	}
	if len(now) == 0 && len(cfg.Auths) == 0 && !cfg.HasExtra() {
		// Nothing of anyone's left: no file, as before pullpass came.
		if err := os.Remove(w.cfg.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("kubelet docker config: %w", err)
		}
	} else {
		data, err := cfg.Marshal()
		if err != nil {
			return err
		}
		if err := atomicfile.Write(w.cfg.Path, data, perm); err != nil {
			return fmt.Errorf("kubelet docker config: %w", err)
		}
	}
	ownedData, _ := json.Marshal(now)
	if err := atomicfile.Write(w.cfg.OwnedPath, ownedData, 0o600); err != nil {
		return fmt.Errorf("recording pullpass's entries: %w", err)
	}
	w.cfg.Logger.Info("kubelet docker config written", "path", w.cfg.Path, "hosts", now)
	return nil
}

// Remove takes pullpass's entries out of the file (uninstall).
func (w *Writer) Remove(ctx context.Context) error {
	if err := w.Write(ctx, nil); err != nil {
		return err
	}
	if err := os.Remove(w.cfg.OwnedPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (w *Writer) read() (*dockerconfig.Config, os.FileMode, error) {
	data, err := os.ReadFile(w.cfg.Path)
	if errors.Is(err, os.ErrNotExist) {
		return &dockerconfig.Config{Auths: map[string]dockerconfig.AuthEntry{}}, 0o600, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("kubelet docker config: %w", err)
	}
	st, err := os.Stat(w.cfg.Path)
	if err != nil {
		return nil, 0, fmt.Errorf("kubelet docker config: %w", err)
	}
	cfg, err := dockerconfig.Parse(data)
	if err != nil {
		// Never rewrite what cannot be read: its owner's entries would be lost.
		return nil, 0, fmt.Errorf("kubelet docker config %s cannot be read, so it is left as it is: %w", w.cfg.Path, err)
	}
	if cfg.Auths == nil {
		cfg.Auths = map[string]dockerconfig.AuthEntry{}
	}
	return cfg, st.Mode().Perm(), nil
}

func (w *Writer) owned() ([]string, error) {
	data, err := os.ReadFile(w.cfg.OwnedPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []string
	if err := json.Unmarshal(data, &keys); err != nil {
		return nil, fmt.Errorf("%s is not a list of keys: %w", w.cfg.OwnedPath, err)
	}
	return keys, nil
}
