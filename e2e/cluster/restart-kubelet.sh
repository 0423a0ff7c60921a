#!/usr/bin/env bash
# Restarts the harness's kubelet (only it), for a change of its credential provider config,
# which the kubelet reads at start only. Running pods keep running.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
KUBE_BIN=$BIN
[ -f "$E2E_DIR/ready" ] || die "the harness cluster is not up"
pid=$(pid_of kubelet)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
fi
start_kubelet
wait_for kubelet 60 curl -sf "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
log "kubelet restarted"
