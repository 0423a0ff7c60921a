#!/usr/bin/env bash
# make test-release: make release against a registry started here (Debian's docker-registry on
# 127.0.0.1, TLS from a CA made here, htpasswd auth) with a throwaway cosign key pair, then checks
# what was pushed and written, from the registry and the files (crane, helm, cosign, krew), not
# from the build script: every index has linux/amd64 and linux/arm64; each image carries the CA
# bundle, its non-root user and the OCI labels; every binary, the arm64 ones under qemu, answers
# --version with the release's version; the pushed chart renders exactly the pushed images;
# cosign verifies every image and the chart; checksums.txt matches; krew installs the plugin
# from pullpass.yaml and `kubectl pullpass version` answers.
set -euo pipefail
repo_root=$(cd "$(dirname "$0")/../.." && pwd)
log() { printf '%s [test-release] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
start_time=$(date +%s)
port=${RELEASE_TEST_PORT:-25460}
host=127.0.0.1:$port
VERSION=v1.2.3-rc.1
chart_version=${VERSION#v}
repo=$host/pullpass
out=$repo_root/_output/release
IMAGES=(pullpass-webhook pullpass-agent pullpass)

need=()
for pair in docker-registry:docker-registry htpasswd:apache2-utils openssl:openssl jq:jq zip:zip file:file curl:curl qemu-aarch64-static:qemu-user-static; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
tools=$("$repo_root/hack/build-tools.sh" crane helm cosign krew | tail -n 1)
CRANE=$tools/crane HELM=$tools/helm COSIGN=$tools/cosign KREW=$tools/krew
KUBECTL=$(KUBE_BINARIES=kubectl "$repo_root/hack/build-kube.sh" | tail -n 1)/kubectl

work=$(mktemp -d "${TMPDIR:-/var/tmp}/pullpass-test-release.XXXXXX")
registry_pid=""
cleanup() {
  [ -z "$registry_pid" ] || { kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is taken (RELEASE_TEST_PORT chooses another)"; fi

# --- a registry with its own CA and a password, as a platform team's --------------------------
openssl req -x509 -new -newkey rsa:2048 -nodes -days 1 -subj /CN=pullpass-test-release-ca \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$work/registry.key" -out "$work/registry.csr" 2>/dev/null
openssl x509 -req -in "$work/registry.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 1 \
  -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n') -out "$work/registry.crt" 2>/dev/null
password=$(openssl rand -hex 16)
htpasswd -Bbn release "$password" >"$work/htpasswd"
cat >"$work/registry.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/registry}, delete: {enabled: true}}
http:
  addr: $host
  tls: {certificate: $work/registry.crt, key: $work/registry.key}
auth: {htpasswd: {realm: test-release, path: $work/htpasswd}}
YAML
setsid docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 </dev/null &
registry_pid=$!
# Trusted the way a user trusts a registry's own CA: SSL_CERT_FILE (the system's CAs kept, for
# the Go module proxy).
cat /etc/ssl/certs/ca-certificates.crt "$work/ca.crt" >"$work/cas.pem"
export SSL_CERT_FILE=$work/cas.pem DOCKER_CONFIG=$work/docker HELM_REGISTRY_CONFIG=$work/helm/registry.json
for _ in $(seq 60); do
  curl -s --cacert "$work/ca.crt" -o /dev/null "https://$host/v2/" && break
  kill -0 "$registry_pid" 2>/dev/null || die "docker-registry exited: $(tail -n 5 "$work/registry.log")"
  sleep 0.5
done
"$CRANE" auth login "$host" -u release -p "$password" >/dev/null 2>&1 || die "crane auth login failed"
"$HELM" registry login "$host" -u release -p "$password" >/dev/null 2>&1 || die "helm registry login failed"
COSIGN_PASSWORD=throwaway "$COSIGN" generate-key-pair --output-key-prefix "$work/cosign" >/dev/null 2>&1 ||
  die "cosign generate-key-pair failed"

# --- the release ---------------------------------------------------------------------------------
release_start=$(date +%s)
make -C "$repo_root" --no-print-directory release VERSION=$VERSION RELEASE_REPO=$repo \
  RELEASE_URL=https://downloads.example.com/pullpass/$VERSION COSIGN_KEY="$work/cosign.key" COSIGN_PASSWORD=throwaway
release_secs=$(( $(date +%s) - release_start ))
commit=$(git -C "$repo_root" rev-parse HEAD)
# A release of a checkout with changes says so in its revision.
[ -z "$(git -C "$repo_root" status --porcelain --untracked-files=no)" ] || commit+=-dirty

# --- images: platforms, base, user, labels, binaries that run --------------------------------------
for image in "${IMAGES[@]}"; do
  ref=$repo/$image:$VERSION
  platforms=$("$CRANE" manifest "$ref" | jq -r '.manifests[].platform | .os + "/" + .architecture' | sort | tr '\n' ' ')
  [ "$platforms" = "linux/amd64 linux/arm64 " ] || die "$ref: platforms '$platforms', want linux/amd64 linux/arm64"
  for p in linux/amd64 linux/arm64; do
    config=$("$CRANE" config --platform "$p" "$ref")
    [ "$(jq -r .config.User <<<"$config")" = 65532:65532 ] || die "$ref ($p): user $(jq -r .config.User <<<"$config"), want 65532:65532"
    for l in source revision version created; do
      [ -n "$(jq -r ".config.Labels[\"org.opencontainers.image.$l\"] // empty" <<<"$config")" ] || die "$ref ($p): no org.opencontainers.image.$l label"
    done
    [ "$(jq -r '.config.Labels["org.opencontainers.image.version"]' <<<"$config")" = "$VERSION" ] || die "$ref ($p): version label"
    [ "$(jq -r '.config.Labels["org.opencontainers.image.revision"]' <<<"$config")" = "$commit" ] || die "$ref ($p): revision label"
    root=$work/fs/$image/${p#*/}
    mkdir -p "$root" && "$CRANE" export --platform "$p" "$ref" - | tar -x -C "$root"
    grep -q 'BEGIN CERTIFICATE' "$root/etc/ssl/certs/ca-certificates.crt" || die "$ref ($p): no CA bundle"
    grep -q '^nonroot:x:65532:65532:' "$root/etc/passwd" || die "$ref ($p): no nonroot user in /etc/passwd"
    grep -q '^nonroot:x:65532:' "$root/etc/group" || die "$ref ($p): no nonroot group in /etc/group"
    entry=$(jq -r '.config.Entrypoint[0]' <<<"$config")
    for bin in "$root"/pullpass*; do
      run=("$bin")
      [ "$p" = linux/arm64 ] && run=(qemu-aarch64-static "$bin")
      file -b "$bin" | grep -q "$([ "$p" = linux/arm64 ] && echo aarch64 || echo x86-64)" || die "$bin is not a ${p#*/} binary: $(file -b "$bin")"
      answer=$("${run[@]}" --version) || die "$ref ($p): ${bin##*/} --version failed"
      [[ "$answer" == "${bin##*/} $VERSION (commit $commit, "*"linux/${p#*/})" ]] || die "$ref ($p): ${bin##*/} --version said: $answer"
    done
    [ -x "$root$entry" ] || die "$ref ($p): entrypoint $entry is not in the image"
  done
  log "ok $ref: linux/amd64 + linux/arm64, CA bundle, nonroot 65532, OCI labels, binaries answer --version"
done
[ -x "$work/fs/pullpass-agent/arm64/pullpass-credential-provider" ] || die "the agent image lacks the credential provider plugin"

# --- the chart: pulled from the registry, it renders exactly the pushed images ---------------------
mkdir -p "$work/chart"
"$HELM" pull "oci://$repo/charts/pullpass" --version "$chart_version" -d "$work/chart" >"$work/helm-pull.log" 2>&1 ||
  die "helm pull: $(cat "$work/helm-pull.log")"
chart_yaml=$("$HELM" show chart "$work/chart/pullpass-$chart_version.tgz")
grep -qx "version: $chart_version" <<<"$chart_yaml" && grep -qx "appVersion: $VERSION" <<<"$chart_yaml" || die "chart: $chart_yaml"
want=$(for image in pullpass-agent pullpass-webhook; do echo "$repo/$image:$VERSION@$("$CRANE" digest "$repo/$image:$VERSION")"; done)
got=$("$HELM" template pullpass "$work/chart/pullpass-$chart_version.tgz" -n pullpass | sed -n 's/^ *image: "\(.*\)"$/\1/p' | sort -u)
[ "$got" = "$want" ] || die "the chart's images are
$got
want
$want"
log "ok oci://$repo/charts/pullpass $chart_version renders the pushed images by digest"

# --- signatures --------------------------------------------------------------------------------------
for ref in "${IMAGES[@]/#/$repo/}" "$repo/charts/pullpass"; do
  tag=$VERSION; [ "${ref##*/}" = pullpass ] && [[ "$ref" == */charts/* ]] && tag=$chart_version
  "$COSIGN" verify --key "$work/cosign.pub" --insecure-ignore-tlog=true "$ref:$tag" >/dev/null 2>"$work/verify.log" ||
    die "cosign verify $ref:$tag: $(tail -n 3 "$work/verify.log")"
done
log "ok cosign verify --key: every image and the chart"

# --- files ----------------------------------------------------------------------------------------------
(cd "$out" && sha256sum --quiet -c checksums.txt) || die "sha256sum -c checksums.txt"
for f in pullpass_${VERSION}_{linux,darwin}_{amd64,arm64}.tar.gz pullpass_${VERSION}_windows_{amd64,arm64}.zip; do
  [ -s "$out/$f" ] && [ -s "$out/$f.cdx.json" ] && grep -q " $f\$" "$out/checksums.txt" || die "$f, its SBOM or its checksum is missing"
  jq -e '.bomFormat == "CycloneDX"' "$out/$f.cdx.json" >/dev/null || die "$f.cdx.json is no CycloneDX SBOM"
done
log "ok checksums.txt, archives for linux, darwin, windows on amd64 and arm64, their SBOMs"

# --- krew: the plugin from the manifest, and kubectl pullpass version ------------------------------------
export KREW_ROOT=$work/krew
"$KREW" install --manifest="$out/pullpass.yaml" --archive="$out/pullpass_${VERSION}_linux_amd64.tar.gz" >"$work/krew.log" 2>&1 ||
  die "krew install: $(tail -n 5 "$work/krew.log")"
mkdir -p "$work/path" && ln -s "$KUBECTL" "$work/path/kubectl"
answer=$(PATH=$KREW_ROOT/bin:$work/path:/usr/bin:/bin kubectl pullpass version) || die "kubectl pullpass version failed"
[[ "$answer" == "pullpass $VERSION (commit $commit,"* ]] || die "kubectl pullpass version said: $answer"
log "ok krew install --manifest --archive; kubectl pullpass version: $answer"

log "passed: make release ${release_secs} s, make test-release $(( $(date +%s) - start_time )) s in all"
