#!/usr/bin/env bash
# kind-deploy: builds pullpass's images from this checkout (crane, no Docker build), pushes them
# to the registry beside the kind cluster and installs charts/pullpass with its default values
# plus e2e/kind/values-kind.yaml (image pull secret, the test registry named ahead, a short
# plugin cache). Restarts the kubelet of each node whose credential provider config the agent
# changed (the first install), as a node's operator would. Writes _output/kind/endpoints.env
# (the harness's contract: metrics URLs reachable from where the suite runs, see e2e/README.md).
# PULLPASS_FROM_RELEASE=1: make release to the cluster's registry instead, and pullpass installed
# from the released OCI chart alone (its images by digest), the registry's CA trusted through the
# images' own CA bundle (RELEASE_CA_BUNDLE), not verify.caBundle.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
# Everything below talks to cluster addresses: with the own engine, from its network namespace.
if [ "$(engine)" = own ] && [ "$(ip netns identify $$ 2>/dev/null)" != "$NETNS" ]; then
  exec "$here/netns.sh" "$0" "$@"
fi
[ -f "$KIND_DIR/ready" ] || die "the kind cluster is not up: run make kind-up"
use_engine
set -a; . "$KIND_DIR/registry.env"; set +a
KUBECONFIG_ADMIN=$KUBECONFIG_KIND
TOOLS_BIN=$(tools_bin crane helm kind)
CRANE=$TOOLS_BIN/crane HELM=$TOOLS_BIN/helm KIND=$TOOLS_BIN/kind
if [ "$(engine)" = own ] || ! command -v kubectl >/dev/null; then KUBE_BIN=$(kube_bin); else KUBE_BIN=$(dirname "$(command -v kubectl)"); fi
export SSL_CERT_FILE=$REGISTRY_CA
# Pushed from here as PUSH_REGISTRY (localhost:5001 on kind), pulled by the cluster as REGISTRY.
PUSH=${PUSH_REGISTRY:-$REGISTRY}
"$CRANE" auth login "$PUSH" -u "$REGISTRY_USERNAME" -p "$REGISTRY_PASSWORD" >/dev/null 2>&1

chart=("$repo_root/charts/pullpass") image_args=() ca_args=(--set-file verify.caBundle="$REGISTRY_CA")
chart_env=""
if [ "${PULLPASS_FROM_RELEASE:-}" = 1 ]; then
  cat /etc/ssl/certs/ca-certificates.crt "$REGISTRY_CA" >"$KIND_DIR/release-cas.pem"
  export SSL_CERT_FILE=$KIND_DIR/release-cas.pem HELM_REGISTRY_CONFIG=$KIND_DIR/helm-registry.json
  "$HELM" registry login "$PUSH" -u "$REGISTRY_USERNAME" -p "$REGISTRY_PASSWORD" >/dev/null 2>&1
  # One release per cluster: a deploy again (the suite's upgrade test) installs the same one.
  release_version=$(cat "$KIND_DIR/release.version" 2>/dev/null || true)
  if [ -z "$release_version" ]; then
    release_version=v0.0.0-e2e.$(date +%s)
    log "make release $release_version to $PUSH/pullpass (unsigned)"
    RELEASE_SIGN=false RELEASE_CA_BUNDLE=$KIND_DIR/release-cas.pem RELEASE_DIR=$KIND_DIR/release \
      make -C "$repo_root" --no-print-directory release VERSION="$release_version" RELEASE_REPO="$PUSH/pullpass" >>"$LOGS/release.log" 2>&1 ||
      { tail -n 20 "$LOGS/release.log" >&2; die "make release failed; see $LOGS/release.log"; }
    echo "$release_version" >"$KIND_DIR/release.version"
  fi
  chart=("oci://$PUSH/pullpass/charts/pullpass" --version "${release_version#v}")
  tag=$release_version
  chart_env="CHART=${chart[0]}
