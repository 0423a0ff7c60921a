#!/usr/bin/env bash
# node-image.sh: builds a kind node image here, offline, for the own engine (e2e/kind/lib.sh),
# and prints its name. It follows kind's own recipe (images/base/Dockerfile and
# pkg/build/nodeimage in the sigs.k8s.io/kind module) with parts from Debian and the Go module
# proxy instead of the internet:
#   - the base: a Debian bookworm rootfs (mmdebstrap: systemd, containerd, runc, iptables,
#     conntrack, CNI plugins, ...) with kind's base-image files from the kind module;
#   - kubeadm, kubelet, kubectl of the pinned Kubernetes (hack/build-kube.sh);
#   - preloaded images, tagged exactly as kubeadm and kind expect them: kube-apiserver,
#     kube-controller-manager, kube-scheduler, kube-proxy (Kubernetes), etcd (hack/tools/etcd),
#     CoreDNS and local-path-provisioner (their modules), pause (e2e/images/pause), the pod
#     network (e2e/kind/kindnet, in place of kindnetd) and the local-path helper (busybox).
# The image is tagged by a hash of everything it is made of: a warm run finds it and builds nothing.
#
# node-image.sh --parts builds only what needs no engine (the Kubernetes binaries, the Debian
# rootfs tarballs, etcd, CoreDNS, local-path-provisioner; all cached) and prints nothing: make
# test runs it while the harness suite runs, which mostly waits, so that a fresh machine's
# kind cluster starts from warm parts.
set -euo pipefail
parts_only=false
[ "${1:-}" = --parts ] && parts_only=true
. "$(dirname "$0")/lib.sh"
$parts_only || use_engine
here=$(cd "$(dirname "$0")" && pwd)

kind_version=$(awk '$1 == "\"kind" { print $3 }' "$repo_root/hack/build-tools.sh" | tr -d '"')
[ -n "$kind_version" ] || die "no kind pin in hack/build-tools.sh"
moddir() { module_dir "$repo_root" "$1"; }
kind_src=$(moddir "sigs.k8s.io/kind@$kind_version")
[ -d "$kind_src/images/base/files" ] || die "kind $kind_version sources not found (go mod download sigs.k8s.io/kind@$kind_version)"
kindconst() { (cd "$repo_root" && go run ./e2e/kind/kindconsts "$kind_src/pkg/build/nodeimage" "$1"); }

