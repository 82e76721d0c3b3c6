#!/usr/bin/env bash
# `npm test`: installs what is missing, type-checks, starts the test cluster (a real single-node Kubernetes in a network
# namespace of its own: scripts/cluster/), runs every test inside that namespace, stops the cluster. With no arguments,
# every test file runs, each file in a bun test of its own (scripts/run-tests.ts; on two nodes side by side where the machine has two cores, KUBEDR_TEST_NODES to choose).
# The node runs etcd and kube-apiserver as static pods, as kubeadm does (KUBEDR_CONTROL_PLANE=processes: as processes).
# Extra arguments go to `bun test` (e.g. `npm test -- test/e2e/backup-location.test.ts`).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
scripts/install-deps.sh
export PATH="$PWD/node_modules/.bin:$PATH"

echo "== typecheck" >&2
tsc --noEmit -p .
bun scripts/gen-crds.ts --check

echo "== test cluster, then tests (end-to-end tests wait on real processes: two minutes each at most)" >&2
status=0
if [ $# -eq 0 ]; then
  # Every file, each in a bun test of its own (scripts/run-tests.ts: two nodes side by side by default, KUBEDR_TEST_NODES=1 for one).
  PATH="$(scripts/cluster/fetch-trixie.sh)/bin:$PATH" bun scripts/run-tests.ts || status=$?
else
  KUBEDR_CONTROL_PLANE="${KUBEDR_CONTROL_PLANE:-static-pods}" \
    scripts/cluster/with-node.sh "${KUBEDR_TESTENV_DIR:-$PWD/.testenv}" bun test --timeout 120000 "$@" || status=$?
fi
echo "npm test took $(( $(date +%s) - t0 )) s" >&2
exit $status
