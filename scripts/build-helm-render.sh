#!/usr/bin/env bash
# Builds scripts/helm-render (Helm's template engine for machines without helm) with Debian's Go and Go libraries,
# and caches the binary outside the repository, keyed by a hash of its source. Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/build-cache.sh"
hash=$(sha256sum "$here/helm-render/main.go" | cut -c1-12)
out="$cache/helm-render-$hash"
reuse_or_lock "$out" .helm-render.lock

# GOPATH mode: Debian ships sprig, yaml.v2 and their dependencies as source under /usr/share/gocode (no module proxy here).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/helm-render"
cp "$here/helm-render/main.go" "$work/src/helm-render/"
(cd "$work/src/helm-render" && GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOCACHE="$work/cache" GOFLAGS= \
  /usr/lib/go-1.19/bin/go build -o "$out.tmp" .)
mv "$out.tmp" "$out"
# Builds of other sources stay: worktrees and test runs side by side share this cache, and a running suite keeps the
# path of the build it started with (removing it failed their later renders).
echo "$out"
