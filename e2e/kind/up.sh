#!/usr/bin/env bash
# e2e-kind: a kind cluster (kind.yaml) with a private TLS + htpasswd registry beside it, for
# machines with Docker. It writes the same contract as the harness, under _output/kind:
# kubeconfig and registry.env, so the same e2e suite runs there.
set -euo pipefail
E2E_DIR=${E2E_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/_output/kind}
. "$(dirname "$0")/../cluster/lib.sh"

command -v docker >/dev/null && docker info >/dev/null 2>&1 || die "e2e-kind needs a running Docker engine"
CLUSTER=pullpass
REGISTRY_CONTAINER=pullpass-kind-registry
REGISTRY_HOST=localhost:5001
TOOLS_BIN=$("$(dirname "$0")/../cluster/build-tools.sh" crane kind | tail -n 1)
CRANE=$TOOLS_BIN/crane
KIND=$TOOLS_BIN/kind

mkdir -p "$PKI" "$E2E_DIR/auth"
[ -f "$PKI/ca.crt" ] || openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=pullpass-kind-ca" \
  -days 3650 -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$PKI/ca.crt" 2>/dev/null
if [ ! -f "$PKI/registry.crt" ]; then
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/registry.key" -subj "/CN=registry" -out "$PKI/registry.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$REGISTRY_CONTAINER" >"$PKI/registry.ext"
  openssl x509 -req -in "$PKI/registry.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 365 -extfile "$PKI/registry.ext" -out "$PKI/registry.crt" 2>/dev/null
fi
if [ ! -f "$E2E_DIR/auth/password" ]; then
  openssl rand -hex 16 >"$E2E_DIR/auth/password"
  docker run --rm --entrypoint htpasswd httpd:2 -Bbn "$REGISTRY_USERNAME" "$(cat "$E2E_DIR/auth/password")" >"$E2E_DIR/auth/htpasswd"
fi
REGISTRY_PASSWORD=$(cat "$E2E_DIR/auth/password")

if [ -z "$(docker ps -q -f name="^$REGISTRY_CONTAINER$")" ]; then
  docker rm -f "$REGISTRY_CONTAINER" >/dev/null 2>&1 || true
  docker run -d --restart=always --name "$REGISTRY_CONTAINER" -p "127.0.0.1:5001:5000" \
    -v "$PKI:/certs:ro" -v "$E2E_DIR/auth:/auth:ro" \
    -e REGISTRY_HTTP_TLS_CERTIFICATE=/certs/registry.crt -e REGISTRY_HTTP_TLS_KEY=/certs/registry.key \
    -e REGISTRY_AUTH=htpasswd -e REGISTRY_AUTH_HTPASSWD_REALM=pullpass-kind -e REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd \
    registry:2 >/dev/null
fi

install_placeholder_provider "$E2E_DIR/credential-provider/config" "$E2E_DIR/credential-provider/bin"
if ! "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  (cd "$repo_root" && "$KIND" create cluster --config kind.yaml --name "$CLUSTER" --kubeconfig "$E2E_DIR/kubeconfig")
fi
"$KIND" get kubeconfig --name "$CLUSTER" >"$E2E_DIR/kubeconfig"
docker network connect kind "$REGISTRY_CONTAINER" 2>/dev/null || true
for node in $("$KIND" get nodes --name "$CLUSTER"); do
  dir=/etc/containerd/certs.d/$REGISTRY_HOST
  docker exec "$node" mkdir -p "$dir"
  docker cp "$PKI/ca.crt" "$node:$dir/ca.crt"
  printf 'server = "https://%s"\n[host."https://%s:5000"]\n  capabilities = ["pull", "resolve"]\n  ca = "%s/ca.crt"\n' \
    "$REGISTRY_HOST" "$REGISTRY_CONTAINER" "$dir" | docker exec -i "$node" tee "$dir/hosts.toml" >/dev/null
done

export SSL_CERT_FILE=$PKI/ca.crt
"$CRANE" auth login "$REGISTRY_HOST" -u "$REGISTRY_USERNAME" -p "$REGISTRY_PASSWORD" >/dev/null 2>&1
E2E_IMAGE=$REGISTRY_HOST/e2e/hello:1
build_image e2e/images/hello hello "$E2E_IMAGE" /hello,serve
cat >"$E2E_DIR/registry.env" <<ENV
REGISTRY=$REGISTRY_HOST
REGISTRY_USERNAME=$REGISTRY_USERNAME
REGISTRY_PASSWORD=$REGISTRY_PASSWORD
REGISTRY_CA=$PKI/ca.crt
E2E_IMAGE=$E2E_IMAGE
CREDENTIAL_PROVIDER_CONFIG=$E2E_DIR/credential-provider/config
CREDENTIAL_PROVIDER_BIN=$E2E_DIR/credential-provider/bin
ENV
log "kind cluster $CLUSTER up: KUBECONFIG=$E2E_DIR/kubeconfig, registry $REGISTRY_HOST"
