#!/usr/bin/env bash
# Restarts the kubelet of every kind node (only the kubelets: running pods keep running), for a
# change of their credential provider config, which the kubelet reads at start only. Same
# contract as e2e/cluster/restart-kubelet.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
[ -f "$KIND_DIR/ready" ] || die "the kind cluster is not up"
use_engine
set -a; . "$KIND_DIR/registry.env"; set +a
for node in $KIND_NODES; do
  docker exec "$node" systemctl restart kubelet
  d=$KIND_DIR/nodes/${node#"$CLUSTER"-}
  cat "$d/image-credential-provider/config"/* 2>/dev/null | sha256sum | cut -c1-16 >"$d/kubelet-provider-config.sum"
done
for node in $KIND_NODES; do
  for _ in $(seq 1 120); do
    docker exec "$node" curl -sf http://127.0.0.1:10248/healthz >/dev/null 2>&1 && break
    sleep 0.5
  done
done
log "kubelets restarted: $KIND_NODES"
