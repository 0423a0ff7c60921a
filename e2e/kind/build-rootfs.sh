#!/usr/bin/env bash
# build-rootfs.sh NAME PACKAGE...: a Debian bookworm rootfs (mmdebstrap, minbase, no recommends)
# as a tarball in the cache, keyed by the package list, and prints its path. Built once.
# bookworm, not trixie: its systemd still runs on cgroup v1 hosts.
set -euo pipefail
name=$1; shift
cache=${PULLPASS_CACHE:-/var/cache/pullpass}/kind/rootfs
key=$(printf '%s\n' bookworm "$@" | sha256sum | cut -c1-12)
out=$cache/$name-$key.tar
if [ ! -f "$out" ]; then
  command -v mmdebstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null; }
  mkdir -p "$cache"
  echo "building the $name rootfs (mmdebstrap bookworm: $*)" >&2
  inc=$(IFS=,; echo "$*")
  # apt's lists and caches are dropped: the rootfs is an image, not a system to update.
  mmdebstrap --quiet --format=tar --variant=minbase --include="$inc" \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$out.tmp" >&2
  mv "$out.tmp" "$out"
fi
echo "$out"