# --- versions: what kubeadm and kind will ask for --------------------------------------------
KUBE=$(KUBE_BINARIES="kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy" "$repo_root/hack/build-kube.sh" | tail -n 1)
kube_version=$(basename "$KUBE")
mapfile -t kubeadm_images < <("$KUBE/kubeadm" config images list --kubernetes-version "$kube_version")
image_of() { printf '%s\n' "${kubeadm_images[@]}" | grep -E "/$1:" | head -n 1; }
etcd_image=$(image_of etcd); coredns_image=$(image_of coredns)
etcd_version=v${etcd_image##*:}; etcd_version=${etcd_version%-*}
coredns_version=${coredns_image##*:}
pinned_etcd=$(cd "$repo_root/hack/tools/etcd" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
[ "$pinned_etcd" = "$etcd_version" ] || die "kubeadm $kube_version wants etcd $etcd_version; hack/tools/etcd pins $pinned_etcd"
pause_image=$(sed -n 's/^[[:space:]]*sandbox_image = "\(.*\)"/\1/p' "$kind_src/images/base/files/etc/containerd/config.toml")
kindnetd_image=$(kindconst kindnetdImage)
provisioner_image=$(kindconst storageProvisionerImage)
helper_image=$(kindconst storageHelperImage)
# kind's provisioner image is built from local-path-provisioner v0.0.34, which the module proxy
# does not serve; v0.0.30 (the newest it serves) takes the same flags.
provisioner_version=v0.0.30

node_pkgs=(systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2 pigz bash
  ca-certificates curl jq procps e2fsprogs containerd runc containernetworking-plugins socat)
net_pkgs=(iptables nftables conntrack iproute2)
node_rootfs=$("$here/build-rootfs.sh" node "${node_pkgs[@]}")
net_rootfs=$("$here/build-rootfs.sh" nettools "${net_pkgs[@]}")
helper_rootfs=$("$here/build-rootfs.sh" busybox busybox-static)

key=$( {
  echo "$kind_version $kube_version $etcd_version $coredns_version $provisioner_version"
  echo "$node_rootfs $net_rootfs $helper_rootfs"
  cat "$0" "$here/kindnet/main.go" "$repo_root/e2e/cluster/runcwrapper/main.go" "$repo_root/e2e/images/pause/main.go"
  sha256sum "$KUBE"/kubeadm "$KUBE"/kubelet "$KUBE"/kubectl | cut -c1-64
} | sha256sum | cut -c1-12)
NODE_IMAGE=pullpass/kind-node:$kube_version-$key
if ! $parts_only && docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
  echo "$NODE_IMAGE"
  exit 0
fi
$parts_only || log "building node image $NODE_IMAGE (Kubernetes $kube_version, kind $kind_version)"

# --- component binaries, cached by version ----------------------------------------------------
bincache=$KIND_CACHE/bin
# build_in_module NAME MODULE@VERSION FLAGS: a module's main package built in a copy of the
# module itself, with its own go.mod and go.sum (or vendor dir).
build_in_module() {
  local name=$1 mod=$2 flags=$3 out=$bincache/$1-${2##*@}
  [ -x "$out/$name" ] && { echo "$out/$name"; return; }
  log "building $name ${mod##*@}"
  local src tmp
  src=$(moddir "$mod"); [ -n "$src" ] || die "go mod download $mod failed"
  tmp=$(mktemp -d); cp -r "$src/." "$tmp"; chmod -R u+w "$tmp"
  mkdir -p "$out"
  (cd "$tmp" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build $flags -trimpath -ldflags=-s -o "$out/.$name.tmp" .) >&2
  mv "$out/.$name.tmp" "$out/$name"; rm -rf "$tmp"
  echo "$out/$name"
}
etcd_bin=$bincache/etcd-$etcd_version/etcd
if [ ! -x "$etcd_bin" ]; then
  log "building etcd $etcd_version"
  mkdir -p "$(dirname "$etcd_bin")"
  (cd "$repo_root/hack/tools/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$etcd_bin.tmp" go.etcd.io/etcd/server/v3) >&2
  mv "$etcd_bin.tmp" "$etcd_bin"
fi
coredns_bin=$(build_in_module coredns "github.com/coredns/coredns@$coredns_version" -mod=mod)
# Its vendor dir is not in the module zip: its go.mod and go.sum instead.
provisioner_bin=$(build_in_module local-path-provisioner "github.com/rancher/local-path-provisioner@$provisioner_version" -mod=mod)
if $parts_only; then
  log "node image parts ready (etcd, CoreDNS, local-path-provisioner, rootfs tarballs, Kubernetes $kube_version)"
  exit 0
fi

work=$(mktemp -d "$KIND_DIR/node-image.XXXXXX")
build=""
cleanup() { [ -z "$build" ] || docker rm -f "$build" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
for cmd in kindnet; do (cd "$repo_root" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$work/$cmd" "./e2e/kind/$cmd"); done
(cd "$repo_root" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$work/pause" ./e2e/images/pause)
(cd "$repo_root" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$work/runcwrapper" ./e2e/cluster/runcwrapper)

# --- preloaded images -------------------------------------------------------------------------
PATHENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
# static_image REF ENTRYPOINT_JSON SRC:DEST...: one layer with static binaries.
static_image() {
  local ref=$1 entry=$2 stage; shift 2
  stage=$(mktemp -d "$work/stage.XXXXXX")
  for f in "$@"; do install -D -m 0755 "${f%%:*}" "$stage/${f#*:}"; done
  tar -C "$stage" --owner=0 --group=0 -cf "$stage.tar" .
  docker import --change "$PATHENV" --change "ENTRYPOINT $entry" "$stage.tar" "$ref" >/dev/null
  rm -rf "$stage" "$stage.tar"
}
# layered_image REF BASE ENTRYPOINT_JSON SRC:DEST...: binaries added on a base image.
layered_image() {
  local ref=$1 base=$2 entry=$3 c; shift 3
  c=$(docker create "$base" /bin/true)
  for f in "$@"; do docker cp "${f%%:*}" "$c:${f#*:}"; done
  docker commit --change "$PATHENV" --change "ENTRYPOINT $entry" "$c" "$ref" >/dev/null
  docker rm "$c" >/dev/null
}
docker import --change "$PATHENV" "$net_rootfs" pullpass/kind-nettools:build >/dev/null
images=()
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  ref=$(image_of "$c"); images+=("$ref")
  static_image "$ref" "[\"/usr/local/bin/$c\"]" "$KUBE/$c:usr/local/bin/$c"
done
ref=$(image_of kube-proxy); images+=("$ref")
layered_image "$ref" pullpass/kind-nettools:build '["/usr/local/bin/kube-proxy"]' "$KUBE/kube-proxy:/usr/local/bin/kube-proxy"
images+=("$etcd_image"); static_image "$etcd_image" '["/usr/local/bin/etcd"]' "$etcd_bin:usr/local/bin/etcd"
images+=("$coredns_image"); static_image "$coredns_image" '["/coredns"]' "$coredns_bin:coredns"
images+=("$pause_image"); static_image "$pause_image" '["/pause"]' "$work/pause:pause"
images+=("$kindnetd_image")
layered_image "$kindnetd_image" pullpass/kind-nettools:build '["/bin/kindnetd"]' "$work/kindnet:/bin/kindnetd"
images+=("$provisioner_image")
static_image "$provisioner_image" '["/usr/local/bin/local-path-provisioner"]' "$provisioner_bin:usr/local/bin/local-path-provisioner"
# The helper pod runs sh, mkdir and rm: busybox's.
images+=("$helper_image")
stage=$(mktemp -d "$work/helper.XXXXXX")
tar -C "$stage" -xf "$helper_rootfs" --wildcards './*bin/busybox'
bb=$(find "$stage" -name busybox -type f | head -n 1)
mkdir -p "$stage/bin.new"; mv "$bb" "$stage/bin.new/busybox"; rm -rf "$stage/bin" "$stage/usr"; mv "$stage/bin.new" "$stage/bin"
for a in sh mkdir rm ls cat; do ln -s busybox "$stage/bin/$a"; done
tar -C "$stage" --owner=0 --group=0 -cf "$stage.tar" .
docker import --change "$PATHENV" --change 'ENTRYPOINT ["/bin/sh"]' "$stage.tar" "$helper_image" >/dev/null
rm -rf "$stage" "$stage.tar"
docker save -o "$work/images.tar" "${images[@]}"

# --- the node: kind's base image recipe, then kind's node image recipe ----------------------
docker import "$node_rootfs" pullpass/kind-rootfs:build >/dev/null
build=kind-build-$key-$$
docker run -d --name "$build" --entrypoint sleep pullpass/kind-rootfs:build infinity >/dev/null
files=$work/files
cp -r "$kind_src/images/base/files" "$files"; chmod -R u+w "$files"
find "$files" -type d -exec chmod 0755 {} +; find "$files" -type f -exec chmod 0644 {} +
chmod 0755 "$files"/usr/local/bin/* "$files"/kind/bin/*
tar -C "$files" --owner=0 --group=0 -cf - . | docker cp - "$build:/"
docker cp "$work/runcwrapper" "$build:/usr/local/sbin/runc"
for b in kubeadm kubelet kubectl; do docker cp "$KUBE/$b" "$build:/usr/bin/$b"; done
kindconst defaultCNIManifest >"$work/default-cni.yaml"
kindconst defaultStorageManifest >"$work/default-storage.yaml"
docker exec "$build" mkdir -p /kind/manifests
docker cp "$work/default-cni.yaml" "$build:/kind/manifests/default-cni.yaml"
docker cp "$work/default-storage.yaml" "$build:/kind/manifests/default-storage.yaml"
docker exec -i "$build" bash -euo pipefail <<SETUP
# Debian puts containerd and the CNI plugins elsewhere than kind's units and config expect.
for b in containerd ctr containerd-shim-runc-v2; do ln -sf /usr/bin/\$b /usr/local/bin/\$b; done
mkdir -p /opt/cni/bin
for p in host-local loopback ptp portmap bridge; do cp /usr/lib/cni/\$p /opt/cni/bin/; done
# runc is reached through runcwrapper (/usr/local/sbin comes first in PATH).
chmod 0755 /usr/local/sbin/runc /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
chmod 0644 /kind/manifests/*
# As images/base/Dockerfile does.
find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
  /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
  /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> /etc/systemd/journald.conf
ln -sf /usr/lib/systemd/systemd /sbin/init
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl mask systemd-binfmt.service
mkdir -p /etc/kubernetes/manifests
ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
  | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
printf '%s' "$kube_version" > /kind/version
SETUP
# Preload the images into the node's containerd, as kind's builder does.
docker exec "$build" bash -c 'nohup containerd >/dev/null 2>&1 &'
docker exec "$build" bash -c 'for i in $(seq 1 50); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1' ||
  die "containerd did not start in the build container"
docker exec -i "$build" ctr -n k8s.io images import --all-platforms --no-unpack --digests - <"$work/images.tar" >/dev/null
# Pinned, as kind's builder labels them: the kubelet's image GC never removes them.
for ref in "${images[@]}"; do
  docker exec "$build" ctr -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
done
docker exec "$build" ctr -n k8s.io images ls -q | sort >"$work/imported"
for ref in "${images[@]}"; do grep -qx "$ref" "$work/imported" || die "image $ref missing from the node image (imported: $(tr '\n' ' ' <"$work/imported"))"; done
docker exec "$build" pkill containerd || true
sleep 1
# (docker commit cannot set STOPSIGNAL; kind removes its nodes with docker rm -f, which never asks.)
docker commit \
  --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
  --change 'ENV container=docker' \
  "$build" "$NODE_IMAGE" >/dev/null
docker rmi "${images[@]}" pullpass/kind-nettools:build pullpass/kind-rootfs:build >/dev/null 2>&1 || true
log "built $NODE_IMAGE"
echo "$NODE_IMAGE"