CHART_VERSION=${release_version#v}
CHART_REGISTRY_CONFIG=$HELM_REGISTRY_CONFIG
CHART_CA=$SSL_CERT_FILE"
  ca_args=()
  # The cluster reaches the registry under another name than this side pushes to: the same
  # images, digests kept from the chart.
  [ "$PUSH" = "$REGISTRY" ] || image_args=(--set image.webhookRepository="$REGISTRY/pullpass/pullpass-webhook"
    --set image.agentRepository="$REGISTRY/pullpass/pullpass-agent")
  log "installing pullpass $release_version from ${chart[*]}"
else
  push_pullpass_images "$PUSH" "$REGISTRY"
  image_args=(--set image.webhookRepository="$WEBHOOK_REPO" --set image.agentRepository="$AGENT_REPO" --set image.tag="$tag")
fi
prepare_pullpass_namespace

# The e2e suite serves a local ECR API where it runs: with the own engine, on the kind network's
# gateway (the namespace's end of the bridge), which pods reach through their node.
ecr_args=() ecr_listen=""
if [ "$(engine)" = own ]; then
  gw=$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' | tr ' ' '\n' | grep -m1 -E '^[0-9.]+$')
  ecr_listen=$gw:28900
  ecr_args=(--set webhook.ecrEndpoint="http://$ecr_listen" --set controller.ecrEndpoint="http://$ecr_listen" --set agent.ecrEndpoint="http://$ecr_listen")
fi
"$HELM" upgrade --install pullpass "${chart[@]}" --kubeconfig "$KUBECONFIG_KIND" \
  --namespace pullpass --create-namespace -f "$here/values-kind.yaml" "${ecr_args[@]}" \
  "${image_args[@]}" "${ca_args[@]}" --set agent.matchImages="{$REGISTRY}" \
  --wait --timeout 5m >"$LOGS/helm.log" 2>&1 ||
  { cat "$LOGS/helm.log" >&2; kubectl_e2e -n pullpass get pods -o wide >&2; die "helm install failed"; }

deadline=$((SECONDS + 120))
until [ -n "$(kubectl_e2e get mutatingwebhookconfiguration pullpass -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ]; do
  [ $SECONDS -lt $deadline ] || die "the webhook configuration has no CA bundle"
  sleep 1
done
kubectl_e2e -n pullpass rollout status deploy/pullpass-webhook --timeout=120s >/dev/null
kubectl_e2e -n pullpass rollout status ds/pullpass-agent --timeout=120s >/dev/null

# The kubelet reads its credential provider config at start only: restart each node's kubelet
# whose config the agent changed since the kubelet started.
for node in $KIND_NODES; do
  d=$KIND_DIR/nodes/${node#"$CLUSTER"-}
  sum=$(cat "$d/image-credential-provider/config"/* 2>/dev/null | sha256sum | cut -c1-16)
  if [ "$sum" != "$(cat "$d/kubelet-provider-config.sum" 2>/dev/null)" ]; then
    log "the agent changed $node's credential provider config; restarting its kubelet"
    docker exec "$node" systemctl restart kubelet
    echo "$sum" >"$d/kubelet-provider-config.sum"
  fi
done
kubectl_e2e wait node --all --for=condition=Ready --timeout=120s >/dev/null

# Metrics from where the suite runs. A Service with internalTrafficPolicy Local reaches the agent
# of the node that routes the traffic (NODE_NAME, below).
kubectl_e2e apply -f - >/dev/null <<SVC
apiVersion: v1
kind: Service
metadata:
  name: pullpass-agent-e2e-metrics
  namespace: pullpass
  labels: {pullpass.io/e2e: "true"}
spec:
  internalTrafficPolicy: Local
  selector: {app.kubernetes.io/name: pullpass, app.kubernetes.io/instance: pullpass, app.kubernetes.io/component: agent}
  ports: [{name: metrics, port: 8081, targetPort: metrics}]
SVC
if [ "$(engine)" = own ]; then
  # Our own namespace: route the service range through NODE_NAME (kube-proxy masquerades traffic
  # from outside the pod network) and each node's pod range to it.
  node_ip() { kubectl_e2e get node "$1" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}'; }
  svc_cidr=10.96.0.0/16
  ip route replace "$svc_cidr" via "$(node_ip "$NODE_NAME")"
  for node in $KIND_NODES; do
    for cidr in $(kubectl_e2e get node "$node" -o jsonpath='{.spec.podCIDRs[*]}'); do ip route replace "$cidr" via "$(node_ip "$node")"; done
  done
  webhook=$(kubectl_e2e -n pullpass get svc pullpass-webhook -o jsonpath='{.spec.clusterIP}'):8080
  agent=$(kubectl_e2e -n pullpass get svc pullpass-agent-e2e-metrics -o jsonpath='{.spec.clusterIP}'):8081
else
  # A host engine's container addresses may not be routable (Docker Desktop): port-forwards.
  for pf in webhook:18080:svc/pullpass-webhook:8080 agent:18081:svc/pullpass-agent-e2e-metrics:8081; do
    IFS=: read -r name port res target <<<"$pf"
    pidfile=$KIND_DIR/port-forward-$name.pid
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    setsid "$KUBE_BIN/kubectl" --kubeconfig "$KUBECONFIG_KIND" -n pullpass port-forward --address 127.0.0.1 "$res" "$port:$target" \
      >"$LOGS/port-forward-$name.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
  done
  webhook=127.0.0.1:18080 agent=127.0.0.1:18081
fi
for url in "http://$webhook/readyz" "http://$agent/readyz"; do
  deadline=$((SECONDS + 60))
  until curl -sf "$url" >/dev/null; do [ $SECONDS -lt $deadline ] || die "$url does not answer"; sleep 1; done
done
# Prometheus, configured from the monitoring objects the chart made, where the suite runs: it
# scrapes pod and node addresses, which the own engine's namespace routes (above) and a host
# engine may not (Docker Desktop): there PROMETHEUS_URL is left empty and the Prometheus test
# says so.
prometheus_url=""
if [ "$(engine)" = own ]; then
  PROM_PID_FILE=$KIND_DIR/prometheus.pid PROM_LOG_FILE=$LOGS/prometheus.log KUBECTL=$KUBE_BIN/kubectl \
    "$repo_root/e2e/cluster/prometheus.sh" up "$KIND_DIR/prometheus" "$KUBECONFIG_KIND" pullpass "127.0.0.1:$PROMETHEUS_PORT"
  prometheus_url=http://127.0.0.1:$PROMETHEUS_PORT
  up_jobs='count(count by (job) (up{job=~"pullpass-webhook|pullpass-controller|pullpass-agent"} == 1))'
  deadline=$((SECONDS + 60))
  until curl -sfG "$prometheus_url/api/v1/query" --data-urlencode "query=$up_jobs" | grep -q '"value":\[[0-9.]*,"3"\]'; do
    [ $SECONDS -lt $deadline ] || { curl -s "$prometheus_url/api/v1/targets" >&2; die "Prometheus does not scrape the webhook, the controller and the agents"; }
    sleep 1
  done
fi
cat >"$KIND_DIR/endpoints.env" <<ENV
WEBHOOK_METRICS_URL=http://$webhook/metrics
AGENT_METRICS_URL=http://$agent/metrics
AGENT_CACHE=$KIND_DIR/nodes/${NODE_NAME#"$CLUSTER"-}/pullpass/credentials.json
ECR_LISTEN=$ecr_listen
PROMETHEUS_URL=$prometheus_url
$chart_env
ENV
log "pullpass deployed on kind ($tag); endpoints in $KIND_DIR/endpoints.env"
