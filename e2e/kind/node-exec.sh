#!/usr/bin/env bash
# Runs a command on a kind node, in its container, as root: node-exec.sh NODE CMD...
# (the e2e tests of kubelet restarts read the kubelet's start time and the provider config
# with it). Same engine as the other kind scripts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
[ -f "$KIND_DIR/ready" ] || die "the kind cluster is not up"
[ $# -ge 2 ] || die "usage: node-exec.sh NODE CMD..."
use_engine
node=$1
shift
exec docker exec "$node" "$@"
