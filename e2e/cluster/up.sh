#!/usr/bin/env bash
# cluster-up: a real one-node Kubernetes cluster and an authenticated registry on this machine,
# from Debian packages and the Go module proxy. Idempotent: on a running cluster it does nothing.
# See e2e/README.md for what it starts and the files it writes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "cluster-up must run as root (it starts containerd and a kubelet)"

if alive kubelet && [ -f "$E2E_DIR/registry.env" ] && [ -f "$E2E_DIR/ready" ]; then
  log "cluster already up ($E2E_DIR)"
  exit 0
fi
# A half-started or crashed cluster is taken down first, so up always starts clean.
if ls "$PIDS"/*.pid >/dev/null 2>&1; then
  log "cleaning up a previous cluster that is not fully up"
  "$(dirname "$0")/down.sh"
fi
rm -f "$E2E_DIR/ready"
# Start clean: no objects, pods, images or node state from an earlier cluster. The PKI and the
# registry password are kept, so a kubeconfig copied elsewhere keeps working.
rm -rf "$E2E_DIR/etcd" "$KUBELET_ROOT" "$CONTAINERD_DIR" "$E2E_DIR/registry/data" "$E2E_DIR/token-registry/data" "$LOGS" "$E2E_DIR/pod-logs" "$PROMETHEUS_DIR"

# --- packages ---------------------------------------------------------------------------------
need=()
for pair in etcd:etcd-server containerd:containerd runc:runc docker-registry:docker-registry htpasswd:apache2-utils openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >"$E2E_DIR/apt.log" 2>&1 ||
    { tail -20 "$E2E_DIR/apt.log" >&2; die "apt-get install failed"; }
fi
# The Debian packages start their own daemons; the harness runs its own copies on other
# sockets and ports, so the packaged ones are left as they are.

# --- binaries -----------------------------------------------------------------------------------
KUBE_BIN=$("$(dirname "$0")/../../hack/build-kube.sh" | tail -n 1)
TOOLS_BIN=$("$(dirname "$0")/../../hack/build-tools.sh" crane | tail -n 1)
mkdir -p "$BIN"
ln -sf "$KUBE_BIN"/* "$BIN/"
ln -sf "$TOOLS_BIN/crane" "$BIN/crane"
CRANE=$BIN/crane
(cd "$repo_root" && CGO_ENABLED=0 go build -o "$BIN/runcwrapper" ./e2e/cluster/runcwrapper)

# --- PKI ----------------------------------------------------------------------------------------
mkdir -p "$PKI"
cert() { # cert NAME CN O SANS(ext or "") [clientAuth|serverAuth|both]
  local name=$1 cn=$2 o=$3 sans=$4 usage=$5
  [ -f "$PKI/$name.crt" ] && return 0
  local subj="/CN=$cn"; [ -n "$o" ] && subj="/O=$o$subj"
  local eku=clientAuth; [ "$usage" = server ] && eku=serverAuth; [ "$usage" = both ] && eku="serverAuth,clientAuth"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
if [ ! -f "$PKI/ca.crt" ]; then
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=pullpass-e2e-ca" \
    -days 3650 -sha256 -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt" 2>/dev/null
fi
cert apiserver kube-apiserver "" "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1" server
cert admin pullpass-e2e-admin system:masters "" client
cert controller-manager system:kube-controller-manager "" "" client
cert scheduler system:kube-scheduler "" "" client
cert kubelet "system:node:$NODE_NAME" system:nodes "" client
cert kubelet-serving "$NODE_NAME" "" "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1" server
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "" client
cert registry registry "" "DNS:localhost,IP:127.0.0.1" server
[ -f "$PKI/sa.key" ] || { openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null && openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null; }

kubeconfig() { # kubeconfig FILE CERTNAME
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pullpass-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: pullpass-e2e
  context: {cluster: pullpass-e2e, user: $2}
current-context: pullpass-e2e
EOF
}
kubeconfig "$KUBECONFIG_ADMIN" admin
kubeconfig "$E2E_DIR/controller-manager.kubeconfig" controller-manager
kubeconfig "$E2E_DIR/scheduler.kubeconfig" scheduler
kubeconfig "$E2E_DIR/kubelet.kubeconfig" kubelet

# --- etcd ---------------------------------------------------------------------------------------
start etcd etcd --name pullpass-e2e --data-dir "$E2E_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "pullpass-e2e=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
  --quota-backend-bytes 2147483648 --unsafe-no-fsync
wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

# --- registry -----------------------------------------------------------------------------------
mkdir -p "$E2E_DIR/registry/data"
if [ ! -f "$E2E_DIR/registry/htpasswd" ]; then
  REGISTRY_PASSWORD=$(openssl rand -hex 16)
  htpasswd -Bbn "$REGISTRY_USERNAME" "$REGISTRY_PASSWORD" >"$E2E_DIR/registry/htpasswd"
  echo "$REGISTRY_PASSWORD" >"$E2E_DIR/registry/password"
  chmod 600 "$E2E_DIR/registry/password"
fi
REGISTRY_PASSWORD=$(cat "$E2E_DIR/registry/password")
cat >"$E2E_DIR/registry/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $E2E_DIR/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
  tls:
    certificate: $PKI/registry.crt
    key: $PKI/registry.key
auth:
  htpasswd:
    realm: pullpass-e2e
    path: $E2E_DIR/registry/htpasswd
EOF
start registry docker-registry serve "$E2E_DIR/registry/config.yml"
wait_for registry 30 curl -s --cacert "$PKI/ca.crt" -o /dev/null "https://$REGISTRY_HOST/v2/"
code=$(curl -s --cacert "$PKI/ca.crt" -o /dev/null -w '%{http_code}' "https://$REGISTRY_HOST/v2/")
[ "$code" = 401 ] || die "registry answers $code without credentials; it must answer 401"
. "$(dirname "$0")/token-registry.sh"

# --- images (no Docker, nothing from the internet) ---------------------------------------------
export SSL_CERT_FILE=$PKI/ca.crt
mkdir -p "$DOCKER_CONFIG"
"$CRANE" auth login "$REGISTRY_HOST" -u "$REGISTRY_USERNAME" -p "$REGISTRY_PASSWORD" >/dev/null 2>&1
PAUSE_IMAGE=$REGISTRY_HOST/e2e/pause:1
E2E_IMAGE=$REGISTRY_HOST/e2e/hello:1
build_image e2e/images/pause pause "$PAUSE_IMAGE" /pause
build_image e2e/images/hello hello "$E2E_IMAGE" /hello,serve
# Docker Hub cannot be reached from here: the harness registry stands in for it (containerd's
# docker.io mirror below), with the images Docker Hub's docs and the CLI seeds name.
for repo in library/nginx yourname/app yourname/postgres; do
  "$CRANE" copy "$E2E_IMAGE" "$REGISTRY_HOST/$repo:latest" >>"$LOGS/images.log" 2>&1
done
"$CRANE" auth login "$TOKEN_REGISTRY_HOST" -u "$TOKEN_REGISTRY_USERNAME" -p "$TOKEN_REGISTRY_PASSWORD" >/dev/null 2>&1
TOKEN_E2E_IMAGE=$TOKEN_REGISTRY_HOST/e2e/hello:1
"$CRANE" copy "$E2E_IMAGE" "$TOKEN_E2E_IMAGE" >>"$LOGS/images.log" 2>&1 || die "pushing to the token registry failed; see $LOGS/images.log"
log "pushed $PAUSE_IMAGE and $E2E_IMAGE, docker.io stand-ins, and $TOKEN_E2E_IMAGE through the token flow"

# --- containerd ---------------------------------------------------------------------------------
# The registry answers as localhost:PORT and as 127.0.0.1:PORT (REGISTRY_ALIAS): two hosts,
# so a test can serve one through the node and leave the other alone.
mkdir -p "$E2E_DIR/cni/bin" "$E2E_DIR/cni/conf"
# registry_hosts NAMESPACE SERVER HOST: containerd pulls NAMESPACE's images from HOST, the
# harness registry, trusting its CA.
registry_hosts() {
  mkdir -p "$CONTAINERD_DIR/certs.d/$1"
  cat >"$CONTAINERD_DIR/certs.d/$1/hosts.toml" <<EOF
server = "$2"
[host."https://$3"]
  capabilities = ["pull", "resolve"]
  ca = "$PKI/ca.crt"
EOF
}
for h in "$REGISTRY_HOST" "$REGISTRY_ALIAS" "$TOKEN_REGISTRY_HOST"; do
  registry_hosts "$h" "https://$h" "$h"
done
# docker.io is pulled from the harness registry, with the credentials the kubelet passes (it
# passes them with no server address, so containerd sends them to the mirror): a Docker Hub image
# pulls only with the harness registry's credentials; without, containerd falls back to Docker
# Hub, which is not reachable.
registry_hosts docker.io https://registry-1.docker.io "$REGISTRY_HOST"
cat >"$CONTAINERD_DIR/config.toml" <<EOF
version = 2
root = "$CONTAINERD_DIR/root"
state = "$CONTAINERD_DIR/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$BIN/runcwrapper"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$E2E_DIR/cni/bin"
    conf_dir = "$E2E_DIR/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CONTAINERD_DIR/certs.d"
EOF
start containerd containerd --config "$CONTAINERD_DIR/config.toml"
wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
# The sandbox image must be present before the first pod: the CRI pulls it with no credentials.
ctr --address "$CONTAINERD_SOCK" -n k8s.io images pull --hosts-dir "$CONTAINERD_DIR/certs.d" \
  --user "$REGISTRY_USERNAME:$REGISTRY_PASSWORD" "$PAUSE_IMAGE" >/dev/null

# --- control plane ------------------------------------------------------------------------------
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" --advertise-address 127.0.0.1 \
  --endpoint-reconciler-type none \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types Hostname \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction \
  --enable-aggregator-routing=true \
  --allow-privileged=true
wait_for kube-apiserver 120 "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" get --raw /readyz

# The node lifecycle controller is off: with no CNI the node stays NotReady, and the controller
# would taint it and evict everything. Pods of the harness use the host network.
start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$E2E_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$E2E_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$E2E_DIR/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$CONTROLLER_MANAGER_PORT" \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --use-service-account-credentials=true \
  --controllers '*,-node-lifecycle-controller' \
  --leader-elect=false
start kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig "$E2E_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig "$E2E_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig "$E2E_DIR/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false
wait_for kube-controller-manager 60 curl -skf "https://127.0.0.1:$CONTROLLER_MANAGER_PORT/healthz"
wait_for kube-scheduler 60 curl -skf "https://127.0.0.1:$SCHEDULER_PORT/healthz"

# --- kubelet ------------------------------------------------------------------------------------
# The credential provider flags point at harness dirs, where the node agent installs its
# plugin. The kubelet refuses an empty config and checks each named binary at start, so the
# harness keeps one placeholder provider that matches no real image.
# The kubelet adds KUBE-* chains to the host's iptables (it runs on the host's network):
# remembered when they were not there before, so cluster-down removes them again.
if ! iptables -t mangle -S KUBE-KUBELET-CANARY >/dev/null 2>&1 && [ ! -f "$E2E_DIR/kube-chains-ours" ]; then
  touch "$E2E_DIR/kube-chains-ours"
fi
mkdir -p "$KUBELET_ROOT" "$CREDENTIAL_PROVIDER_CONFIG" "$CREDENTIAL_PROVIDER_BIN"
install_placeholder_provider "$CREDENTIAL_PROVIDER_CONFIG" "$CREDENTIAL_PROVIDER_BIN"
cat >"$E2E_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: ""
serializeImagePulls: false
# Pod logs under the harness dir: a kubelet deletes the log dirs of pods it does not know, so two
# harnesses (or a harness and a real node) sharing /var/log/pods would delete each other's.
podLogsDir: $E2E_DIR/pod-logs
EOF
start_kubelet
wait_for kubelet 120 kubectl_e2e get node "$NODE_NAME"
wait_for kubelet 120 kubectl_e2e -n default get serviceaccount default

cat >"$E2E_DIR/registry.env" <<EOF
REGISTRY=$REGISTRY_HOST
REGISTRY_ALIAS=$REGISTRY_ALIAS
REGISTRY_USERNAME=$REGISTRY_USERNAME
REGISTRY_PASSWORD=$REGISTRY_PASSWORD
REGISTRY_CA=$PKI/ca.crt
TOKEN_REGISTRY=$TOKEN_REGISTRY_HOST
TOKEN_REGISTRY_USERNAME=$TOKEN_REGISTRY_USERNAME
TOKEN_REGISTRY_PASSWORD=$TOKEN_REGISTRY_PASSWORD
TOKEN_REGISTRY_STATE_URL=https://$TOKEN_REGISTRY_HOST/__harness/state
TOKEN_E2E_IMAGE=$TOKEN_E2E_IMAGE
E2E_IMAGE=$E2E_IMAGE
DOCKER_HUB_MIRROR=$REGISTRY_HOST
PAUSE_IMAGE=$PAUSE_IMAGE
NODE_NAME=$NODE_NAME
CREDENTIAL_PROVIDER_CONFIG=$CREDENTIAL_PROVIDER_CONFIG
CREDENTIAL_PROVIDER_BIN=$CREDENTIAL_PROVIDER_BIN
EOF
chmod 600 "$E2E_DIR/registry.env"
touch "$E2E_DIR/ready"
log "cluster up: KUBECONFIG=$KUBECONFIG_ADMIN, registry $REGISTRY_HOST (see $E2E_DIR/registry.env)"
