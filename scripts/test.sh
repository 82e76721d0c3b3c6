#!/usr/bin/env bash
# `npm test`: installs what is missing, type-checks, starts the local cluster, runs every test, stops the cluster.
# Extra arguments go to `bun test` (e.g. `npm test -- test/e2e/backup-location.test.ts`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$PWD/node_modules/.bin:$PATH"

echo "== typecheck" >&2
tsc --noEmit -p .
bun scripts/gen-crds.ts --check

export KUBEDR_TESTENV_DIR=${KUBEDR_TESTENV_DIR:-$PWD/.testenv}
trap 'bun scripts/testenv.ts stop' EXIT INT TERM
echo "== local cluster" >&2
bun scripts/testenv.ts start >&2
echo "== tests" >&2
# End-to-end tests wait on real processes (restic, etcd, the API server): allow each test two minutes.
bun test --timeout 120000 "$@"
