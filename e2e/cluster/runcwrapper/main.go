// Command runcwrapper runs runc after deleting process.oomScoreAdj from the bundle's config.json.
//
// Some sandboxes forbid lowering oom_score_adj even for root; the CRI asks for -998 on pod
// sandboxes, and runc then fails ("failed to update /proc/self/oom_score_adj: Permission
// denied"). The harness points containerd's runc runtime at this wrapper. It is for the e2e
// harness only: a real node never needs it.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

func main() {
	runc := os.Getenv("RUNCWRAPPER_RUNC")
	if runc == "" {
		runc = "/usr/sbin/runc"
	}
	for i, a := range os.Args {
		if (a == "--bundle" || a == "-b") && i+1 < len(os.Args) {
			if err := stripOOMScoreAdj(filepath.Join(os.Args[i+1], "config.json")); err != nil {
				fmt.Fprintln(os.Stderr, "runcwrapper:", err)
				os.Exit(1)
			}
		}
	}
	args := append([]string{runc}, os.Args[1:]...)
	err := syscall.Exec(runc, args, os.Environ())
	fmt.Fprintln(os.Stderr, "runcwrapper: exec runc:", err)
	os.Exit(1)
}

func stripOOMScoreAdj(path string) error {
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
	if _, ok := proc["oomScoreAdj"]; !ok {
		return nil
	}
	delete(proc, "oomScoreAdj")
	if spec["process"], err = json.Marshal(proc); err != nil {
		return err
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	tmp := path + ".runcwrapper"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
