# Shared settings of the kind scripts (e2e/kind/*.sh). Sourced, not run.
#
# Two ways to get a Docker engine, chosen once by up.sh and remembered in $KIND_DIR/engine:
#   host: a Docker engine is reachable (a laptop with Docker Desktop, a CI runner with Docker):
#         it is used as it is, with kind's published node image.
#   own:  none is (this project's build machines): the project starts a dockerd of its own in a
#         network namespace of its own (so the host's iptables and bridges are never touched),
#         and builds the node image and every image in it here, offline (node-image.sh).
# PULLPASS_KIND_ENGINE=host|own forces one.

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KIND_DIR=${KIND_DIR:-$repo_root/_output/kind}
# The harness's helpers (push_pullpass_images, install_placeholder_provider, provider_config_sum)
# work on $E2E_DIR: here, the kind dir.
E2E_DIR=$KIND_DIR
. "$repo_root/e2e/cluster/lib.sh"
mkdir -p "$KIND_DIR/logs"
KIND_DIR=$(cd "$KIND_DIR" && pwd)
KIND_CACHE=${PULLPASS_CACHE:-/var/cache/pullpass}/kind
LOGS=$KIND_DIR/logs
CLUSTER=pullpass
KUBECONFIG_KIND=$KIND_DIR/kubeconfig
REGISTRY_CONTAINER=pullpass-kind-registry
REGISTRY_ALIAS_NAME=pullpass-kind-registry-alias
REGISTRY_USERNAME=pullpass-e2e
# The registry answers on the kind network under its container name, port 5000. Nodes pull
# from it by that name; the host (or the own engine's namespace) pushes to it the same way.
REGISTRY_HOST=$REGISTRY_CONTAINER:5000
PKI=$KIND_DIR/pki
# Tools that log in to the registry keep their config here, never in $HOME/.docker.
export DOCKER_CONFIG=$KIND_DIR/docker-config

# The own engine: its network namespace, socket and state. Its data root (images, the node
# image) is in the cache, so a warm run does not rebuild; the rest is under $KIND_DIR.
NETNS=pullpass-kind
OWN_DOCKER_DIR=$KIND_DIR/dockerd
OWN_DOCKER_SOCK=$OWN_DOCKER_DIR/docker.sock
OWN_DOCKER_PID=$OWN_DOCKER_DIR/dockerd.pid
OWN_DOCKER_DATA=$KIND_CACHE/docker

log() { printf '%s [kind] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

engine() { cat "$KIND_DIR/engine" 2>/dev/null || true; }

# in_netns CMD...: runs CMD where the cluster's addresses are reachable: in the own engine's
# network namespace (only the network namespace: mounts and cgroups stay the host's), or
# directly with a host engine.
in_netns() {
  if [ "$(engine)" = own ]; then nsenter --net="/run/netns/$NETNS" -- "$@"; else "$@"; fi
}

# use_engine: points docker (and kind, which runs docker) at the chosen engine.
use_engine() {
  if [ "$(engine)" = own ]; then export DOCKER_HOST=unix://$OWN_DOCKER_SOCK; fi
}

tools_bin() { "$repo_root/hack/build-tools.sh" "$@" | tail -n 1; }
kube_bin() { "$repo_root/hack/build-kube.sh" | tail -n 1; }
