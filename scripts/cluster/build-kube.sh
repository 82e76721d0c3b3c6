#!/usr/bin/env bash
# Builds the five binaries of a Kubernetes node (kube-apiserver, kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy) and the pause (sandbox) image from Debian's `kubernetes` source package, once, and caches them outside
# the repository, keyed by the source version and the fixes below. Prints the directory holding them.
# One make for all five: one code-generator pass and one Go build cache (12.3 minutes on a fresh 2-core machine,
# 2026-12-05: 2 of them generating code, 10 compiling; separate makes would repeat the generators). See shared/notes/testenv.md and shared/notes/realnode/README.md for why each step is here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../build-cache.sh"
version=${KUBE_SRC_VERSION:-1.20.2}
# The suffix names the vendored-library fixes below; change it when they change so old builds are not reused.
out="$cache/kube-$version-reflect2-openapi230"
# The directory appears (by rename) only when everything in it is built.
reuse_or_lock "$out" .build.lock

t0=$(date +%s)
step() { echo "build-kube: [$(( $(date +%s) - t0 ))s] $*" >&2; }
work="$cache/src"
mkdir -p "$work/parts" "$work/lists/partial"
# A private apt state dir: a deb-src-only update of the system lists would break later binary installs.
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$work/parts/src.sources"
O=(-o Dir::Etc::SourceParts="$work/parts" -o Dir::Etc::SourceList=/dev/null -o Dir::State::Lists="$work/lists")
if ! ls "$work"/kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  step "fetching Debian's source of kubernetes $version"
  apt-get "${O[@]}" update -qq >/dev/null
  (cd "$work" && apt-get "${O[@]}" source --download-only kubernetes >/dev/null 2>&1)
fi
tarball=$(ls "$work"/kubernetes_*.orig.tar.gz | head -1)
case "$tarball" in *"$version"*) ;; *) echo "build-kube: Debian source is $tarball, not $version" >&2; exit 1;; esac
tree="$work/tree"
if [ ! -d "$tree/vendor" ]; then
  step "unpacking $(basename "$tarball")"
  rm -rf "$tree" && mkdir -p "$tree"
  tar xzf "$tarball" -C "$tree" --strip-components=1
  # Go >= 1.18 crashes the vendored reflect2 1.0.1 on the first CRD write; Debian's 1.0.2 fixes it.
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/"
  rm -f "$tree/vendor/github.com/modern-go/reflect2/go.mod"
  # Built with Go >= 1.16, 1.20's schema validation takes every empty string in a custom resource for null
  # ("must be of type string: null", kubernetes#99804). kube-openapi#230's fix: only a real nil is null.
  for f in "$tree/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go" "$tree/vendor/github.com/go-openapi/validate/type.go"; do
    sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$f"
    grep -q 'if data == nil {' "$f" || { echo "build-kube: could not patch $f" >&2; exit 1; }
  done
fi
what="cmd/kube-apiserver cmd/kubelet cmd/kube-controller-manager cmd/kube-scheduler cmd/kube-proxy"
step "make WHAT=\"$what\" (about 12 minutes on 2 cores; log: $work/build.log)"
# make is silent for minutes: say every 30 s how far it is. GOFLAGS=-v (Kubernetes' Makefile passes it to go) logs
# each package as it is compiled, which the progress line counts.
progress() {
  awk '/^\+\+\+ .*Building go targets/ { n = 0; next } /^[a-z][^ ]*$/ { n++; last = $0 } END { if (n) printf "%d packages compiled, the last %s", n, last }' \
    "$work/build.log" 2>/dev/null | sed 's|k8s.io/kubernetes/vendor/||' | cut -c1-140
}
( while sleep 30; do step "still building: $(progress)"; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT
(cd "$tree" && PATH=/usr/lib/go-1.19/bin:$PATH make WHAT="$what" GOFLAGS=-v >"$work/build.log" 2>&1) \
  || { tail -30 "$work/build.log" >&2; exit 1; }
kill $ticker 2>/dev/null || true
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
for b in $what; do cp "$tree/_output/bin/${b#cmd/}" "$out.tmp/"; done

# The pause image, from Kubernetes' own build/pause/linux/pause.c, built the way its Makefile builds it (static), so
# no registry is ever contacted for the sandbox image.
step "pause image"
gcc -Os -Wall -Werror -static -DVERSION=v3.4.1-kubedr -o "$out.tmp/pause" "$tree/build/pause/linux/pause.c"
strip "$out.tmp/pause"
bh() { buildah --storage-driver vfs "$@"; }
c=$(bh from scratch)
bh copy "$c" "$out.tmp/pause" /pause
bh config --entrypoint '["/pause"]' --user 65535:65535 --os linux --arch amd64 "$c"
bh commit --rm -q "$c" "oci-archive:$out.tmp/pause.tar:k8s.gcr.io/pause:3.4.1" >/dev/null
rm -f "$out.tmp/pause"

mv "$out.tmp" "$out"
# Builds with older fixes (and the apiserver-only builds before this script) are superseded.
find "$cache" -maxdepth 1 -name "kube-*$version*" ! -name "$(basename "$out")" -exec rm -rf {} +
rm -rf "$tree" "$work/lists"  # 3+ GB of tree and Go cache; keep only the tarball: a rebuild needs no download
step "built $(ls "$out" | tr '\n' ' ')"
echo "$out"
