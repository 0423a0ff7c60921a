#!/usr/bin/env bash
# Installs the pinned Go tools the harness and the Makefile use (crane, helm, kind, golangci-lint, gotestsum) into a cache
# outside git, keyed by version, and prints the bin dir. A tool already there is not rebuilt.
set -euo pipefail
cache=${PULLPASS_CACHE:-/var/cache/pullpass}/tools
# Pins: bump them here, nowhere else.
tools=(
  "crane github.com/google/go-containerregistry/cmd/crane v0.22.1"
  "helm helm.sh/helm/v3/cmd/helm v3.22.0"
  "kind sigs.k8s.io/kind v0.33.0"
  "golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint v2.15.0"
  "gotestsum gotest.tools/gotestsum v1.13.0"
)
if [ "$#" -gt 0 ]; then want=" $* "; else want=""; fi
mkdir -p "$cache/bin"
for t in "${tools[@]}"; do
  read -r name pkg version <<<"$t"
  [ -z "$want" ] || [[ "$want" == *" $name "* ]] || continue
  dir="$cache/$name-$version"
  if [ ! -x "$dir/$name" ]; then
    echo "building $name $version (cached in $dir)" >&2
    mkdir -p "$dir"
    GOBIN="$dir" CGO_ENABLED=0 go install "$pkg@$version"
  fi
  ln -sf "$dir/$name" "$cache/bin/$name"
done
echo "$cache/bin"
