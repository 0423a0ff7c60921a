#!/usr/bin/env bash
# make release VERSION=vX.Y.Z RELEASE_REPO=HOST/PATH: pullpass's release, without a Docker engine.
#   - images RELEASE_REPO/pullpass-webhook, RELEASE_REPO/pullpass-agent (with the credential
#     provider plugin), RELEASE_REPO/pullpass (the CLI): image indexes for linux/amd64 and
#     linux/arm64 tagged VERSION, on a base made here (Debian's CA bundle, a nonroot user 65532),
#     with OCI labels (hack/release/ociimage);
#   - the chart, version X.Y.Z and appVersion VERSION, its images pinned by digest, pushed to
#     oci://RELEASE_REPO/charts/pullpass;
#   - _output/release/: CLI archives (linux, darwin, windows on amd64 and arm64), an SBOM
#     (CycloneDX) per image binary and per archive, the chart package, the krew manifest
#     pullpass.yaml (archive URLs under RELEASE_URL) and checksums.txt;
#   - cosign signatures of every image and of the chart, with COSIGN_KEY (COSIGN_PASSWORD).
# Logins are the tools' own: DOCKER_CONFIG (crane auth login, cosign), HELM_REGISTRY_CONFIG (helm
# registry login); a registry's own CA through SSL_CERT_FILE. RELEASE_SIGN=false skips signing.
# RELEASE_DIR writes the files elsewhere; RELEASE_CA_BUNDLE replaces the images' CA bundle.
set -euo pipefail
repo_root=$(cd "$(dirname "$0")/../.." && pwd)
log() { printf '%s [release] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The images and the binaries each carries (the first is the entrypoint). A new binary is one
# word here.
IMAGES=(
  "pullpass-webhook pullpass-webhook pullpass-controller"
  "pullpass-agent pullpass-agent pullpass-credential-provider pullpass-credential-provider-sa"
  "pullpass pullpass"
)
IMAGE_PLATFORMS=(linux/amd64 linux/arm64)
CLI_PLATFORMS=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64)

VERSION=${VERSION:-}
RELEASE_REPO=${RELEASE_REPO:-}
[[ "$VERSION" =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]] ||
  die "VERSION=${VERSION@Q}: want vMAJOR.MINOR.PATCH[-PRERELEASE], e.g. VERSION=v0.2.0"
[[ "$RELEASE_REPO" =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*$ ]] ||
  die "RELEASE_REPO=${RELEASE_REPO@Q}: want HOST[:PORT]/PATH in lower case, e.g. RELEASE_REPO=ghcr.io/you"
