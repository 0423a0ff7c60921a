#!/usr/bin/env bash
# Deletes the kind cluster and the registry container that e2e/kind/up.sh made.
set -uo pipefail
E2E_DIR=${E2E_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/_output/kind}
. "$(dirname "$0")/../cluster/lib.sh"
KIND=$("$(dirname "$0")/../cluster/build-tools.sh" kind | tail -n 1)/kind
for pf in "$E2E_DIR"/port-forward-*.pid; do [ -f "$pf" ] && kill "$(cat "$pf")" 2>/dev/null; rm -f "$pf"; done
"$KIND" delete cluster --name pullpass
docker rm -f pullpass-kind-registry >/dev/null 2>&1 || true
