#!/usr/bin/env bash
# images.sh REPO TAG: builds pullpass's images without Docker (static binaries in one layer,
# go-containerregistry's crane, pinned in e2e/cluster/build-tools.sh) and pushes them to
# REPO/pullpass-webhook, REPO/pullpass-agent and REPO/pullpass. Log in first with
# `crane auth login` (DOCKER_CONFIG is honoured).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 REPO TAG   (e.g. ghcr.io/you v0.1.0)" >&2; exit 2; }
repo=$1 tag=$2
user_docker_config=${DOCKER_CONFIG:-$HOME/.docker}
E2E_DIR=${E2E_DIR:-$(cd "$(dirname "$0")/.." && pwd)/_output/images}
. "$(dirname "$0")/../e2e/cluster/lib.sh"
export DOCKER_CONFIG=$user_docker_config # the user's registry login, not the harness's
CRANE=$("$(dirname "$0")/../e2e/cluster/build-tools.sh" crane | tail -n 1)/crane
build_image_of "$repo/pullpass-webhook:$tag" 65532 /pullpass-webhook cmd/pullpass-webhook cmd/pullpass-controller
build_image_of "$repo/pullpass-agent:$tag" 0 /pullpass-agent cmd/pullpass-agent cmd/pullpass-credential-provider
build_image_of "$repo/pullpass:$tag" 65532 /pullpass cmd/pullpass
log "pushed $repo/pullpass-webhook:$tag, $repo/pullpass-agent:$tag, $repo/pullpass:$tag"