chart_version=${VERSION#v}
RELEASE_URL=${RELEASE_URL:-https://github.com/pullpass/pullpass/releases/download/$VERSION}
SOURCE_URL=${SOURCE_URL:-https://github.com/pullpass/pullpass}
RELEASE_SIGN=${RELEASE_SIGN:-true}
if [ "$RELEASE_SIGN" = true ]; then
  [ -n "${COSIGN_KEY:-}" ] || die "set COSIGN_KEY (a cosign key file, or a KMS URI) and COSIGN_PASSWORD, or RELEASE_SIGN=false"
  [ -n "${COSIGN_PASSWORD+set}" ] || die "set COSIGN_PASSWORD (empty for a key without one)"
fi
out=${RELEASE_DIR:-$repo_root/_output/release}
# The CA bundle the images trust: Debian's, or RELEASE_CA_BUNDLE (a company's own CAs added).
ca_bundle=${RELEASE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
need=()
[ -s "$ca_bundle" ] || [ -n "${RELEASE_CA_BUNDLE:-}" ] || need+=(ca-certificates) # the images' CA bundle
command -v zip >/dev/null || need+=(zip)                                             # the Windows archives
if [ ${#need[@]} -gt 0 ]; then
  log "installing Debian's ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -s "$ca_bundle" ] || die "no CA bundle at $ca_bundle"

tools=$("$repo_root/hack/build-tools.sh" helm cosign cyclonedx-gomod | tail -n 1)
HELM=$tools/helm COSIGN=$tools/cosign CYCLONEDX=$tools/cyclonedx-gomod
IMAGEBUILD=$out/.tools/imagebuild

cd "$repo_root"
commit=$(git rev-parse HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || { log "the checkout has uncommitted changes: the commit is marked -dirty"; commit=$commit-dirty; }
# The build date: SOURCE_DATE_EPOCH when given (a reproducible rebuild), else now.
created=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
mtime=@$(date -d "$created" +%s)
rm -rf "$out" && mkdir -p "$out/.tools" "$out/.build"
(cd hack/release && CGO_ENABLED=0 go build -o "$IMAGEBUILD" ./cmd/imagebuild)

# --- binaries: each once per platform, for the images and the archives ------------------------
ldflags="-s -w -X github.com/pullpass/pullpass/pkg/version.version=$VERSION"
ldflags+=" -X github.com/pullpass/pullpass/pkg/version.commit=$commit -X github.com/pullpass/pullpass/pkg/version.date=$created"
build() { # build OS/ARCH CMD...
  local os=${1%/*} arch=${1#*/} cmd ext=""
  shift
  [ "$os" = windows ] && ext=.exe
  for cmd in "$@"; do
    CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -ldflags "$ldflags" \
      -o "$out/.build/${os}_$arch/$cmd$ext" "./cmd/$cmd"
  done
}
image_binaries=$(for i in "${IMAGES[@]}"; do echo "${i#* }"; done | tr ' ' '\n' | sort -u | tr '\n' ' ')
for p in "${CLI_PLATFORMS[@]}"; do
  log "building for $p"
  build "$p" pullpass
  [[ " ${IMAGE_PLATFORMS[*]} " == *" $p "* ]] && build "$p" $image_binaries
done

# --- SBOMs of what was built, read from each binary's build info ------------------------------
sbom() { # sbom BINARY OUT
  "$CYCLONEDX" bin -json -licenses=false -version "$VERSION" -output "$2" "$1" 2>>"$out/.build/sbom.log" ||
    die "cyclonedx-gomod bin $1 failed; see $out/.build/sbom.log"
}

# --- images ------------------------------------------------------------------------------------
labels=(-label "org.opencontainers.image.source=$SOURCE_URL" -label "org.opencontainers.image.revision=$commit"
  -label "org.opencontainers.image.version=$VERSION" -label "org.opencontainers.image.created=$created")
declare -A digest_of
to_sign=()
for i in "${IMAGES[@]}"; do
  read -r image bins <<<"$i"
  platforms=()
  for p in "${IMAGE_PLATFORMS[@]}"; do
    platforms+=(-platform "$p=$out/.build/${p%/*}_${p#*/}")
    for b in $bins; do sbom "$out/.build/${p%/*}_${p#*/}/$b" "$out/${image}_${VERSION}_${p%/*}_${p#*/}.$b.cdx.json"; done
  done
  ref=$("$IMAGEBUILD" -ref "$RELEASE_REPO/$image:$VERSION" -binaries "${bins// /,}" "${platforms[@]}" \
    -ca-bundle "$ca_bundle" -created "$created" "${labels[@]}" -label "org.opencontainers.image.title=$image")
  digest_of[$image]=${ref#*@}
  to_sign+=("$ref")
  echo "$RELEASE_REPO/$image:$VERSION@${ref#*@}" >>"$out/images.txt"
  log "pushed $RELEASE_REPO/$image:$VERSION@${ref#*@}"
done

# --- CLI archives (the krew plugin is the CLI: krew links kubectl-pullpass to it) ---------------
for p in "${CLI_PLATFORMS[@]}"; do
  os=${p%/*} arch=${p#*/} dir=$out/.build/${p%/*}_${p#*/}
  base=pullpass_${VERSION}_${os}_$arch
  cp README.md "$dir/README.md"
  if [ "$os" = windows ]; then
    (cd "$dir" && find pullpass.exe README.md -exec touch -d "$created" {} + && zip -q -X "$out/$base.zip" pullpass.exe README.md)
    archive=$base.zip
  else
    tar -C "$dir" --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" -cf - pullpass README.md |
      gzip -n >"$out/$base.tar.gz"
    archive=$base.tar.gz
  fi
  sbom "$dir/pullpass$([ "$os" = windows ] && echo .exe)" "$out/$archive.cdx.json"
done

# --- krew manifest ---------------------------------------------------------------------------
{
  cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: pullpass
spec:
  version: $VERSION
  homepage: $SOURCE_URL
  shortDescription: Pods pull from private registries without hand-written imagePullSecrets
  description: |
    Manages pullpass's registry table (Registry objects mapping registry hosts to credential
    sources) and explains which registry, and which credentials, serve an image for a pod.
  platforms:
YAML
  for p in "${CLI_PLATFORMS[@]}"; do
    os=${p%/*} arch=${p#*/} exe="" archive=pullpass_${VERSION}_${p%/*}_${p#*/}.tar.gz
    [ "$os" = windows ] && exe=.exe archive=pullpass_${VERSION}_${os}_$arch.zip
    cat <<YAML
  - selector:
      matchLabels: {os: $os, arch: $arch}
    uri: $RELEASE_URL/$archive
    sha256: $(sha256sum "$out/$archive" | cut -d' ' -f1)
    bin: pullpass$exe
    files:
    - {from: pullpass$exe, to: .}
    - {from: README.md, to: .}
YAML
  done
} >"$out/pullpass.yaml"

# --- chart: this release's version, its images by default, pinned by digest ---------------------
chart=$out/.build/chart/pullpass
mkdir -p "$(dirname "$chart")" && cp -r charts/pullpass "$chart"
sed -i -e "s|^  webhookRepository: .*|  webhookRepository: $RELEASE_REPO/pullpass-webhook|" \
  -e "s|^  agentRepository: .*|  agentRepository: $RELEASE_REPO/pullpass-agent|" \
  -e "s|^  webhookDigest: .*|  webhookDigest: \"${digest_of[pullpass-webhook]}\"|" \
  -e "s|^  agentDigest: .*|  agentDigest: \"${digest_of[pullpass-agent]}\"|" "$chart/values.yaml"
sed -i -e "s|^version: .*|version: $chart_version|" -e "s|^appVersion: .*|appVersion: \"$VERSION\"|" \
  -e "s|^      image: ghcr.io/pullpass/\(pullpass-[a-z]*\):.*|      image: $RELEASE_REPO/\1:$VERSION|" "$chart/Chart.yaml"
sed -i -e "s|^      image: $RELEASE_REPO/pullpass-webhook:$VERSION\$|&@${digest_of[pullpass-webhook]}|" \
  -e "s|^      image: $RELEASE_REPO/pullpass-agent:$VERSION\$|&@${digest_of[pullpass-agent]}|" "$chart/Chart.yaml"
[[ "$VERSION" == *-* ]] && sed -i 's|^  artifacthub.io/prerelease: .*|  artifacthub.io/prerelease: "true"|' "$chart/Chart.yaml"
"$repo_root/hack/chart-docs.sh" "$chart" # the packaged README says this version and these images
"$HELM" lint --strict "$chart" >/dev/null || die "helm lint --strict of the release's chart failed"
"$HELM" package "$chart" --version "$chart_version" --app-version "$VERSION" -d "$out" >/dev/null
push_out=$("$HELM" push "$out/pullpass-$chart_version.tgz" "oci://$RELEASE_REPO/charts" 2>&1) ||
  die "helm push failed (log in with helm registry login; HELM_REGISTRY_CONFIG): $push_out"
chart_digest=$(sed -n 's/^Digest: //p' <<<"$push_out")
[ -n "$chart_digest" ] || die "helm push printed no digest: $push_out"
echo "$RELEASE_REPO/charts/pullpass:$chart_version@$chart_digest" >>"$out/images.txt"
to_sign+=("$RELEASE_REPO/charts/pullpass@$chart_digest")
log "pushed oci://$RELEASE_REPO/charts/pullpass --version $chart_version ($chart_digest)"

# --- signatures -----------------------------------------------------------------------------------
if [ "$RELEASE_SIGN" = true ]; then
  # A key given by the user and no transparency log: nothing here reaches the internet. A CI
  # release signs keyless instead (README, "Releasing").
  for ref in "${to_sign[@]}"; do
    "$COSIGN" sign --yes --key "$COSIGN_KEY" --tlog-upload=false "$ref" >/dev/null 2>"$out/.build/cosign.log" ||
      die "cosign sign $ref failed: $(tail -n 3 "$out/.build/cosign.log")"
  done
  log "signed every image and the chart with $COSIGN_KEY"
else
  log "RELEASE_SIGN=false: nothing signed"
fi

(cd "$out" && sha256sum -- *.tar.gz *.zip *.tgz *.cdx.json pullpass.yaml >checksums.txt)
rm -rf "$out/.tools" "$out/.build"
log "release $VERSION: $(wc -l <"$out/images.txt") artifacts pushed (images.txt), files in $out"
