#!/usr/bin/env bash
# Builds the distroless-style OCI image dist/kubedr-image.tar (localhost/kubedr:<version>) from scratch with buildah:
# dist/kubedr, restic, etcd, etcdctl and etcdutl (verification restores each backup into a throwaway etcd), exactly the C
# libraries they load, CA certificates, passwd/group (root, nobody, kubedr 65532) and a writable /tmp. No shell and no
# package manager, so there is nothing in it to exec into but these five programs.
# No Docker engine and no base image are needed (shared/notes/testenv.md). Idempotent; run as root.
#   KUBEDR_IMAGE_SOURCE   value of the org.opencontainers.image.source label (default: the git remote "origin")
set -euo pipefail
cd "$(dirname "$0")/.."
command -v buildah >/dev/null || scripts/install-deps.sh
# One build at a time in this tree (test files on several nodes side by side each ask for the image).
mkdir -p dist
exec 8>dist/.build-image.lock
flock 8
# Always rebuilt (about a second), so the image holds the binary of the tree it is labelled with.
scripts/build-binary.sh

# vfs: works without overlay support in the kernel or fuse-overlayfs.
bh() { buildah --storage-driver vfs "$@"; }

# Version and commit as the binary itself reports them, so the labels describe what is inside.
info=$(dist/kubedr version)
version=$(sed -n 's/^kubedr //p' <<<"$info")
commit=$(sed -n 's/^commit: //p' <<<"$info")
image="localhost/kubedr:$version"
source=${KUBEDR_IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || true)}
# etcd 3.5 and restic 0.18 from Debian 13 (scripts/cluster/fetch-trixie.sh): etcdutl restores 3.4 and 3.5 snapshots.
tools=$(scripts/cluster/fetch-trixie.sh)/bin
restic_bin=$tools/restic
etcd_bins=("$tools/etcd" "$tools/etcdctl" "$tools/etcdutl")

ctr=$(bh from --name kubedr-image-build-$$ scratch)
cleanup() { bh rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT
root=$(bh mount "$ctr")

# The binaries and every shared object ldd reports for them (the dynamic loader included), at the paths ldd reports
# them under, because those are the paths the binaries and the loader look for.
install -D -m 0755 dist/kubedr "$root/usr/local/bin/kubedr"
install -D -m 0755 "$restic_bin" "$root/usr/bin/restic"
for bin in "${etcd_bins[@]}"; do install -D -m 0755 "$bin" "$root/usr/bin/$(basename "$bin")"; done
for lib in $(for bin in dist/kubedr "$restic_bin" "${etcd_bins[@]}"; do ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'; done | sort -u); do
  install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done

install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$root/etc"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
kubedr:x:65532:65532:kubedr:/home/kubedr:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
kubedr:x:65532:
EOF
# glibc and Go both read this for name resolution order; without it glibc tries DNS before /etc/hosts.
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
# /tmp: the controller's scratch directory for snapshots; a home for restic's cache if one is enabled.
install -d -m 1777 "$root/tmp"
install -d -m 0700 "$root/root"
install -d -m 0700 -o 65532 -g 65532 "$root/home/kubedr"
bh umount "$ctr" >/dev/null

labels=(--label org.opencontainers.image.title=kubedr
  --label "org.opencontainers.image.description=Backup and disaster recovery for a Kubernetes cluster's etcd and control-plane certificates"
  --label "org.opencontainers.image.version=$version" --label "org.opencontainers.image.revision=$commit"
  --label org.opencontainers.image.licenses=Apache-2.0)
if [ -n "$source" ]; then labels+=(--label "org.opencontainers.image.source=$source")
else echo "build-image: no git remote 'origin' and no KUBEDR_IMAGE_SOURCE: image has no source label" >&2; fi
bh config --entrypoint '["/usr/local/bin/kubedr"]' --cmd controller --user 65532:65532 --workingdir / \
  --env PATH=/usr/local/bin:/usr/bin --env HOME=/home/kubedr --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --os linux --arch amd64 --created-by scripts/build-image.sh "${labels[@]}" "$ctr"

rm -f dist/.kubedr-image.tar
# Straight into an OCI archive: a copy in local storage would only double the disk used (vfs stores full copies).
# buildah commit leaves layers uncompressed unless told; --timestamp (the commit's time) makes rebuilds of one commit identical.
# Written beside, then renamed: a test on another node may be importing the previous one.
bh commit --rm -q --disable-compression=false --timestamp "$(git log -1 --format=%ct 2>/dev/null || date +%s)" \
  "$ctr" "oci-archive:dist/.kubedr-image.tar:$image" >/dev/null
mv -f dist/.kubedr-image.tar dist/kubedr-image.tar
trap - EXIT
echo "built dist/kubedr-image.tar ($image, $(du -m dist/kubedr-image.tar | cut -f1) MB)" >&2
