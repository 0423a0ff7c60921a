#!/usr/bin/env bash
# dockerd.sh start|stop: the project's own Docker engine, for machines with none (engine "own").
#
# It runs in a network namespace of its own ($NETNS): the iptables rules, bridges and NAT that
# dockerd sets up stay inside it, and the host's are never touched. Only the network namespace
# is entered (nsenter --net): mounts and cgroups are the host's, as for any dockerd. Its runtime
# is runcwrapper (e2e/cluster/runcwrapper), which drops what this host cannot grant (the bounding
# set lacks CAP_SYS_RESOURCE, so `--privileged` containers fail with plain runc).
# start is idempotent; stop stops only the dockerd it started (by pid) and removes the namespace.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start() {
  if [ -f "$OWN_DOCKER_PID" ] && kill -0 "$(cat "$OWN_DOCKER_PID")" 2>/dev/null; then
    return 0
  fi
  command -v dockerd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; }
  mkdir -p "$OWN_DOCKER_DIR" "$OWN_DOCKER_DATA" "$KIND_DIR/bin"
  (cd "$repo_root" && CGO_ENABLED=0 go build -o "$KIND_DIR/bin/runcwrapper" ./e2e/cluster/runcwrapper)
  if ! ip netns list | grep -qw "^$NETNS"; then
    ip netns add "$NETNS"
    log "created network namespace $NETNS"
  fi
  ip -n "$NETNS" link set lo up
  rm -f "$OWN_DOCKER_SOCK"
  # What the host had before, so stop and check-clean.sh can tell what is ours: the FORWARD
  # policy (unchanged: dockerd's rules go into its own namespace), and /lib/modules, which kind
  # bind-mounts into every node and docker creates on the host when it is missing.
  [ -f "$KIND_DIR/host-forward-policy" ] || iptables -S FORWARD 2>/dev/null | head -n 1 >"$KIND_DIR/host-forward-policy" || true
  if [ ! -e /lib/modules ] && [ ! -f "$KIND_DIR/created-lib-modules" ]; then touch "$KIND_DIR/created-lib-modules"; fi
  # The docker client talks to the socket; containers' cgroups go under pullpass-kind.
  setsid nsenter --net="/run/netns/$NETNS" -- dockerd \
    --data-root "$OWN_DOCKER_DATA" --exec-root "$OWN_DOCKER_DIR/exec" \
    --host "unix://$OWN_DOCKER_SOCK" --pidfile "$OWN_DOCKER_PID" \
    --add-runtime "pullpass-runc=$KIND_DIR/bin/runcwrapper" --default-runtime pullpass-runc \
    --cgroup-parent /pullpass-kind --default-cgroupns-mode private \
    --storage-driver overlay2 --log-level warn \
    >>"$LOGS/dockerd.log" 2>&1 </dev/null &
  local pid=$! deadline=$((SECONDS + 60))
  echo "$pid" >"$OWN_DOCKER_DIR/started.pid"
  until DOCKER_HOST=unix://$OWN_DOCKER_SOCK docker version >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$LOGS/dockerd.log" >&2; die "dockerd exited; its log is $LOGS/dockerd.log"; }
    [ $SECONDS -lt $deadline ] || die "dockerd not ready after 60s; its log is $LOGS/dockerd.log"
    sleep 0.5
  done
  log "started dockerd (pid $pid) in network namespace $NETNS, socket $OWN_DOCKER_SOCK"
}

stop() {
  local pid
  pid=$(cat "$OWN_DOCKER_DIR/started.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then log "dockerd did not stop; killing it"; kill -KILL "$pid"; fi
    log "stopped dockerd (pid $pid)"
  fi
  rm -f "$OWN_DOCKER_DIR/started.pid" "$OWN_DOCKER_PID"
  # Its containerd and shims outlive a killed dockerd; they are ours when they name our exec root.
  for p in $(pgrep -f "containerd.*$OWN_DOCKER_DIR/exec" 2>/dev/null); do
    kill -KILL "$p" 2>/dev/null && log "stopped leftover $(cat /proc/$p/comm 2>/dev/null || echo process) (pid $p)"
  done
  # Everything dockerd mounted lives under its exec root and data root.
  local m
  for _ in 1 2 3; do
    m=$(awk -v a="$OWN_DOCKER_DIR" -v b="$OWN_DOCKER_DATA" 'index($5, a) == 1 || index($5, b "/") == 1 { print $5 }' /proc/self/mountinfo | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
    [ -n "$m" ] || break
    while read -r mp; do umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; done <<<"$m"
  done
  if ip netns list | grep -qw "^$NETNS"; then
    ip netns delete "$NETNS"
    log "deleted network namespace $NETNS"
  fi
  if [ -f "$KIND_DIR/created-lib-modules" ]; then
    if [ -d /lib/modules ] && [ -z "$(ls -A /lib/modules)" ]; then rmdir /lib/modules && log "removed /lib/modules (docker created it for kind's mount)"; fi
    rm -f "$KIND_DIR/created-lib-modules"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
