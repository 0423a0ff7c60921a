// Command runcwrapper runs runc after removing from the bundle's config.json what this host
// cannot grant, so that containers start instead of failing:
//
//   - process.oomScoreAdj, when it is lower than the wrapper's own: lowering oom_score_adj needs
//     CAP_SYS_RESOURCE, which some machines withhold even from root. The CRI asks for -998 on pod
//     sandboxes, and runc then fails ("failed to update /proc/self/oom_score_adj: Permission
//     denied"). Raising it (best-effort pods) is always allowed and is kept.
//   - capabilities outside the wrapper's bounding set: `docker run --privileged` asks for every
//     capability the engine knows, and runc then fails ("unable to apply caps: operation not
//     permitted") where the bounding set lacks one (CAP_SYS_RESOURCE here).
//
// The e2e harness points containerd's runc runtime at it, the kind path's own dockerd uses it as
// its default runtime, and the kind node image built here installs it in front of runc. It is
// for test machines only: a real node never needs it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	runc := os.Getenv("RUNCWRAPPER_RUNC")
	if runc == "" {
		runc = "/usr/sbin/runc"
	}
	for i, a := range os.Args {
		if i+1 >= len(os.Args) {
			break
		}
		var err error
		switch a {
		case "--bundle", "-b": // create, run: the bundle's whole spec
			err = fixSpec(filepath.Join(os.Args[i+1], "config.json"), ownOOMScoreAdj(), boundingSet())
		case "--process", "-p": // exec: the new process's spec alone (docker exec --privileged)
			err = fixProcessFile(os.Args[i+1], ownOOMScoreAdj(), boundingSet())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "runcwrapper:", err)
			os.Exit(1)
		}
	}
	args := append([]string{runc}, os.Args[1:]...)
	err := syscall.Exec(runc, args, os.Environ())
	fmt.Fprintln(os.Stderr, "runcwrapper: exec runc:", err)
	os.Exit(1)
}

// fixSpec rewrites the OCI spec at path when it asks for what the host cannot grant.
func fixSpec(path string, ownAdj int, bounding map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]json.RawMessage
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var proc map[string]json.RawMessage
	if raw, ok := spec["process"]; !ok || json.Unmarshal(raw, &proc) != nil {
		return nil
	}
	changed, err := fixProcess(proc, ownAdj, bounding)
	if err != nil || !changed {
		return err
	}
	if spec["process"], err = json.Marshal(proc); err != nil {
		return err
	}
	return writeJSON(path, spec)
}

// fixProcessFile rewrites a process spec file (runc exec --process) the same way.
func fixProcessFile(path string, ownAdj int, bounding map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var proc map[string]json.RawMessage
	if err := json.Unmarshal(data, &proc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	changed, err := fixProcess(proc, ownAdj, bounding)
	if err != nil || !changed {
		return err
	}
	return writeJSON(path, proc)
}

// fixProcess drops from an OCI process what the host cannot grant, reporting whether it changed.
func fixProcess(proc map[string]json.RawMessage, ownAdj int, bounding map[string]bool) (bool, error) {
	var err error
	changed := false
	if raw, ok := proc["oomScoreAdj"]; ok {
		var adj int
		if json.Unmarshal(raw, &adj) != nil || adj < ownAdj {
			delete(proc, "oomScoreAdj")
			changed = true
		}
	}
	if raw, ok := proc["capabilities"]; ok && bounding != nil {
		var caps map[string][]string
		if json.Unmarshal(raw, &caps) == nil {
			capsChanged := false
			for set, names := range caps {
				kept := names[:0:0]
				for _, n := range names {
					if bounding[n] {
						kept = append(kept, n)
					}
				}
				if len(kept) != len(names) {
					caps[set] = kept
					capsChanged = true
				}
			}
			if capsChanged {
				if proc["capabilities"], err = json.Marshal(caps); err != nil {
					return false, err
				}
				changed = true
			}
		}
	}
	return changed, nil
}

func writeJSON(path string, v any) error {
	out, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".runcwrapper"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func ownOOMScoreAdj() int {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0
	}
	return v
}

// capNames are the kernel's capabilities by number (linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// boundingSet returns the capabilities the wrapper may still grant, by name; nil when unknown
// (then nothing is removed).
func boundingSet() map[string]bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil
			}
			return capsOf(mask)
		}
	}
	return nil
}

func capsOf(mask uint64) map[string]bool {
	set := map[string]bool{}
	for i, n := range capNames {
		if mask&(1<<uint(i)) != 0 {
			set[n] = true
		}
	}
	return set
}
