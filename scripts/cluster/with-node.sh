#!/usr/bin/env bash
# with-node.sh DIR CMD...: starts the test node with state in DIR (KUBEDR_TESTENV_DIR), runs CMD inside the node's
# network namespace (where the cluster's addresses exist), and stops the node afterwards, whatever happens.
# KUBEDR_KEEP_NODE=1 leaves it running (stop it with: KUBEDR_TESTENV_DIR=DIR bun scripts/cluster/node.ts stop).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export KUBEDR_TESTENV_DIR=$(realpath -m "$1"); shift
bun=${BUN:-bun}
# etcd 3.5 (with etcdutl) and restic 0.18 from Debian 13 come first: the node's etcd, the tests, the bench and the
# demo run what most clusters and the image run. Debian 12's etcd 3.4 stays at /usr/bin for tests of older clusters.
export PATH="$("$here/fetch-trixie.sh")/bin:$PATH"
stop() { [ "${KUBEDR_KEEP_NODE:-}" = 1 ] || "$bun" "$here/node.ts" stop; }
trap stop EXIT
trap 'exit 130' INT TERM
"$bun" "$here/node.ts" start >&2
netns=$("$bun" -e "console.log(JSON.parse(require('fs').readFileSync('$KUBEDR_TESTENV_DIR/state.json','utf8')).netns)")
nsenter --net="/run/netns/$netns" "$@"
