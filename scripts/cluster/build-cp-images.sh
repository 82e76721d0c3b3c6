#!/usr/bin/env bash
# Builds the OCI images the test node's static pods will run (issue 18, "Safety"): etcd 3.5 from Debian 13
# (scripts/cluster/fetch-trixie.sh, the etcd the tests already use) and kube-apiserver 1.20.2 (scripts/cluster/build-kube.sh),
# from scratch with buildah, the way the pause and kubedr images are built: the binary, exactly the C libraries ldd reports
# for it, and nothing else (no shell). Cached outside the repository, keyed by the inputs' cache directories.
# Prints the directory holding etcd.tar and kube-apiserver.tar (image names below). Idempotent; run as root.
# scripts/cluster/node.ts imports them when the node runs its control plane as static pods.
#
#   build-cp-images.sh --etcd BINARY IMAGE: an etcd image of another binary (e.g. Debian 12's /usr/bin/etcd 3.4, which
#   the control-plane drill's node runs), named IMAGE; prints the directory holding its etcd.tar.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../build-cache.sh"
bh() { buildah --storage-driver vfs "$@"; }

# image ARCHIVE NAME BINARY...: a scratch image holding the binaries under /usr/local/bin and their shared objects at the
# paths ldd reports (the dynamic loader included); entrypoint the first binary. Static pods give the command in full.
image() {
  local archive=$1 name=$2; shift 2
  local ctr root lib
  ctr=$(bh from --name "kubedr-cp-image-$$-$(basename "$archive" .tar)" scratch)
  root=$(bh mount "$ctr")
  for b in "$@"; do install -D -m 0755 "$b" "$root/usr/local/bin/$(basename "$b")"; done
  for lib in $(for b in "$@"; do ldd "$b" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'; done | sort -u); do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
  install -d -m 1777 "$root/tmp"
  bh umount "$ctr" >/dev/null
  bh config --entrypoint "[\"/usr/local/bin/$(basename "$1")\"]" --env PATH=/usr/local/bin --workingdir / \
    --os linux --arch amd64 --created-by scripts/cluster/build-cp-images.sh "$ctr"
  bh commit --rm -q "$ctr" "oci-archive:$archive:$name" >/dev/null
}

if [ "${1:-}" = --etcd ]; then
  bin=$2 name=$3
  # Its own directory, keyed by the binary and the name (not cp-images-*: the sweep below would take it).
  out="$cache/cp-etcd-$(cat "$bin" | sha256sum | cut -c1-12)-$(echo "$name" | tr -c 'a-z0-9.\n' -)"
  if [ -f "$out/etcd.tar" ]; then echo "$out"; exit 0; fi
  mkdir -p "$cache"
  exec 9>"$cache/.cp-images.lock"
  flock 9
  if [ -f "$out/etcd.tar" ]; then echo "$out"; exit 0; fi
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  image "$out.tmp/etcd.tar" "$name" "$bin"
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "$out"
  exit 0
fi

tools=$("$here/fetch-trixie.sh" | tail -1)
kube=$("$here/build-kube.sh" | tail -1)
out="$cache/cp-images-$(basename "$tools")-$(basename "$kube")"
if [ -f "$out/etcd.tar" ] && [ -f "$out/kube-apiserver.tar" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache"
exec 9>"$cache/.cp-images.lock"
flock 9
if [ -f "$out/etcd.tar" ] && [ -f "$out/kube-apiserver.tar" ]; then echo "$out"; exit 0; fi
rm -rf "$out.tmp" && mkdir -p "$out.tmp"

# Names as kubeadm's manifests would have them, in a registry no one can pull from (the node never pulls: imported images only).
image "$out.tmp/etcd.tar" localhost/kubedr-testenv/etcd:3.5 "$tools/bin/etcd" "$tools/bin/etcdctl" "$tools/bin/etcdutl"
image "$out.tmp/kube-apiserver.tar" localhost/kubedr-testenv/kube-apiserver:v1.20.2 "$kube/kube-apiserver"
rm -rf "$out" && mv "$out.tmp" "$out"
# Images from older inputs are superseded.
find "$cache" -maxdepth 1 -name 'cp-images-*' ! -name "$(basename "$out")" -exec rm -rf {} +
echo "build-cp-images: $(du -m "$out"/*.tar | tr '\n\t' '  ')" >&2
echo "$out"
