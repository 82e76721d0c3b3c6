#!/usr/bin/env bash
# Builds dist/kubedr: one self-contained linux/amd64 executable (Bun runtime + bytecode-compiled program).
# The git commit is embedded for `kubedr version`; "-dirty" marks a build from uncommitted changes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/bun ] || scripts/install-deps.sh

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit-dirty"
fi

mkdir -p dist
# --bytecode: start-up about a third faster (shared/notes/stack.md). It defaults to CommonJS output, which rejects main.ts's
# top-level await, hence --format=esm. --minify changes little and would only blur stack traces.
# A compiled binary would by default read .env and bunfig.toml from whatever directory it is started in; the shipped
# binary takes its configuration from flags and the environment only.
# Written beside, then renamed: test files running side by side (scripts/run-tests.ts) build it while others run it.
node_modules/.bin/bun build src/main.ts --compile --bytecode --format=esm --target=bun-linux-x64 \
  --no-compile-autoload-dotenv --no-compile-autoload-bunfig \
  --define "KUBEDR_COMMIT=\"$commit\"" --outfile "dist/.kubedr.$$"
mv -f "dist/.kubedr.$$" dist/kubedr
echo "built dist/kubedr (commit $commit)" >&2
