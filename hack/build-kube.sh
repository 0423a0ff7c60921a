#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries the harness runs, from the module proxy, into a cache
# outside git keyed by version. A binary already in the cache is not rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mod="$here/tools/kube"
version=$(cd "$mod" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
[ -n "$version" ] || { echo "no k8s.io/kubernetes version in $mod/go.mod" >&2; exit 1; }
cache=${PULLPASS_CACHE:-/var/cache/pullpass}/kube/$version
mkdir -p "$cache"
major=${version#v}; major=${major%%.*}
minor=${version#v$major.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=$major -X k8s.io/client-go/pkg/version.gitMinor=$minor"
for cmd in ${KUBE_BINARIES:-kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl}; do
  [ -x "$cache/$cmd" ] && continue
  echo "building $cmd $version (cached in $cache)" >&2
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$cache/.$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
  mv "$cache/.$cmd.tmp" "$cache/$cmd"
done
echo "$cache"
