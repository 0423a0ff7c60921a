#!/usr/bin/env bash
# Installs the pinned Go tools the harness and the Makefile use (crane, helm, kind, golangci-lint,
# gotestsum, and for make release: cosign, krew, cyclonedx-gomod, helm-docs) into a cache outside git, keyed by version, and prints the bin dir. A tool already there is not rebuilt.
set -euo pipefail
cache=${PULLPASS_CACHE:-/var/cache/pullpass}/tools
# Pins: bump them here, nowhere else. A fourth field is -ldflags, part of the cache key.
# helm: the Kubernetes version it assumes without a cluster (helm template, lint) is set at build
# time, as helm's own release does (its client-go, 0.37); unset it is 1.20, below the chart's
# kubeVersion.
tools=(
  "crane github.com/google/go-containerregistry/cmd/crane v0.22.1"
  "helm helm.sh/helm/v3/cmd/helm v3.22.0 -X=helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X=helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37 -X=helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X=helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37"
  "kind sigs.k8s.io/kind v0.33.0"
  "golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint v2.15.0"
  "gotestsum gotest.tools/gotestsum v1.13.0"
  "cosign github.com/sigstore/cosign/v2/cmd/cosign v2.6.5"
  "krew sigs.k8s.io/krew/cmd/krew v0.4.3"
  "cyclonedx-gomod github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod v1.10.0"
  "helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs v1.14.2"
)
if [ "$#" -gt 0 ]; then want=" $* "; else want=""; fi
# The printed bin dir is keyed by these pins: checkouts with other pins (another branch, an older
# clone) sharing the cache never swap a tool under each other. $cache/bin links the latest built.
pinned=$cache/bin-$(printf '%s\n' "${tools[@]}" | sha256sum | cut -c1-12)
mkdir -p "$cache/bin" "$pinned"
for t in "${tools[@]}"; do
  read -r name pkg version ldflags <<<"$t"
  [ -z "$want" ] || [[ "$want" == *" $name "* ]] || continue
  dir="$cache/$name-$version"
  [ -z "$ldflags" ] || dir+=-$(printf %s "$ldflags" | sha256sum | cut -c1-8)
  if [ ! -x "$dir/$name" ]; then
    echo "building $name $version (cached in $dir)" >&2
    mkdir -p "$dir"
    GOBIN="$dir" CGO_ENABLED=0 go install -ldflags "$ldflags" "$pkg@$version"
  fi
  ln -sf "$dir/$name" "$cache/bin/$name"
  ln -sf "$dir/$name" "$pinned/$name"
done
echo "$pinned"
