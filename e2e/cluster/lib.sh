# Shared settings of the e2e harness scripts. Sourced, not run.
# Every address is on loopback; every file is under $E2E_DIR (default _output/e2e).

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_DIR=${E2E_DIR:-$repo_root/_output/e2e}
mkdir -p "$E2E_DIR"
E2E_DIR=$(cd "$E2E_DIR" && pwd)

# Ports, chosen away from the well-known ones so a harness can run beside a real node.
ETCD_PORT=22379
ETCD_PEER_PORT=22380
APISERVER_PORT=26443
CONTROLLER_MANAGER_PORT=20257
SCHEDULER_PORT=20259
KUBELET_PORT=20250
KUBELET_HEALTHZ_PORT=20248
REGISTRY_PORT=25443
TOKEN_REGISTRY_PORT=25444         # the Bearer registry's front (token service, TLS)
TOKEN_REGISTRY_BACKEND_PORT=25445 # the distribution registry behind it
PROMETHEUS_PORT=29090

# The node is named localhost: the API server reaches the kubelet by the node's Hostname
# address, and a kubelet refuses a loopback --node-ip.
NODE_NAME=localhost
REGISTRY_HOST=localhost:$REGISTRY_PORT
REGISTRY_ALIAS=127.0.0.1:$REGISTRY_PORT
REGISTRY_USERNAME=pullpass-e2e
TOKEN_REGISTRY_HOST=localhost:$TOKEN_REGISTRY_PORT
TOKEN_REGISTRY_USERNAME=pullpass-e2e-token

PKI=$E2E_DIR/pki
LOGS=$E2E_DIR/logs
PIDS=$E2E_DIR/pids
BIN=$E2E_DIR/bin
CONTAINERD_DIR=$E2E_DIR/containerd
CONTAINERD_SOCK=$CONTAINERD_DIR/containerd.sock
KUBELET_ROOT=$E2E_DIR/kubelet
CREDENTIAL_PROVIDER_CONFIG=$E2E_DIR/credential-provider/config
CREDENTIAL_PROVIDER_BIN=$E2E_DIR/credential-provider/bin
KUBECONFIG_ADMIN=$E2E_DIR/kubeconfig
# Tools that log in to the registry keep their config here, never in $HOME/.docker, which the
# kubelet would read and use for pods with no pull secret.
export DOCKER_CONFIG=$E2E_DIR/docker

log() { printf '%s [harness] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Processes the harness starts, in start order; cluster-down stops them in reverse. Prometheus
# is started by deploy.sh, once the chart's monitoring objects exist.
COMPONENTS=(etcd registry token-registry token-registry-front containerd kube-apiserver kube-controller-manager kube-scheduler kubelet prometheus)
PROMETHEUS_DIR=$E2E_DIR/prometheus

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# wait_for NAME SECONDS COMMAND...: run COMMAND until it succeeds, failing if NAME's process dies.
wait_for() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ -f "$PIDS/$name.pid" ] && ! alive "$name"; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name exited; its log is $LOGS/$name.log"
    fi
    [ $SECONDS -lt $deadline ] || { tail -n 30 "$LOGS/$name.log" >&2 || true; die "$name not ready after ${secs}s; its log is $LOGS/$name.log"; }
    sleep 0.5
  done
}

# start NAME COMMAND...: start a process in the background, in its own session, logging to $LOGS.
start() {
  local name=$1; shift
  mkdir -p "$LOGS" "$PIDS"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$PIDS/$name.pid"
  log "started $name (pid $!)"
}

# image_of_binaries REF USER ENTRYPOINT DIR NAME...: the binaries DIR/NAME... in one layer,
# running as USER, pushed as REF: pullpass's own images.
image_of_binaries() {
  local ref=$1 user=$2 entry=$3 dir=$4
  shift 4
  mkdir -p "$LOGS"
  tar -C "$dir" --owner=0 --group=0 -cf "$dir/layer-$user.tar" "$@"
  "$CRANE" append --platform linux/amd64 -f "$dir/layer-$user.tar" -t "$ref" >>"$LOGS/images.log" 2>&1
  "$CRANE" mutate --set-platform linux/amd64 --user "$user" --entrypoint "$entry" "$ref" -t "$ref" >>"$LOGS/images.log" 2>&1
  rm -f "$dir/layer-$user.tar"
}

# push_pullpass_images PUSH PULL: builds pullpass's binaries from this checkout once and pushes
# its webhook (with the controller) and agent images to the registry at PUSH (as this side reaches it) unless they are
# there already. They are tagged by the binaries' content, so a changed build rolls the pods and
# an unchanged one does not. Sets WEBHOOK_REPO and AGENT_REPO (as the cluster pulls them, at
# PULL) and tag.
push_pullpass_images() {
  local push=$1 pull=$2 work cmd
  work=$(mktemp -d "$E2E_DIR/images.XXXXXX")
  for cmd in pullpass-webhook pullpass-controller pullpass-agent pullpass-credential-provider pullpass-credential-provider-sa; do
    (cd "$repo_root" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags=-s -o "$work/$cmd" "./cmd/$cmd")
  done
  tag=dev-$(cat "$work"/pullpass-* | sha256sum | cut -c1-12)
  WEBHOOK_REPO=$pull/pullpass/pullpass-webhook
  AGENT_REPO=$pull/pullpass/pullpass-agent
  if ! "$CRANE" digest "$push/pullpass/pullpass-webhook:$tag" >/dev/null 2>&1; then
    image_of_binaries "$push/pullpass/pullpass-webhook:$tag" 65532 /pullpass-webhook "$work" pullpass-webhook pullpass-controller
    log "pushed $WEBHOOK_REPO:$tag"
  fi
  if ! "$CRANE" digest "$push/pullpass/pullpass-agent:$tag" >/dev/null 2>&1; then
    image_of_binaries "$push/pullpass/pullpass-agent:$tag" 0 /pullpass-agent "$work" pullpass-agent pullpass-credential-provider pullpass-credential-provider-sa
    log "pushed $AGENT_REPO:$tag"
  fi
  rm -rf "$work"
}

