#!/usr/bin/env bash
# kind-up: a kind cluster from kind.yaml (one control plane, two workers) with a private TLS +
# htpasswd registry beside it, writing the harness's contract under _output/kind (kubeconfig,
# registry.env; see e2e/README.md). Idempotent: a running cluster is kept.
#
# Engine (e2e/kind/lib.sh): with a reachable Docker engine, that engine and kind's published
# node image; without one, the project's own dockerd in its own network namespace and a node
# image built here offline (node-image.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)

# --- the engine -------------------------------------------------------------------------------
if [ -n "${PULLPASS_KIND_ENGINE:-}" ]; then
  echo "$PULLPASS_KIND_ENGINE" >"$KIND_DIR/engine"
elif [ -z "$(engine)" ]; then
  if docker info >/dev/null 2>&1; then echo host; else echo own; fi >"$KIND_DIR/engine"
fi
case "$(engine)" in
  own)
    [ "$(id -u)" = 0 ] || die "the own engine needs root (a network namespace and a dockerd)"
    "$here/dockerd.sh" start
    NODE_IMAGE=$("$here/node-image.sh")
    ;;
  host)
    docker info >/dev/null 2>&1 || die "no Docker engine reachable (unset PULLPASS_KIND_ENGINE to use the project's own)"
    NODE_IMAGE=${KIND_NODE_IMAGE:-}   # empty: kind's default node image
    ;;
  *) die "unknown engine '$(engine)' in $KIND_DIR/engine (host or own)" ;;
esac
use_engine
log "engine: $(engine)${DOCKER_HOST:+ ($DOCKER_HOST)}"
TOOLS_BIN=$(tools_bin crane kind)
CRANE=$TOOLS_BIN/crane KIND=$TOOLS_BIN/kind
if [ "$(engine)" = own ] || ! command -v kubectl >/dev/null; then KUBECTL=$(kube_bin)/kubectl; else KUBECTL=kubectl; fi
kubectl_kind() { in_netns "$KUBECTL" --kubeconfig "$KUBECONFIG_KIND" "$@"; }

# --- registry credentials and certificates (kept across runs) ---------------------------------
mkdir -p "$PKI" "$KIND_DIR/auth"
if [ ! -f "$PKI/ca.crt" ]; then
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=pullpass-kind-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$PKI/ca.crt" 2>/dev/null
fi
# A certificate made before the alias was a name of the registry is made again.
if [ -f "$PKI/registry.crt" ] && ! openssl x509 -in "$PKI/registry.crt" -noout -text | grep -q "DNS:$REGISTRY_ALIAS_NAME"; then
  rm -f "$PKI/registry.crt" "$PKI/registry.key"
  docker rm -f "$REGISTRY_CONTAINER" >/dev/null 2>&1 || true
fi
if [ ! -f "$PKI/registry.crt" ]; then
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/registry.key" -subj "/CN=$REGISTRY_CONTAINER" -out "$PKI/registry.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,DNS:%s,DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$REGISTRY_CONTAINER" "$REGISTRY_ALIAS_NAME" >"$PKI/registry.ext"
  openssl x509 -req -in "$PKI/registry.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 365 -sha256 \
    -extfile "$PKI/registry.ext" -out "$PKI/registry.crt" 2>/dev/null
  rm -f "$PKI/registry.csr" "$PKI/registry.ext"
fi
if [ ! -f "$KIND_DIR/auth/password" ]; then
  openssl rand -hex 16 >"$KIND_DIR/auth/password"
  chmod 600 "$KIND_DIR/auth/password"
fi
REGISTRY_PASSWORD=$(cat "$KIND_DIR/auth/password")
if [ ! -s "$KIND_DIR/auth/htpasswd" ]; then
  "$here/registry-user.sh" --no-restart "$REGISTRY_USERNAME" "$REGISTRY_PASSWORD"
fi

# --- per-node dirs: each node its own credential provider config, plugin dir and pullpass cache
# (kind.yaml mounts them). The kubelet refuses an empty provider config: a placeholder provider.
nodes=$(awk '/^nodes:/ { on = 1 } on && /- role:/ { print $3 }' "$repo_root/kind.yaml")
suffix() { local role=$1 n=$2; if [ "$n" -le 1 ]; then echo "$role"; else echo "$role$n"; fi; }
declare -A seen=()
node_names=()
for role in $nodes; do
  seen[$role]=$(( ${seen[$role]:-0} + 1 ))
  node_names+=("$CLUSTER-$(suffix "$role" "${seen[$role]}")")
