#!/usr/bin/env bash
# deploy on kind: builds pullpass's images, pushes them to the registry beside the kind cluster
# (e2e/kind/up.sh) and installs the chart with the agent pointed at the kubelets' provider dirs
# (kind.yaml); restarts each node's kubelet after the agent's first install; port-forwards the
# metrics and writes _output/kind/endpoints.env. Needs Docker; not run on the Docker-less harness
# machine, where it is untested.
set -euo pipefail
E2E_DIR=${E2E_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/_output/kind}
. "$(dirname "$0")/../cluster/lib.sh"
[ -f "$E2E_DIR/kubeconfig" ] || die "the kind cluster is not up: run e2e/kind/up.sh"
set -a; . "$E2E_DIR/registry.env"; set +a
KUBECONFIG_ADMIN=$E2E_DIR/kubeconfig
TOOLS_BIN=$("$(dirname "$0")/../cluster/build-tools.sh" crane helm kind | tail -n 1)
CRANE=$TOOLS_BIN/crane HELM=$TOOLS_BIN/helm KIND=$TOOLS_BIN/kind
export SSL_CERT_FILE=$REGISTRY_CA
kubectl_e2e() { kubectl --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

tag=dev-$(cd "$repo_root" && git rev-parse --short HEAD)-$(date +%s)
build_image_of "$REGISTRY/pullpass/pullpass-webhook:$tag" 65532 /pullpass-webhook cmd/pullpass-webhook
build_image_of "$REGISTRY/pullpass/pullpass-agent:$tag" 0 /pullpass-agent cmd/pullpass-agent cmd/pullpass-credential-provider

kubectl_e2e create namespace pullpass --dry-run=client -o yaml | kubectl_e2e apply -f - >/dev/null
kubectl_e2e -n pullpass create secret docker-registry pullpass-images --docker-server="$REGISTRY" \
  --docker-username="$REGISTRY_USERNAME" --docker-password="$REGISTRY_PASSWORD" --dry-run=client -o yaml | kubectl_e2e apply -f - >/dev/null
before=$(provider_config_sum)
"$HELM" upgrade --install pullpass "$repo_root/charts/pullpass" --kubeconfig "$KUBECONFIG_ADMIN" \
  --namespace pullpass --create-namespace --set imagePullSecrets="{pullpass-images}" \
  --set image.webhookRepository="$REGISTRY/pullpass/pullpass-webhook" --set image.agentRepository="$REGISTRY/pullpass/pullpass-agent" \
  --set image.tag="$tag" --set webhook.replicas=1 \
  --set agent.providerConfig=/etc/kubernetes/credential-provider/config --set agent.providerBinDir=/etc/kubernetes/credential-provider/bin \
  --set agent.matchImages="{$REGISTRY}" --set agent.pluginCacheDuration=5s \
  --wait --timeout 5m
# The nodes share _output/kind/credential-provider (kind.yaml): one look tells whether the agents
# changed what the kubelets read at start.
if [ "$(provider_config_sum)" != "$before" ]; then
  for node in $("$KIND" get nodes --name pullpass); do docker exec "$node" systemctl restart kubelet; done
  log "kubelets restarted to read the agent's credential provider config"
fi
for pf in webhook:18080:8080 agent:18081:8081; do
  IFS=: read -r name port target <<<"$pf"
  pidfile=$E2E_DIR/port-forward-$name.pid
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  if [ "$name" = webhook ]; then res=svc/pullpass-webhook; else res=ds/pullpass-agent; fi
  setsid kubectl --kubeconfig "$KUBECONFIG_ADMIN" -n pullpass port-forward --address 127.0.0.1 "$res" "$port:$target" >"$E2E_DIR/port-forward-$name.log" 2>&1 &
  echo $! >"$pidfile"
done
cat >"$E2E_DIR/endpoints.env" <<ENV
WEBHOOK_METRICS_URL=http://127.0.0.1:18080/metrics
AGENT_METRICS_URL=http://127.0.0.1:18081/metrics
ENV
log "pullpass deployed on kind ($tag)"
