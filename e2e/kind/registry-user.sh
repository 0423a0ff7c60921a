#!/usr/bin/env bash
# registry-user.sh [--no-restart] USER PASSWORD | registry-user.sh -D USER: sets (or deletes) a
# user of the kind registry and restarts its container, which reads its htpasswd at start only:
# the old password is refused at once. Same contract as e2e/cluster/registry-user.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
use_engine
restart=true
[ "${1:-}" = --no-restart ] && { restart=false; shift; }
htpasswd_file=$KIND_DIR/auth/htpasswd
command -v htpasswd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apache2-utils >/dev/null; }
touch "$htpasswd_file"
if [ "${1:-}" = -D ]; then
  [ -n "${2:-}" ] || die "usage: $0 -D USER"
  [ "$2" != "$REGISTRY_USERNAME" ] || die "the registry's own user cannot be deleted"
  htpasswd -D "$htpasswd_file" "$2" >/dev/null 2>&1 || true
else
  [ $# -eq 2 ] || die "usage: $0 [--no-restart] USER PASSWORD"
  if [ "$1" = "$REGISTRY_USERNAME" ] && [ -f "$KIND_DIR/ready" ]; then die "the registry's own user cannot be changed"; fi
  htpasswd -Bb "$htpasswd_file" "$1" "$2" >/dev/null 2>&1
fi
chmod 644 "$htpasswd_file"
$restart || exit 0
docker restart "$REGISTRY_CONTAINER" >/dev/null
for _ in $(seq 1 60); do
  [ "$(in_netns curl -s --cacert "$PKI/ca.crt" -o /dev/null -w '%{http_code}' https://localhost:5001/v2/ || true)" = 401 ] && break
  sleep 0.5
done
log "registry restarted with the new htpasswd"