done
fresh=false
"$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER" || fresh=true
# A new cluster starts clean: no provider config or cache left by an earlier one.
if $fresh; then rm -rf "$KIND_DIR/nodes" "$KIND_DIR/ready" "$KIND_DIR/endpoints.env"; fi
for n in "${node_names[@]}"; do
  d=$KIND_DIR/nodes/${n#"$CLUSTER"-}
  mkdir -p "$d/pullpass"
  install_placeholder_provider "$d/image-credential-provider/config" "$d/image-credential-provider/bin"
  # What the kubelet reads at start; deploy.sh restarts it when the agent changed that.
  $fresh && cat "$d/image-credential-provider/config"/* | sha256sum | cut -c1-16 >"$d/kubelet-provider-config.sum"
done

# --- the cluster --------------------------------------------------------------------------------
if $fresh; then
  log "creating kind cluster $CLUSTER (${#node_names[@]} nodes${NODE_IMAGE:+, image $NODE_IMAGE})"
  (cd "$repo_root" && "$KIND" create cluster --config kind.yaml --name "$CLUSTER" --kubeconfig "$KUBECONFIG_KIND" \
    ${NODE_IMAGE:+--image "$NODE_IMAGE"} --retain) 2>&1 | tee "$LOGS/kind-create.log" >&2 ||
    die "kind create cluster failed; see $LOGS/kind-create.log (kind export logs --name $CLUSTER)"
fi
"$KIND" get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_KIND"
chmod 600 "$KUBECONFIG_KIND"

# --- the registry -------------------------------------------------------------------------------
if [ "$(engine)" = own ]; then
  rootfs=$("$here/build-rootfs.sh" registry docker-registry ca-certificates)
  REGISTRY_IMAGE=pullpass/kind-registry:$(basename "$rootfs" .tar)
  docker image inspect "$REGISTRY_IMAGE" >/dev/null 2>&1 ||
    docker import --change 'ENTRYPOINT ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]' "$rootfs" "$REGISTRY_IMAGE" >/dev/null
else
  REGISTRY_IMAGE=${KIND_REGISTRY_IMAGE:-registry:2}
fi
if [ -z "$(docker ps -q -f name="^$REGISTRY_CONTAINER$")" ]; then
  docker rm -f "$REGISTRY_CONTAINER" >/dev/null 2>&1 || true
  # Published on the engine's loopback for pushing; on the kind network for the nodes.
  docker run -d --restart=always --name "$REGISTRY_CONTAINER" --network kind --network-alias "$REGISTRY_ALIAS_NAME" -p "127.0.0.1:5001:5000" \
    -v "$PKI:/certs:ro" -v "$KIND_DIR/auth:/auth:ro" \
    -e REGISTRY_HTTP_ADDR=0.0.0.0:5000 \
    -e REGISTRY_HTTP_TLS_CERTIFICATE=/certs/registry.crt -e REGISTRY_HTTP_TLS_KEY=/certs/registry.key \
    -e REGISTRY_AUTH=htpasswd -e REGISTRY_AUTH_HTPASSWD_REALM=pullpass-kind -e REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd \
    -e REGISTRY_STORAGE_DELETE_ENABLED=true \
    "$REGISTRY_IMAGE" >/dev/null
  log "started registry container $REGISTRY_CONTAINER ($REGISTRY_IMAGE)"
fi
code=000
for _ in $(seq 1 60); do
  code=$(in_netns curl -s --cacert "$PKI/ca.crt" -o /dev/null -w '%{http_code}' "https://localhost:5001/v2/" || true)
  [ "$code" = 401 ] && break
  sleep 0.5
done
[ "$code" = 401 ] || die "the registry answers $code without credentials; it must answer 401 (docker logs $REGISTRY_CONTAINER)"

# The registry's names for the cluster are its container's, REGISTRY_CONTAINER:5000, and a network
# alias (REGISTRY_ALIAS: a second host, which the node serves only when told): nodes and pods
# (through kind's DNS, which forwards to docker's) resolve both, so pullpass's webhook logs in to
# them as in a user's cluster. Each node's containerd trusts its CA there, and also reaches it as
# localhost:5001, where pullpass's own images are pushed from this machine.
REGISTRY_NAME=$REGISTRY_CONTAINER:5000
for node in $("$KIND" get nodes --name "$CLUSTER"); do
  for h in "$REGISTRY_NAME" "$REGISTRY_ALIAS_NAME:5000" localhost:5001; do
    dir=/etc/containerd/certs.d/$h
    docker exec "$node" mkdir -p "$dir"
    docker cp "$PKI/ca.crt" "$node:$dir/ca.crt"
    printf 'server = "https://%s"\n[host."https://%s:5000"]\n  capabilities = ["pull", "resolve"]\n  ca = "%s/ca.crt"\n' \
      "$h" "$REGISTRY_CONTAINER" "$dir" | docker exec -i "$node" tee "$dir/hosts.toml" >/dev/null
  done
done

# --- wait for the nodes and the system pods -------------------------------------------------
kubectl_kind wait node --all --for=condition=Ready --timeout=300s >/dev/null ||
  { kubectl_kind get nodes -o wide >&2; kubectl_kind -n kube-system get pods -o wide >&2; die "nodes not Ready"; }
kubectl_kind -n kube-system wait pod --all --for=condition=Ready --timeout=300s >/dev/null ||
  { kubectl_kind -n kube-system get pods -o wide >&2; die "kube-system pods not Ready"; }
kubectl_kind -n default get serviceaccount default >/dev/null

# --- test images (no Docker build, nothing from the internet) ---------------------------------
export SSL_CERT_FILE=$PKI/ca.crt
in_netns "$CRANE" auth login localhost:5001 -u "$REGISTRY_USERNAME" -p "$REGISTRY_PASSWORD" >/dev/null 2>&1
# Pushed from here to localhost:5001; pulled by the cluster as $REGISTRY_NAME (the same registry).
E2E_IMAGE=$REGISTRY_NAME/e2e/hello:1
PAUSE_IMAGE=$REGISTRY_NAME/e2e/pause:1
build_image_netns() { # DIR BINARY REF ENTRYPOINT
  local work
  work=$(mktemp -d "$KIND_DIR/image.XXXXXX")
  (cd "$repo_root" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags=-s -o "$work/$2" "./$1")
  tar -C "$work" --owner=0 --group=0 -cf "$work/layer.tar" "$2"
  in_netns "$CRANE" append --platform linux/amd64 -f "$work/layer.tar" -t "$3" >>"$LOGS/images.log" 2>&1
  in_netns "$CRANE" mutate --set-platform linux/amd64 --entrypoint "$4" "$3" -t "$3" >>"$LOGS/images.log" 2>&1
  rm -rf "$work"
}
build_image_netns e2e/images/hello hello "localhost:5001/e2e/hello:1" /hello,serve
build_image_netns e2e/images/pause pause "localhost:5001/e2e/pause:1" /pause

first=${node_names[1]:-${node_names[0]}}
cat >"$KIND_DIR/registry.env" <<ENV
REGISTRY=$REGISTRY_NAME
REGISTRY_ALIAS=$REGISTRY_ALIAS_NAME:5000
PUSH_REGISTRY=localhost:5001
REGISTRY_USERNAME=$REGISTRY_USERNAME
REGISTRY_PASSWORD=$REGISTRY_PASSWORD
REGISTRY_CA=$PKI/ca.crt
E2E_IMAGE=$E2E_IMAGE
PAUSE_IMAGE=$PAUSE_IMAGE
NODE_NAME=$first
CREDENTIAL_PROVIDER_CONFIG=$KIND_DIR/nodes/${first#"$CLUSTER"-}/image-credential-provider/config
CREDENTIAL_PROVIDER_BIN=$KIND_DIR/nodes/${first#"$CLUSTER"-}/image-credential-provider/bin
KIND_NODES="${node_names[*]}"
KIND_ENGINE=$(engine)
KUBECTL=$(command -v "$KUBECTL")
ENV
chmod 600 "$KIND_DIR/registry.env"
touch "$KIND_DIR/ready"
log "kind cluster $CLUSTER up: KUBECONFIG=$KUBECONFIG_KIND, registry $REGISTRY_NAME, pushed to as localhost:5001 (see $KIND_DIR/registry.env)"
