// Package nodecache is the node-local credential cache the node agent writes and the kubelet's
// credential provider plugin reads. It is written atomically (temp file, fsync, rename, fsync of
// the directory) with mode 0600, so a reader sees the old file or the new one, never a part.
package nodecache

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Version is the format version; a reader refuses others.
const Version = 1

// File is the cache.
type File struct {
	Version int     `json:"version"`
	Entries []Entry `json:"entries"`
	// WrittenAt is when the agent wrote it.
	WrittenAt time.Time `json:"writtenAt"`
}

// Entry is one Cluster-scope registry's current credentials.
type Entry struct {
	Registry  string    `json:"registry"`
	Hosts     []string  `json:"hosts"`
	Username  string    `json:"username"`
	Password  string    `json:"password"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// String never prints the password.
func (e Entry) String() string {
	return fmt.Sprintf("{registry:%s hosts:%v username:%q password:<redacted>}", e.Registry, e.Hosts, e.Username)
}

// Write replaces path with f atomically.
func Write(path string, f File) error {
	f.Version = Version
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("credential cache: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // a no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("credential cache: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("credential cache: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("credential cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("credential cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("credential cache: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("credential cache: %w", err)
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}

// ErrNoCache is returned by Read when there is no cache yet.
var ErrNoCache = errors.New("credential cache: no cache file yet")

// Read reads path. A missing file is ErrNoCache; anything unreadable is an error that says what,
// never quoting the content.
func Read(path string) (File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return File{}, ErrNoCache
	}
	if err != nil {
		return File{}, fmt.Errorf("credential cache: %w", err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return File{}, fmt.Errorf("credential cache %s: not valid JSON at byte %d", path, se.Offset)
		}
		return File{}, fmt.Errorf("credential cache %s: not a cache file", path)
	}
	if f.Version != Version {
		return File{}, fmt.Errorf("credential cache %s: format version %d, this reader knows %d", path, f.Version, Version)
	}
	return f, nil
}

// CleanTemp removes temp files a killed writer left beside path, and says how many.
func CleanTemp(path string) (int, error) {
	left, err := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".*"))
	if err != nil {
		return 0, err
	}
	for _, f := range left {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
	}
	return len(left), nil
}
