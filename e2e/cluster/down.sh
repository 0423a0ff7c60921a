#!/usr/bin/env bash
# cluster-down: stops every process the harness started (by pid) and unmounts what they
# mounted, even after a failed run. Data stays in _output/e2e unless --purge is given.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

purge=false
[ "${1:-}" = --purge ] && purge=true

# Pod tasks first, so their shims exit and release their mounts.
if alive containerd && command -v ctr >/dev/null; then
  for t in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
  done
fi

# stop NAME...: SIGTERM to each, then SIGKILL to any still running after 10s.
stop() {
  local name pid pids=()
  for name in "$@"; do
    pid=$(pid_of "$name")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null && pids+=("$name:$pid")
    fi
  done
  for _ in $(seq 1 100); do
    local left=0
    for np in "${pids[@]}"; do kill -0 "${np#*:}" 2>/dev/null && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  for np in "${pids[@]}"; do
    if kill -0 "${np#*:}" 2>/dev/null; then
      log "${np%%:*} did not stop; killing it"
      kill -KILL "${np#*:}" 2>/dev/null
      # Killed is not gone yet: a loaded machine takes a moment to tear down a big process
      # (CI saw check-clean find kube-apiserver right after this).
      for _ in $(seq 1 100); do kill -0 "${np#*:}" 2>/dev/null || break; sleep 0.1; done
      kill -0 "${np#*:}" 2>/dev/null && log "${np%%:*} (pid ${np#*:}) still there 10 s after SIGKILL"
    fi
    log "stopped ${np%%:*} (pid ${np#*:})"
  done
  for name in "$@"; do rm -f "$PIDS/$name.pid"; done
}
# The kubelet first, so it starts nothing new; then the rest together.
stop kubelet
others=()
for c in "${COMPONENTS[@]}"; do [ "$c" = kubelet ] || others+=("$c"); done
stop "${others[@]}"

# containerd's shims outlive it by design; they are ours when they name our socket.
for pid in $(pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null); do
  kill -KILL "$pid" 2>/dev/null && log "stopped containerd shim (pid $pid)"
done
# Container processes whose shim was killed are reparented; their cgroup dirs name them.
sleep 0.5

# Unmount everything under the harness dir, deepest first.
mounts() { awk -v d="$E2E_DIR" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-; }
for _ in 1 2 3; do
  m=$(mounts)
  [ -n "$m" ] || break
  while read -r mp; do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
  done <<<"$m"
done
[ -z "$(mounts)" ] || log "WARNING: still mounted: $(mounts | tr '\n' ' ')"
rm -f "$E2E_DIR/ready"

# The kubelet's iptables chains, when the harness's kubelet made them (up.sh).
if [ -f "$E2E_DIR/kube-chains-ours" ]; then
  for ipt in iptables ip6tables; do
    command -v $ipt >/dev/null || continue
    $ipt -t filter -D INPUT -j KUBE-FIREWALL 2>/dev/null
    $ipt -t filter -D OUTPUT -j KUBE-FIREWALL 2>/dev/null
    for table in filter nat mangle; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        $ipt -t $table -F $chain 2>/dev/null && $ipt -t $table -X $chain 2>/dev/null
      done
    done
  done
  rm -f "$E2E_DIR/kube-chains-ours"
  log "removed the kubelet's iptables chains"
fi

if $purge; then
  rm -rf "$E2E_DIR"
  log "purged $E2E_DIR"
fi
log "cluster down"
