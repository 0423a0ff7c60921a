#!/usr/bin/env bash
# deploy: builds pullpass's images from this checkout, pushes them to the harness registry and
# installs the chart into the harness cluster with helm, then starts (or reloads) the harness
# Prometheus from the chart's monitoring objects. Writes _output/e2e/endpoints.env.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -f "$E2E_DIR/ready" ] || die "the harness cluster is not up: run make cluster-up"
set -a; . "$E2E_DIR/registry.env"; set +a
KUBE_BIN=$BIN
TOOLS_BIN=$("$(dirname "$0")/../../hack/build-tools.sh" crane helm | tail -n 1)
CRANE=$TOOLS_BIN/crane
HELM=$TOOLS_BIN/helm
export SSL_CERT_FILE=$REGISTRY_CA

push_pullpass_images "$REGISTRY" "$REGISTRY"
prepare_pullpass_namespace

"$HELM" upgrade --install pullpass "$repo_root/charts/pullpass" --kubeconfig "$KUBECONFIG_ADMIN" \
  --namespace pullpass --create-namespace \
  -f "$(dirname "$0")/values-harness.yaml" \
  --set image.webhookRepository="$WEBHOOK_REPO" --set image.agentRepository="$AGENT_REPO" --set image.tag="$tag" \
  --set agent.providerConfig="$CREDENTIAL_PROVIDER_CONFIG" --set agent.providerBinDir="$CREDENTIAL_PROVIDER_BIN" \
  --set agent.cacheDir="$E2E_DIR/credential-provider/cache" --set agent.matchImages="{$REGISTRY}" \
  --set-file verify.caBundle="$REGISTRY_CA" --set verify.dockerHubHost="$TOKEN_REGISTRY" \
  --wait --timeout 3m >"$LOGS/helm.log" 2>&1 || { cat "$LOGS/helm.log" >&2; kubectl_e2e -n pullpass get pods -o wide >&2; die "helm install failed"; }

# Ready means: the pod answers /readyz and its CA bundle is in the webhook configuration.
wait_for_ok() { curl -sf "http://127.0.0.1:28080/readyz" >/dev/null && [ -n "$(kubectl_e2e get mutatingwebhookconfiguration pullpass -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ]; }
deadline=$((SECONDS + 120))
until wait_for_ok; do
  [ $SECONDS -lt $deadline ] || { kubectl_e2e -n pullpass logs deploy/pullpass-webhook --tail=50 >&2 || true; die "the webhook did not become ready"; }
  sleep 1
done
deadline=$((SECONDS + 120))
until curl -sf "http://127.0.0.1:28081/readyz" >/dev/null; do
  [ $SECONDS -lt $deadline ] || { kubectl_e2e -n pullpass logs ds/pullpass-agent --tail=50 >&2 || true; die "the agent did not become ready"; }
  sleep 1
done
# The kubelet reads its credential provider config at start only: restart it when the agent
# changed what it read (the first install), as a node's operator would.
if [ "$(provider_config_sum)" != "$(cat "$E2E_DIR/kubelet-provider-config.sum" 2>/dev/null)" ]; then
  log "the agent changed the kubelet's credential provider config; restarting the kubelet"
  "$(dirname "$0")/restart-kubelet.sh"
fi
# Prometheus, configured from the monitoring objects the chart just made; deploy waits until it
# scrapes the webhook and the agent.
PROM_PID_FILE=$PIDS/prometheus.pid PROM_LOG_FILE=$LOGS/prometheus.log KUBECTL=$KUBE_BIN/kubectl \
  "$(dirname "$0")/prometheus.sh" up "$PROMETHEUS_DIR" "$KUBECONFIG_ADMIN" pullpass "127.0.0.1:$PROMETHEUS_PORT"
PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT
up_jobs='count(count by (job) (up{job=~"pullpass-webhook|pullpass-controller|pullpass-agent"} == 1))'
deadline=$((SECONDS + 60))
until curl -sfG "$PROMETHEUS_URL/api/v1/query" --data-urlencode "query=$up_jobs" | grep -q '"value":\[[0-9.]*,"3"\]'; do
  [ $SECONDS -lt $deadline ] || { curl -s "$PROMETHEUS_URL/api/v1/targets" >&2; die "Prometheus does not scrape the webhook, the controller and the agent"; }
  sleep 1
done
cat >"$E2E_DIR/endpoints.env" <<ENV
WEBHOOK_METRICS_URL=http://127.0.0.1:28080/metrics
CONTROLLER_METRICS_URL=http://127.0.0.1:28083/metrics
AGENT_METRICS_URL=http://127.0.0.1:28081/metrics
AGENT_CACHE=$E2E_DIR/credential-provider/cache/credentials.json
PROMETHEUS_URL=$PROMETHEUS_URL
ENV
log "pullpass deployed ($tag); endpoints in $E2E_DIR/endpoints.env"
