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

	"github.com/pullpass/pullpass/agent/atomicfile"
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
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("credential cache: %w", err)
	}
	return nil
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
	f, ok := decodeFast(data)
	if !ok {
		f, err = decodeSlow(path, data)
		if err != nil {
			return File{}, err
		}
	}
	if f.Version != Version {
		return File{}, fmt.Errorf("credential cache %s: format version %d, this reader knows %d", path, f.Version, Version)
	}
	return f, nil
}

// decodeSlow decodes with encoding/json: what decodeFast is not sure of, and the errors.
func decodeSlow(path string, data []byte) (File, error) {
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return File{}, fmt.Errorf("credential cache %s: not valid JSON at byte %d", path, se.Offset)
		}
		return File{}, fmt.Errorf("credential cache %s: not a cache file", path)
	}
	return f, nil
}

// CleanTemp removes temp files a killed writer left beside path, and says how many.
func CleanTemp(path string) (int, error) { return atomicfile.CleanTemp(path) }

// Files beside the cache through which the plugin, a short-lived process the kubelet runs,
// tells the agent what it did.

// GenerationPath is where the plugin records the generation of the provider config the kubelet
// started it with: the agent compares it with the config it wrote to know whether the kubelet
// must be restarted.
func GenerationPath(cachePath string) string {
	return filepath.Join(filepath.Dir(cachePath), "provider-generation")
}

// Plugin request results.
const (
	RequestHit   = "hit"
	RequestMiss  = "miss"
	RequestError = "error"
)

// RequestsPath is the file the plugin appends one byte to per request with that result: its
// size is the count (the agent exports it), and appending costs the plugin one write.
func RequestsPath(cachePath, result string) string {
	return filepath.Join(filepath.Dir(cachePath), "plugin-requests-"+result)
}

// RecordRequest counts one plugin request. Best effort: counting never fails a request.
func RecordRequest(cachePath, result string) {
	f, err := os.OpenFile(RequestsPath(cachePath, result), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	_, _ = f.Write([]byte{'.'})
	_ = f.Close()
}

// CountRequests returns how many requests with result the plugin recorded.
func CountRequests(cachePath, result string) float64 {
	st, err := os.Stat(RequestsPath(cachePath, result))
	if err != nil {
		return 0
	}
	return float64(st.Size())
}

// RecordGeneration records the config generation the plugin runs with, when it changed.
func RecordGeneration(cachePath, generation string) {
	path := GenerationPath(cachePath)
	if old, err := os.ReadFile(path); err == nil && string(old) == generation {
		return
	}
	_ = atomicfile.Write(path, []byte(generation), 0o600)
}
