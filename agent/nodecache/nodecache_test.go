package nodecache_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullpass/pullpass/agent/nodecache"
)

func file(n int) nodecache.File {
	var f nodecache.File
	// Big enough that a write is many syscalls.
	for i := 0; i < 200; i++ {
		f.Entries = append(f.Entries, nodecache.Entry{Registry: fmt.Sprintf("r%d", i), Hosts: []string{fmt.Sprintf("h%d.example.com", i)},
			Username: "u", Password: strings.Repeat(strconv.Itoa(n), 64)})
	}
	return f
}

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	if _, err := nodecache.Read(path); !errors.Is(err, nodecache.ErrNoCache) {
		t.Fatalf("Read of nothing: %v, want ErrNoCache", err)
	}
	if err := nodecache.Write(path, file(1)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", st.Mode(), err)
	}
	f, err := nodecache.Read(path)
	if err != nil || len(f.Entries) != 200 || f.Version != nodecache.Version {
		t.Fatalf("Read: %d entries, version %d, %v", len(f.Entries), f.Version, err)
	}
	if s := fmt.Sprint(f.Entries[0]); strings.Contains(s, f.Entries[0].Password) {
		t.Fatalf("an entry prints its password: %s", s)
	}
}

// Readers racing a writer only ever see whole files.
func TestReadersNeverSeeAPartialFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	if err := nodecache.Write(path, file(0)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad error
	var mu sync.Mutex
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if f, err := nodecache.Read(path); err != nil || len(f.Entries) != 200 {
					mu.Lock()
					bad = fmt.Errorf("read %d entries: %w", len(f.Entries), err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := 1; i <= 300; i++ {
		if err := nodecache.Write(path, file(i)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if bad != nil {
		t.Fatal(bad)
	}
}

// A writer killed at any moment (SIGKILL, as an OOM kill or a node reboot) leaves a cache the
// plugin can read: the last complete one.
func TestWriterKilledMidWrite(t *testing.T) {
	if os.Getenv("NODECACHE_WRITER") != "" {
		path := os.Getenv("NODECACHE_WRITER")
		for i := 1; ; i++ {
			if err := nodecache.Write(path, file(i)); err != nil {
				os.Exit(3)
			}
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "credentials.json")
	if err := nodecache.Write(path, file(0)); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 20; round++ {
		cmd := exec.Command(exe, "-test.run", "^TestWriterKilledMidWrite$")
		cmd.Env = append(os.Environ(), "NODECACHE_WRITER="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(5+round*3) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		f, err := nodecache.Read(path)
		if err != nil || len(f.Entries) != 200 {
			t.Fatalf("round %d: after SIGKILL the cache reads %d entries, %v", round, len(f.Entries), err)
		}
	}
	// Leftover temp files never shadow the cache; the agent removes them (CleanTemp).
	removed, err := nodecache.CleanTemp(path)
	if err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".credentials.json.*"))
	if len(left) != 0 {
		t.Fatalf("%d temp files left after CleanTemp removed %d", len(left), removed)
	}
}
