#!/usr/bin/env bash
# Installs what tests and the demo need on a fresh machine of this kind (Debian + npm registries only).
# Idempotent: every step checks first, so a second run takes a second.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

need_apt=()
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
command -v restic >/dev/null || need_apt+=(restic)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v rsync >/dev/null || need_apt+=(rsync)
command -v envsubst >/dev/null || need_apt+=(gettext-base)
command -v curl >/dev/null || need_apt+=(curl)
command -v flock >/dev/null || need_apt+=(util-linux)
command -v kubectl >/dev/null || need_apt+=(kubernetes-client)
[ -x /usr/lib/go-1.19/bin/go ] || need_apt+=(golang-1.19-go)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need_apt+=(golang-github-modern-go-reflect2-dev)
# Chart rendering (Helm's template engine), image build, alert rule tests.
[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] || need_apt+=(golang-github-masterminds-sprig-dev)
[ -d /usr/share/gocode/src/gopkg.in/yaml.v2 ] || need_apt+=(golang-gopkg-yaml.v2-dev)
command -v buildah >/dev/null || need_apt+=(buildah)
command -v promtool >/dev/null || need_apt+=(prometheus)
# The test cluster's node: container runtime, CNI plugins, kube-proxy's iptables, and a C compiler for the pause image.
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v conntrack >/dev/null || need_apt+=(conntrack)
command -v gcc >/dev/null || need_apt+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need_apt+=(libc6-dev)
command -v nsenter >/dev/null || need_apt+=(util-linux)
command -v ip >/dev/null || need_apt+=(iproute2)
# The node's S3: Ceph's RADOS Gateway on a single-node Ceph (monitor, one memstore OSD), Debian 12's 16.2.
command -v ceph-mon >/dev/null || need_apt+=(ceph-mon)
command -v ceph-osd >/dev/null || need_apt+=(ceph-osd)
command -v radosgw >/dev/null || need_apt+=(radosgw)
command -v ceph >/dev/null || need_apt+=(ceph-common)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Reinstall when the lockfile is newer than what node_modules was installed from.
if [ ! -f "$here/node_modules/.package-lock.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  echo "install-deps: npm ci" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

"$here/scripts/cluster/build-kube.sh" >&2
# etcd 3.5 (etcdutl) and restic 0.18 from Debian 13: what the image ships and the tests run (with-node.sh puts them first on PATH).
"$here/scripts/cluster/fetch-trixie.sh" >/dev/null
"$here/scripts/build-helm-render.sh" >/dev/null
