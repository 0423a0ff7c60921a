#!/usr/bin/env bash
# demo-kind: `make demo` on a Docker machine, with kind (kind.yaml) instead of the harness. Not run
# on the Docker-less harness machine, where it is untested.
set -euo pipefail
E2E_DIR=${E2E_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/_output/kind}
. "$(dirname "$0")/../cluster/lib.sh"
"$(dirname "$0")/up.sh"
"$(dirname "$0")/deploy.sh"
set -a; . "$E2E_DIR/registry.env"; set +a
mkdir -p "$E2E_DIR/bin"
(cd "$repo_root" && CGO_ENABLED=0 go build -o "$E2E_DIR/bin/pullpass" ./cmd/pullpass && ln -sf pullpass "$E2E_DIR/bin/kubectl-pullpass")
export KUBECONFIG=$E2E_DIR/kubeconfig PATH=$E2E_DIR/bin:$PATH
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pod() { # pod NAMESPACE
  kubectl apply -f - <<POD
apiVersion: v1
kind: Pod
metadata: {name: hello, namespace: $1}
spec:
  containers: [{name: hello, image: "$E2E_IMAGE", imagePullPolicy: Always}]
POD
  kubectl -n "$1" wait pod/hello --for=condition=Ready --timeout=180s
  echo "imagePullSecrets: '$(kubectl -n "$1" get pod hello -o jsonpath='{.spec.imagePullSecrets[*].name}')'"
}
step "pullpass registries add $REGISTRY"
printf '%s\n' "$REGISTRY_PASSWORD" | pullpass registries add "$REGISTRY" --name demo-registry --username "$REGISTRY_USERNAME" --password-stdin
step "an opted-in namespace: the webhook adds the pull secret"
kubectl create namespace pullpass-demo --dry-run=client -o yaml | kubectl apply -f -
kubectl annotate namespace pullpass-demo pullpass.io/inject=enabled --overwrite
pod pullpass-demo
step "Cluster scope: a plain namespace, no pull secret at all"
printf '%s\n' "$REGISTRY_PASSWORD" | pullpass registries add "$REGISTRY" --name demo-registry --scope Cluster --username "$REGISTRY_USERNAME" --password-stdin
kubectl create namespace pullpass-demo-plain --dry-run=client -o yaml | kubectl apply -f -
sleep 10
pod pullpass-demo-plain
cat <<NEXT

Try: export KUBECONFIG=$E2E_DIR/kubeconfig PATH=$E2E_DIR/bin:\$PATH
  kubectl get registries; kubectl pullpass explain $E2E_IMAGE
  curl -s http://127.0.0.1:18080/metrics | grep pullpass_; curl -s http://127.0.0.1:18081/metrics | grep pullpass_
  make kind-down
NEXT
