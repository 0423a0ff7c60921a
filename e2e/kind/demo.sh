#!/usr/bin/env bash
# demo-kind: `make demo`'s story on the kind cluster (kind.yaml: a control plane and two workers),
# pullpass installed with its chart's defaults. The private registry is added with the CLI; in a
# newly opted-in namespace a pod of the private image on each worker gets its pull secret from the
# webhook; then the registry is switched to Cluster scope and a pod on every node, in a plain
# namespace, pulls with no pull secret at all: each node's agent serves its kubelet. No pull
# secret is written by anyone. The cluster stays up to play with (make kind-down).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
if [ "$(engine)" = own ] && [ "$(ip netns identify $$ 2>/dev/null)" != "$NETNS" ]; then
  "$here/up.sh"
  exec "$here/netns.sh" "$0" "$@"
fi
[ -f "$KIND_DIR/ready" ] || "$here/up.sh"
"$here/deploy.sh"
set -a; . "$KIND_DIR/registry.env"; . "$KIND_DIR/endpoints.env"; set +a
if [ "$(engine)" = own ] || ! command -v kubectl >/dev/null; then KUBE_BIN=$(kube_bin); else KUBE_BIN=$(dirname "$(command -v kubectl)"); fi
mkdir -p "$KIND_DIR/bin"
(cd "$repo_root" && CGO_ENABLED=0 go build -o "$KIND_DIR/bin/pullpass" ./cmd/pullpass && ln -sf pullpass "$KIND_DIR/bin/kubectl-pullpass")
ln -sf "$KUBE_BIN/kubectl" "$KIND_DIR/bin/kubectl"
export KUBECONFIG=$KUBECONFIG_KIND PATH=$KIND_DIR/bin:$PATH
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# pods NAMESPACE NODE...: a pod of the private image on each node, then where each ran and with what.
pods() {
  local ns=$1 node; shift
  for node in "$@"; do
    kubectl apply -f - >/dev/null <<POD
apiVersion: v1
kind: Pod
metadata: {name: hello-${node#"$CLUSTER"-}, namespace: $ns}
spec:
  nodeSelector: {kubernetes.io/hostname: $node}
  tolerations: [{operator: Exists}]
  containers: [{name: hello, image: "$E2E_IMAGE", imagePullPolicy: Always}]
POD
  done
  for node in "$@"; do kubectl -n "$ns" wait "pod/hello-${node#"$CLUSTER"-}" --for=condition=Ready --timeout=180s >/dev/null; done
  kubectl -n "$ns" get pods -o custom-columns='POD:.metadata.name,NODE:.spec.nodeName,IP:.status.podIP,PULL SECRETS:.spec.imagePullSecrets[*].name,STATUS:.status.phase'
}
workers=$(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[*].metadata.name}')

step "pullpass: $(kubectl -n pullpass get deploy pullpass-webhook -o jsonpath='{.status.readyReplicas}') webhook replicas behind their Service, an agent on each of $(kubectl -n pullpass get ds pullpass-agent -o jsonpath='{.status.numberReady}') nodes"
kubectl -n pullpass get pods -o wide
kubectl get mutatingwebhookconfiguration pullpass -o jsonpath='{range .webhooks[*]}{.name}: calls service {.clientConfig.service.namespace}/{.clientConfig.service.name}{"\n"}{end}'

step "pullpass registries add $REGISTRY (password on stdin)"
kubectl delete registries.pullpass.io demo-registry --ignore-not-found >/dev/null
printf '%s\n' "$REGISTRY_PASSWORD" | pullpass registries add "$REGISTRY" --name demo-registry --username "$REGISTRY_USERNAME" --password-stdin
pullpass registries list

step "a new namespace opts in; a pod with no imagePullSecrets on each worker"
kubectl delete namespace pullpass-demo --ignore-not-found --wait=true >/dev/null
kubectl create namespace pullpass-demo >/dev/null
kubectl annotate namespace pullpass-demo pullpass.io/inject=enabled >/dev/null
# shellcheck disable=SC2086
pods pullpass-demo $workers
first=${workers%% *}
echo "pod log: $(kubectl -n pullpass-demo logs "hello-${first#"$CLUSTER"-}" | head -n 1)"

step "the registry for every pod of the cluster: Cluster scope, served by each node's agent"
printf '%s\n' "$REGISTRY_PASSWORD" | pullpass registries add "$REGISTRY" --name demo-registry --scope Cluster --username "$REGISTRY_USERNAME" --password-stdin
kubectl delete namespace pullpass-demo-plain --ignore-not-found --wait=true >/dev/null
kubectl create namespace pullpass-demo-plain >/dev/null   # never opted in
for node in $KIND_NODES; do
  cache=$KIND_DIR/nodes/${node#"$CLUSTER"-}/pullpass/credentials.json
  for _ in $(seq 1 60); do grep -q demo-registry "$cache" 2>/dev/null && break; sleep 1; done
  grep -q demo-registry "$cache" || { echo "the agent on $node did not cache demo-registry" >&2; exit 1; }
done
# shellcheck disable=SC2086
pods pullpass-demo-plain $KIND_NODES
echo "secrets in the namespace: '$(kubectl -n pullpass-demo-plain get secrets -o name | tr '\n' ' ')' (none: each kubelet got the credentials from pullpass's plugin)"
curl -s "$AGENT_METRICS_URL" | grep -E '^pullpass_agent_(plugin_requests_total|registry_served)' || true

cat <<NEXT

The cluster is still up. Try:
  e2e/kind/netns.sh env KUBECONFIG=$KUBECONFIG_KIND PATH=$KIND_DIR/bin:\$PATH bash
  kubectl get registries; kubectl pullpass explain $E2E_IMAGE
  curl -s $WEBHOOK_METRICS_URL | grep pullpass_     # a webhook replica's metrics
  make kind-down
NEXT
