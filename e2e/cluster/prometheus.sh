#!/usr/bin/env bash
# prometheus: a real Prometheus that scrapes pullpass and evaluates its alerts the way a Prometheus
# run by the Prometheus Operator would. The server is upstream Prometheus built from the module
# pinned in hack/tools/prometheus (Debian's package has no Kubernetes service discovery), once, into
# the cache. Its configuration comes from
# the operator's own generator (hack/tools/promconfig, built once into the cache) fed with the
# ServiceMonitor, PodMonitor and PrometheusRule objects the chart made in the cluster; its
# Kubernetes service discovery reads the cluster through a kubeconfig, so it follows pods as they
# come and go. Not tied to the harness: any cluster whose pod addresses this machine reaches (or
# whose monitors rewrite them, see values-harness.yaml) works.
#
#   prometheus.sh up DIR KUBECONFIG NAMESPACE LISTEN
#       write DIR/prometheus.yml and DIR/rules/ from the monitoring objects in NAMESPACE, check
#       them with promtool, then start Prometheus on LISTEN (host:port), or reload a running one
#   prometheus.sh down DIR
#       stop it
#   prometheus.sh bin
#       build Prometheus and promtool if needed, print their directory
#
# Environment: PROM_SCRAPE_INTERVAL and PROM_EVALUATION_INTERVAL (default 2s), PROM_PID_FILE and
# PROM_LOG_FILE (default DIR/prometheus.pid, DIR/prometheus.log), KUBECTL (default kubectl),
# PULLPASS_CACHE (default /var/cache/pullpass). Data is kept in DIR/data.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
log() { printf '%s [prometheus] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

cmd=${1:-}
if [ "$cmd" = bin ]; then set -- bin .; fi
[ -n "$cmd" ] && [ -n "${2:-}" ] || usage
dir=$2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pid_file=${PROM_PID_FILE:-$dir/prometheus.pid}
log_file=${PROM_LOG_FILE:-$dir/prometheus.log}
running() { local p; p=$(cat "$pid_file" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# prometheus_bin: the dir of prometheus and promtool at the version hack/tools/prometheus pins,
# built once into the cache (module v0.MMP.x is Prometheus M.P.x).
prometheus_bin() {
  local src=$repo_root/hack/tools/prometheus mod ver bin
  mod=$(cd "$src" && go list -m -f '{{.Version}}' github.com/prometheus/prometheus)
  IFS=. read -r _ minor patch <<<"${mod#v}"
  ver=$((10#$minor / 100)).$((10#$minor % 100)).$patch
  bin=${PULLPASS_CACHE:-/var/cache/pullpass}/tools/prometheus-v$ver
  if [ ! -x "$bin/prometheus" ] || [ ! -x "$bin/promtool" ]; then
    log "building Prometheus $ver (module $mod; cached in $bin)"
    mkdir -p "$bin"
    for cmd in prometheus promtool; do
      (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-X github.com/prometheus/common/version.Version=$ver" \
        -o "$bin/.$cmd.tmp" "github.com/prometheus/prometheus/cmd/$cmd")
      mv "$bin/.$cmd.tmp" "$bin/$cmd"
    done
  fi
  echo "$bin"
}

# promconfig: the generator, built once per version of its sources into the cache.
promconfig() {
  local src=$repo_root/hack/tools/promconfig sum bin
  sum=$(cd "$src" && cat go.mod go.sum $(find . -name '*.go' ! -name '*_test.go' | sort) | sha256sum | cut -c1-12)
  bin=${PULLPASS_CACHE:-/var/cache/pullpass}/tools/promconfig-$sum
  if [ ! -x "$bin/promconfig" ]; then
    log "building promconfig (cached in $bin)"
    mkdir -p "$bin"
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$bin/.promconfig.tmp" ./cmd/promconfig)
    mv "$bin/.promconfig.tmp" "$bin/promconfig"
  fi
  echo "$bin/promconfig"
}

case "$cmd" in
bin) prometheus_bin ;;
up)
  [ $# = 5 ] || usage
  kubeconfig=$3 namespace=$4 listen=$5
  pbin=$(prometheus_bin)
  gen=$(promconfig)
  version=v$("$pbin/prometheus" --version 2>&1 | awk 'NR == 1 { print $3 }')
  objects=$("${KUBECTL:-kubectl}" --kubeconfig "$kubeconfig" -n "$namespace" get \
    servicemonitors.monitoring.coreos.com,podmonitors.monitoring.coreos.com,prometheusrules.monitoring.coreos.com -o yaml) ||
    die "cannot list the monitoring objects in $namespace (are the Prometheus Operator's CRDs installed?)"
  echo "$objects" | "$gen" -out "$dir" -kubeconfig "$kubeconfig" -prometheus-version "$version" \
    -scrape-interval "${PROM_SCRAPE_INTERVAL:-2s}" -evaluation-interval "${PROM_EVALUATION_INTERVAL:-2s}" >&2
  "$pbin/promtool" check config "$dir/prometheus.yml" >"$dir/check.log" 2>&1 || { cat "$dir/check.log" >&2; die "promtool refused the configuration"; }
  if running; then
    curl -sf -X POST "http://$listen/-/reload" >/dev/null || die "Prometheus refused the new configuration; see $log_file"
    log "reloaded Prometheus (pid $(cat "$pid_file")) on $listen"
  else
    mkdir -p "$dir/data" "$(dirname "$pid_file")" "$(dirname "$log_file")"
    setsid "$pbin/prometheus" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
      --web.listen-address="$listen" --web.enable-lifecycle --storage.tsdb.retention.time=2d \
      >>"$log_file" 2>&1 </dev/null &
    echo $! >"$pid_file"
    log "started Prometheus (pid $!) on $listen"
  fi
  deadline=$((SECONDS + 60))
  until curl -sf "http://$listen/-/ready" >/dev/null; do
    running || { tail -n 20 "$log_file" >&2; die "Prometheus exited; its log is $log_file"; }
    [ $SECONDS -lt $deadline ] || die "Prometheus not ready after 60s; its log is $log_file"
    sleep 0.5
  done
  ;;
down)
  if running; then
    p=$(cat "$pid_file")
    kill -TERM "$p"
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p"
    log "stopped Prometheus (pid $p)"
  fi
  rm -f "$pid_file"
  ;;
*) usage ;;
esac
