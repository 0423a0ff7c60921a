#!/usr/bin/env bash
# demo: the README's main job. A real cluster (the harness), pullpass deployed with its chart,
# the private registry added with the CLI, a pod in a newly opted-in namespace running the
# private image (the webhook adds the pull secret), then the same registry switched to Cluster scope and
# a pod in a plain namespace running it with no pull secret at all (the node agent serves the
# kubelet). No pull secret is written by anyone. The cluster stays up to play with.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
KUBE_BIN=$BIN
"$(dirname "$0")/up.sh"
"$(dirname "$0")/deploy.sh"
set -a; . "$E2E_DIR/registry.env"; set +a
(cd "$repo_root" && CGO_ENABLED=0 go build -o "$BIN/pullpass" ./cmd/pullpass && ln -sf pullpass "$BIN/kubectl-pullpass")
export KUBECONFIG=$KUBECONFIG_ADMIN PATH=$BIN:$PATH

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "pullpass registries add $REGISTRY (password on stdin)"
printf '%s\n' "$REGISTRY_PASSWORD" | pullpass registries add "$REGISTRY" --name demo-registry --username "$REGISTRY_USERNAME" --password-stdin
pullpass registries list

step "a new namespace opts in, and a pod with no imagePullSecrets uses the private image"
kubectl delete namespace pullpass-demo --ignore-not-found --wait=true >/dev/null
kubectl create namespace pullpass-demo
kubectl annotate namespace pullpass-demo pullpass.io/inject=enabled
kubectl apply -f - <<POD
apiVersion: v1
kind: Pod
metadata:
  name: hello
  namespace: pullpass-demo
spec:
  hostNetwork: true                  # the harness has no CNI
  tolerations: [{operator: Exists}]
  containers:
    - name: hello
      image: $E2E_IMAGE              # private: 401 without credentials
      imagePullPolicy: Always
POD
kubectl -n pullpass-demo wait pod/hello --for=condition=Ready --timeout=120s
kubectl -n pullpass-demo get pod hello -o wide
echo "imagePullSecrets added by pullpass: $(kubectl -n pullpass-demo get pod hello -o jsonpath='{.spec.imagePullSecrets[*].name}')"
echo "pod log: $(kubectl -n pullpass-demo logs hello)"
kubectl -n pullpass-demo get events --field-selector involvedObject.name=hello -o custom-columns=REASON:.reason,MESSAGE:.message

step "why that registry"
pullpass explain "$E2E_IMAGE" || true

step "the registry for every pod of the cluster: Cluster scope, served by the node agent"
printf '%s\n' "$REGISTRY_PASSWORD" | pullpass registries add "$REGISTRY" --name demo-registry --scope Cluster --username "$REGISTRY_USERNAME" --password-stdin
kubectl delete namespace pullpass-demo-plain --ignore-not-found --wait=true >/dev/null
kubectl create namespace pullpass-demo-plain   # never opted in
for _ in $(seq 1 60); do
  curl -s http://127.0.0.1:28081/metrics | grep -q '^pullpass_agent_registry_served{registry="demo-registry"} 1' && break
  sleep 1
done
kubectl apply -f - <<POD
apiVersion: v1
kind: Pod
metadata:
  name: hello
  namespace: pullpass-demo-plain
spec:
  hostNetwork: true
  tolerations: [{operator: Exists}]
  containers:
    - name: hello
      image: $E2E_IMAGE
      imagePullPolicy: Always
POD
kubectl -n pullpass-demo-plain wait pod/hello --for=condition=Ready --timeout=120s
kubectl -n pullpass-demo-plain get pod hello -o wide
echo "imagePullSecrets: '$(kubectl -n pullpass-demo-plain get pod hello -o jsonpath='{.spec.imagePullSecrets[*].name}')' (none: the kubelet got the credentials from pullpass's plugin)"
echo "secrets in the namespace: $(kubectl -n pullpass-demo-plain get secrets -o name | tr '\n' ' ')"
curl -s http://127.0.0.1:28081/metrics | grep -E '^pullpass_agent_(plugin_requests_total|registry_served)'

cat <<NEXT

The cluster is still up. Try:
  export KUBECONFIG=$KUBECONFIG_ADMIN PATH=$BIN:\$PATH
  kubectl get registries
  kubectl pullpass explain $E2E_IMAGE
  curl -s http://127.0.0.1:28080/metrics | grep pullpass_      # the webhook's metrics
  curl -s http://127.0.0.1:28081/metrics | grep pullpass_      # the node agent's
  make cluster-down        # stop everything (the suite, make e2e, expects a cluster without the demo's registries)
NEXT
