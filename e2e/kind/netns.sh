#!/usr/bin/env bash
# netns.sh CMD...: runs CMD where the kind cluster's addresses are reachable: inside the own
# engine's network namespace (only the network namespace: files, mounts and the module cache are
# the host's), or directly with a host engine. kubectl, crane, helm and the e2e suite run so.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -gt 0 ] || { echo "usage: $0 CMD..." >&2; exit 2; }
use_engine
if [ "$(engine)" = own ] && [ "$(ip netns identify $$ 2>/dev/null)" != "$NETNS" ]; then
  exec nsenter --net="/run/netns/$NETNS" -- "$@"
fi
exec "$@"
