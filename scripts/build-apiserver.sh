#!/usr/bin/env bash
# Builds kube-apiserver from Debian's `kubernetes` source package once and caches it outside the repository,
# keyed by the source version. Prints the binary's path. See shared/notes/testenv.md for why each step is here.
set -euo pipefail
source "$(dirname "$0")/build-cache.sh"
version=${KUBE_SRC_VERSION:-1.20.2}
# The suffix names the vendored-library fixes below; change it when they change so old builds are not reused.
out="$cache/kube-apiserver-$version-reflect2-openapi230"
reuse_or_lock "$out" .build.lock

work="$cache/src"
mkdir -p "$work/parts" "$work/lists/partial"
# A private apt state dir: a deb-src-only update of the system lists would break later binary installs.
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$work/parts/src.sources"
O=(-o Dir::Etc::SourceParts="$work/parts" -o Dir::Etc::SourceList=/dev/null -o Dir::State::Lists="$work/lists")
if ! ls "$work"/kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  echo "build-apiserver: fetching Debian source of kubernetes $version" >&2
  apt-get "${O[@]}" update -qq >/dev/null
  (cd "$work" && apt-get "${O[@]}" source --download-only kubernetes >/dev/null 2>&1)
fi
tarball=$(ls "$work"/kubernetes_*.orig.tar.gz | head -1)
case "$tarball" in *"$version"*) ;; *) echo "build-apiserver: Debian source is $tarball, not $version" >&2; exit 1;; esac
tree="$work/tree"
if [ ! -d "$tree/vendor" ]; then
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
    grep -q 'if data == nil {' "$f" || { echo "build-apiserver: could not patch $f" >&2; exit 1; }
  done
fi
echo "build-apiserver: building kube-apiserver $version (about 10 minutes on 2 cores, once)" >&2
(cd "$tree" && PATH=/usr/lib/go-1.19/bin:$PATH make WHAT=cmd/kube-apiserver >"$work/build.log" 2>&1) \
  || { tail -30 "$work/build.log" >&2; exit 1; }
cp "$tree/_output/bin/kube-apiserver" "$out.tmp"
mv "$out.tmp" "$out"
# Builds with older fixes are superseded.
find "$cache" -maxdepth 1 -name "kube-apiserver-$version*" ! -name "$(basename "$out")" -delete
rm -rf "$tree" "$work/lists"  # keep only the tarball: a rebuild needs no download
echo "$out"
