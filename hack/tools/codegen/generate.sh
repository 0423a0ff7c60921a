#!/usr/bin/env bash
# Writes the generated API files from the markers in pkg/apis/pullpass/v1alpha1/types.go with
# controller-gen, pinned in this module and built once into a cache outside git keyed by version:
#   - pkg/apis/pullpass/v1alpha1/zz_generated.deepcopy.go
#   - pkg/apis/pullpass/v1alpha1/crd/pullpass.io_registries.yaml (embedded by package crd)
#   - charts/pullpass/crds/pullpass.io_registries.yaml (the same bytes: helm installs it)
# With --verify it writes nothing in the tree and fails if any of them differs from what it would
# write, so drift is caught in CI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
mode=${1:-generate}
case "$mode" in generate | --verify) ;; *) echo "usage: $0 [--verify]" >&2; exit 2 ;; esac

version=$(cd "$here" && go list -m -f '{{.Version}}' sigs.k8s.io/controller-tools)
bin=${PULLPASS_CACHE:-/var/cache/pullpass}/tools/controller-gen-$version
if [ ! -x "$bin/controller-gen" ]; then
  echo "building controller-gen $version (cached in $bin)" >&2
  mkdir -p "$bin"
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -o "$bin/.controller-gen.tmp" sigs.k8s.io/controller-tools/cmd/controller-gen)
  mv "$bin/.controller-gen.tmp" "$bin/controller-gen"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd "$root" && "$bin/controller-gen" object paths=./pkg/apis/... output:object:dir="$out/object" \
  crd paths=./pkg/apis/... output:crd:dir="$out/crd")

# controller-gen writes no comment into a CRD: the manifest says where it comes from.
crd="$out/pullpass.io_registries.yaml"
{
  echo "# The Registry CRD, written by controller-gen from the markers in"
  echo "# pkg/apis/pullpass/v1alpha1/types.go: edit them there and run \`make generate\`. The schema"
  echo "# rejects bad objects at the API server: no hosts, not exactly one credential source, a host"
  echo "# pattern the kubelet would not read the way it looks."
  sed '1{/^---$/d}' "$out/crd/pullpass.io_registries.yaml"
} >"$crd"

# generated file -> where it lives in the tree
files=(
  "$out/object/zz_generated.deepcopy.go" pkg/apis/pullpass/v1alpha1/zz_generated.deepcopy.go
  "$crd" pkg/apis/pullpass/v1alpha1/crd/pullpass.io_registries.yaml
  "$crd" charts/pullpass/crds/pullpass.io_registries.yaml
)
stale=0
for ((i = 0; i < ${#files[@]}; i += 2)); do
  src=${files[i]} dst=$root/${files[i + 1]}
  if [ "$mode" = --verify ]; then
    if ! diff -u --label "${files[i + 1]} (in the tree)" --label "${files[i + 1]} (generated)" "$dst" "$src" >&2; then
      stale=1
    fi
  else
    cp "$src" "$dst"
  fi
done
if [ "$stale" = 1 ]; then
  echo "generated API files are out of date with pkg/apis/pullpass/v1alpha1/types.go (diff above): run \`make generate\` and commit the result" >&2
  exit 1
fi