# prepare_pullpass_namespace: the pullpass namespace with a hand-made pull secret for pullpass's
# own images (they are in the private registry too), the Prometheus Operator's CRDs (the chart's
# monitoring objects need them) and pullpass's own CRD (helm installs crds/ on the first install
# only; a deploy over an existing cluster must bring a changed schema, as an upgrade's first step
# would: see the chart's notes).
prepare_pullpass_namespace() {
  kubectl_e2e create namespace pullpass --dry-run=client -o yaml | kubectl_e2e apply -f - >/dev/null
  kubectl_e2e -n pullpass create secret docker-registry pullpass-images --docker-server="$REGISTRY" \
    --docker-username="$REGISTRY_USERNAME" --docker-password="$REGISTRY_PASSWORD" --dry-run=client -o yaml |
    kubectl_e2e apply -f - >/dev/null
  install_operator_crds
  kubectl_e2e apply --server-side --force-conflicts -f "$repo_root/charts/pullpass/crds/" >/dev/null
}

# provider_config_sum: what the kubelet read of its credential provider config when it started.
provider_config_sum() { cat "$CREDENTIAL_PROVIDER_CONFIG"/* 2>/dev/null | sha256sum | cut -c1-16; }

kubectl_e2e() { "$KUBE_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# module_dir GOMODDIR MODULE[@VERSION]: the directory of a module's files, downloaded first if the
# module cache lacks it (go list -m -f {{.Dir}} prints nothing then, and exits 0). The version is
# the one GOMODDIR's go.mod requires unless given. Dies if the module cannot be had.
module_dir() {
  local dir
  dir=$(cd "$1" && go mod download -json "$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] && [ -d "$dir" ] || die "go mod download $2 (in $1) gave no directory"
  printf '%s\n' "$dir"
}

# install_operator_crds: the Prometheus Operator's CRDs, as on a cluster where the operator runs,
# so the chart's ServiceMonitor and PrometheusRule are real objects (prometheus.sh turns them into
# a Prometheus configuration). From the operator's module, which hack/tools/promconfig pins.
install_operator_crds() {
  local operator_dir kind file crds=()
  operator_dir=$(module_dir "$repo_root/hack/tools/promconfig" github.com/prometheus-operator/prometheus-operator)
  for kind in servicemonitors podmonitors prometheusrules; do
    file=$operator_dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml
    [ -f "$file" ] || die "$file is missing from the operator's module"
    crds+=(-f "$file")
  done
  kubectl_e2e apply --server-side --force-conflicts "${crds[@]}" >/dev/null
  kubectl_e2e wait --for condition=established --timeout=60s "${crds[@]}" >/dev/null
}

# build_image CMDDIR BINARY REF ENTRYPOINT: a static Go binary as a one-layer linux/amd64 image,
# pushed with crane (no Docker engine, no base image from the internet).
build_image() {
  local dir=$1 name=$2 ref=$3 entry=$4 work
  work=$(mktemp -d "$E2E_DIR/image.XXXXXX")
  (cd "$repo_root" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags=-s -o "$work/$name" "./$dir")
  tar -C "$work" --owner=0 --group=0 -cf "$work/layer.tar" "$name"
  mkdir -p "$LOGS"
  "$CRANE" append --platform linux/amd64 -f "$work/layer.tar" -t "$ref" >>"$LOGS/images.log" 2>&1
  "$CRANE" mutate --set-platform linux/amd64 --entrypoint "$entry" "$ref" -t "$ref" >>"$LOGS/images.log" 2>&1
  rm -rf "$work"
}

# install_placeholder_provider CONFIGDIR BINDIR: the kubelet refuses an empty credential provider
# config and checks each named binary at start, so the harness keeps one placeholder provider
# that matches no real image and answers "no credentials".
install_placeholder_provider() {
  mkdir -p "$1" "$2"
  cat >"$2/harness-placeholder" <<'PLUGIN'
#!/bin/sh
# Placeholder credential provider of the pullpass e2e harness: answers "no credentials".
cat >/dev/null
echo '{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","auth":{}}'
PLUGIN
  chmod 755 "$2/harness-placeholder"
  cat >"$1/00-harness-placeholder.yaml" <<CONFIG
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
- name: harness-placeholder
  apiVersion: credentialprovider.kubelet.k8s.io/v1
  matchImages: ["placeholder.pullpass-e2e.invalid"]
  defaultCacheDuration: 1m
CONFIG
}

# start_kubelet: the kubelet runs from its root dir and with HOME there, so no legacy docker
# config of the user ($HOME/.docker/config.json, ./config.json) is ever read by it. It reads its
# credential provider config at start only: restart-kubelet.sh restarts it to pick up a change.
start_kubelet() {
  provider_config_sum >"$E2E_DIR/kubelet-provider-config.sum"
  (cd "$KUBELET_ROOT" && start kubelet env HOME="$KUBELET_ROOT" "$BIN/kubelet" \
    --config "$E2E_DIR/kubelet.yaml" --kubeconfig "$E2E_DIR/kubelet.kubeconfig" \
    --root-dir "$KUBELET_ROOT" --hostname-override "$NODE_NAME" \
    --image-credential-provider-config "$CREDENTIAL_PROVIDER_CONFIG" \
    --image-credential-provider-bin-dir "$CREDENTIAL_PROVIDER_BIN")
}
