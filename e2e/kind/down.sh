#!/usr/bin/env bash
# kind-down: deletes the kind cluster and the registry container, stops the port-forwards, and
# with the own engine stops its dockerd (only the one up.sh started, by pid) and removes its
# network namespace: the host is left as it was found (check-clean.sh proves it). The node
# image and the registry image stay in the cache (PULLPASS_CACHE) for the next kind-up.
# --purge also removes _output/kind (the registry's CA and password among it).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
purge=false
[ "${1:-}" = --purge ] && purge=true

for pf in "$KIND_DIR"/port-forward-*.pid; do
  [ -f "$pf" ] || continue
  kill "$(cat "$pf")" 2>/dev/null && log "stopped $(basename "$pf" .pid)"
  rm -f "$pf"
done
# The Prometheus deploy.sh started (by its pid file).
if [ -f "$KIND_DIR/prometheus.pid" ]; then
  PROM_PID_FILE=$KIND_DIR/prometheus.pid "$repo_root/e2e/cluster/prometheus.sh" down "$KIND_DIR/prometheus" || true
fi
use_engine
if docker info >/dev/null 2>&1; then
  KIND=$(tools_bin kind)/kind
  if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    "$KIND" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_KIND" >&2
  fi
  docker rm -f -v "$REGISTRY_CONTAINER" >/dev/null 2>&1 && log "removed the registry container"
  # kind leaves its network behind; it is ours only on the own engine.
  if [ "$(engine)" = own ]; then docker network rm kind >/dev/null 2>&1 || true; fi
fi
if [ "$(engine)" = own ]; then
  "$here/dockerd.sh" stop
fi
rm -f "$KIND_DIR/ready" "$KIND_DIR/endpoints.env" "$KIND_DIR/release.version"
rm -rf "$KIND_DIR/nodes"
if $purge; then
  rm -rf "$KIND_DIR"
  log "purged $KIND_DIR"
fi
log "kind cluster down"
