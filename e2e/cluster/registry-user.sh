#!/usr/bin/env bash
# registry-user.sh USER PASSWORD | registry-user.sh -D USER: sets (or deletes) a user of the
# harness registry and restarts the registry, which reads its htpasswd file at start only. The
# old password stops working at once: what "revoked at the registry" means in the tests.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -f "$E2E_DIR/ready" ] || die "the harness cluster is not up"
htpasswd_file=$E2E_DIR/registry/htpasswd
if [ "${1:-}" = -D ]; then
  [ -n "${2:-}" ] || die "usage: $0 -D USER"
  [ "$2" != "$REGISTRY_USERNAME" ] || die "the harness's own user cannot be deleted"
  htpasswd -D "$htpasswd_file" "$2" >/dev/null 2>&1 || true
else
  [ $# -eq 2 ] || die "usage: $0 USER PASSWORD"
  [ "$1" != "$REGISTRY_USERNAME" ] || die "the harness's own user cannot be changed"
  htpasswd -Bb "$htpasswd_file" "$1" "$2" >/dev/null 2>&1
fi
pid=$(pid_of registry)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
fi
start registry docker-registry serve "$E2E_DIR/registry/config.yml"
wait_for registry 30 curl -s --cacert "$PKI/ca.crt" -o /dev/null "https://$REGISTRY_HOST/v2/"
log "registry restarted with the new htpasswd"
