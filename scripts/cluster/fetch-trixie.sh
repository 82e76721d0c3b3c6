#!/usr/bin/env bash
# Fetches etcd 3.5 (etcd, etcdctl, etcdutl) and restic 0.18 from Debian 13 (trixie) into the cache, without mixing
# releases into this Debian 12 system: a private apt state (its own sources, lists and archives), `apt-get download`,
# `dpkg-deb -x`. Both are static Go binaries that run here as they are (shared/notes/testenv.md).
# Prints the directory holding bin/etcd, bin/etcdctl, bin/etcdutl and bin/restic. Idempotent; cached.
#
# Why both: most clusters people run (Kubernetes >= 1.22) have etcd 3.5, restored with `etcdutl` (3.4's `etcdctl
# snapshot restore` cannot bump revisions); Debian 12 has only 3.4. restic 0.18 is what the image ships.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../build-cache.sh"
out="$cache/trixie-etcd3.5-restic0.18"
if [ -x "$out/bin/etcdutl" ] && [ -x "$out/bin/restic" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache"
exec 9>"$cache/.trixie.lock"
flock 9
if [ -x "$out/bin/etcdutl" ] && [ -x "$out/bin/restic" ]; then echo "$out"; exit 0; fi

work="$cache/trixie-apt"
mkdir -p "$work/parts" "$work/lists/partial" "$work/archives/partial"
cat >"$work/parts/trixie.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
O=(-o Dir::Etc::SourceParts="$work/parts" -o Dir::Etc::SourceList=/dev/null -o Dir::State::Lists="$work/lists"
  -o Dir::Cache="$work/cache" -o Dir::Cache::archives="$work/archives")
echo "fetch-trixie: etcd-server etcd-client restic from Debian 13" >&2
apt-get "${O[@]}" update -qq 2>&1 >/dev/null | grep -v "unsandboxed as root" >&2 || true
tmp="$out.tmp"
rm -rf "$tmp" "$work/debs" && mkdir -p "$tmp" "$work/debs"
(cd "$work/debs" && apt-get "${O[@]}" download etcd-server etcd-client restic 2>&1 >/dev/null | grep -v "unsandboxed as root" >&2 || true)
for deb in "$work/debs"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
mkdir -p "$tmp/bin"
for b in etcd etcdctl etcdutl restic; do
  # usr/bin only: the etcd package also has an init script named etcd.
  [ -x "$tmp/root/usr/bin/$b" ] || { echo "fetch-trixie: usr/bin/$b not found in the packages" >&2; exit 1; }
  mv "$tmp/root/usr/bin/$b" "$tmp/bin/$b"
done
rm -rf "$tmp/root" "$work/debs"
"$tmp/bin/etcdutl" version | head -1 >&2
"$tmp/bin/restic" version >&2
rm -rf "$out" && mv "$tmp" "$out"
echo "$out"
