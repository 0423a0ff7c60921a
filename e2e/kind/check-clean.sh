#!/usr/bin/env bash
# Checks that kind-down left the host as it was: no dockerd, containerd or shim of the own
# engine, no network namespace, no mount under its dirs, no docker bridge or rule in the host's
# network namespace, no port-forward.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
bad=0
fail() { log "$*"; bad=1; }
if pgrep -f "dockerd.*$OWN_DOCKER_SOCK" >/dev/null; then fail "the own dockerd is still running"; fi
if pgrep -f "containerd.*$OWN_DOCKER_DIR" >/dev/null; then fail "the own engine's containerd or shims are still running"; fi
if ip netns list 2>/dev/null | grep -qw "^$NETNS"; then fail "network namespace $NETNS is still there"; fi
if awk -v a="$OWN_DOCKER_DIR" -v b="$OWN_DOCKER_DATA" 'index($5, a) == 1 || index($5, b "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
  fail "still mounted under $OWN_DOCKER_DIR or $OWN_DOCKER_DATA"
fi
for pf in "$KIND_DIR"/port-forward-*.pid; do [ -f "$pf" ] && fail "port-forward $(basename "$pf") still recorded"; done
# The host's network namespace: what a dockerd would have added there.
if [ "$(engine)" = own ]; then
  if ip -br link 2>/dev/null | grep -qE '^(docker0|br-[0-9a-f]+|veth)'; then fail "a docker bridge or veth is in the host's network namespace"; fi
  # (KUBE- chains may be there: the native harness's kubelet runs on the host's network.)
  if iptables-save 2>/dev/null | grep -qE 'DOCKER|KIND-'; then fail "docker or kind iptables rules in the host's network namespace"; fi
  if [ "$(iptables -S FORWARD 2>/dev/null | head -n 1)" = "-P FORWARD DROP" ] && [ "$(cat "$KIND_DIR/host-forward-policy" 2>/dev/null)" != "-P FORWARD DROP" ]; then
    fail "the host's FORWARD policy is DROP"
  fi
fi
if [ -f "$KIND_DIR/created-lib-modules" ] && [ -e /lib/modules ]; then fail "/lib/modules, created for kind's nodes, is still there"; fi
[ $bad = 0 ] && log "clean: no engine, namespace, mount, bridge, rule or port-forward left"
exit $bad
