#!/usr/bin/env bash
# Checks that cluster-down left nothing behind: no harness process (Prometheus included), no
# shim, no mount.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
bad=0
for c in "${COMPONENTS[@]}"; do
  if [ -f "$PIDS/$c.pid" ] && alive "$c"; then log "still running: $c (pid $(pid_of "$c"))"; bad=1; fi
done
if pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" >/dev/null 2>&1; then log "containerd shims still running"; bad=1; fi
# This harness's own: started from its bin dir, or the cache binary it links to, with its own
# files (under $E2E_DIR) in the arguments. Other kube-apiservers of the same cached binary (the
# unit tier's, another checkout's harness) are not this one's.
for exe in "$BIN"/kube-apiserver "$BIN"/kubelet "$BIN"/kube-controller-manager "$BIN"/kube-scheduler; do
  for path in "$exe" "$(readlink -f "$exe" 2>/dev/null || echo "$exe")"; do
    if pgrep -f "^$path .*$E2E_DIR/" >/dev/null 2>&1; then log "still running: $exe"; bad=1; break; fi
  done
done
if pgrep -f "prometheus --config.file=$PROMETHEUS_DIR/" >/dev/null 2>&1; then log "still running: prometheus of $PROMETHEUS_DIR"; bad=1; fi
if awk -v d="$E2E_DIR" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
  log "still mounted under $E2E_DIR"; bad=1
fi
[ $bad = 0 ] && log "clean: no harness process or mount left"
exit $bad
