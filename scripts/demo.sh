#!/usr/bin/env bash
# `npm run demo`: the product as a user meets it, on a real single-node Kubernetes (scripts/cluster/: etcd on mTLS,
# kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy, and S3 over HTTPS, all inside a
# network namespace of their own). The Helm chart installs the controller as a pod from the kubedr image; then a
# BackupLocation, a backup of the node's own etcd and certificates, records, events and metrics, a MetadataRestore
# whose pod the kubelet runs, and the disaster-recovery command line (kubedr snapshots, kubedr restore latest).
# `npm run demo -- --keep` leaves the cluster running and prints how to reach it; otherwise it all stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
[ "${1:-}" = "--keep" ] && keep=true
export KUBEDR_TESTENV_DIR="$PWD/.demo"
export PATH="$PWD/node_modules/.bin:$PATH"
export KUBEDR_DEMO_T0=${KUBEDR_DEMO_T0:-$(date +%s)}
t0=$KUBEDR_DEMO_T0
step() { printf '\n\033[1m== [%ss] %s\033[0m\n' "$(( $(date +%s) - t0 ))" "$*"; }
state="$KUBEDR_TESTENV_DIR/state.json"
field() { bun -e "console.log(JSON.parse(require('fs').readFileSync('$state','utf8')).$1)"; }

if [ "${KUBEDR_DEMO_INSIDE:-}" != 1 ]; then
  step "Installing what is missing (Debian and npm packages; the first run builds Kubernetes: about 13 minutes on 2 cores)"
  scripts/install-deps.sh
  $keep || trap 'bun scripts/cluster/node.ts stop' EXIT
  step "Starting a real single-node Kubernetes in network namespace kdr-demo"
  bun scripts/cluster/node.ts start
  # Everything else runs inside the node's network namespace, where its addresses exist.
  KUBEDR_DEMO_INSIDE=1 nsenter --net="/run/netns/$(field netns)" "$0" "$@"
  exit
fi

export KUBECONFIG=$(field kubeconfig)
k() { kubectl "$@" 2> >(grep -v 'version difference' >&2); }
pki="$KUBEDR_TESTENV_DIR/pki"
S3_URL=$(field s3Url)
ns=kubedr-system
pretty() { bun -e 'console.log(JSON.stringify(JSON.parse(await Bun.stdin.text()), null, 2))'; }
k get nodes -o wide

step "Building the kubedr image (scripts/build-image.sh) and importing it into the node's containerd"
scripts/build-image.sh
ctr --address "$(field containerdSocket)" -n k8s.io images import dist/kubedr-image.tar >/dev/null
version=$(bun -e "console.log(require('./package.json').version)")

step "helm install: the chart rendered (scripts/helm-render, Helm's template engine) and applied with kubectl"
values="$KUBEDR_TESTENV_DIR/values.yaml"
cat > "$values" <<V
image: {repository: localhost/kubedr, tag: "$version", pullPolicy: Never}
certsHostPaths: [$pki]
monitoring: {serviceMonitor: {enabled: false}, prometheusRule: {enabled: false}}
V
k create namespace $ns
# --no-hooks: what helm install applies (the chart's only hook runs at helm uninstall).
"$(scripts/build-helm-render.sh)" --name kubedr --namespace $ns --include-crds --no-hooks -f "$values" helm/kubedr | k apply -f -
k -n $ns rollout status deployment/kubedr --timeout=180s
k -n $ns get pods -o wide
echo "Lease holder: $(k -n $ns get lease kubedr-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || echo '(not yet)')"

step "Applying samples/s3-credentials-secret.yaml (plus the test CA as ca.crt) and samples/backup-location.yaml"
# The keys of the node's S3 user (scripts/cluster/s3.ts); the repository password is made up for this demo.
read -r s3_access s3_secret < <(bun -e 'import { S3_ACCESS_KEY as a, S3_SECRET_KEY as s } from "./scripts/cluster/s3.ts"; console.log(a, s)')
S3_ACCESS_KEY=$s3_access S3_SECRET_KEY=$s3_secret RESTIC_REPO_PASSWORD="demo-$(date +%s)" \
  envsubst < samples/s3-credentials-secret.yaml | k apply -f -
k -n $ns patch secret s3-creds --type merge -p "{\"data\":{\"ca.crt\":\"$(base64 -w0 "$pki/ca.crt")\"}}"
S3_URL=$S3_URL envsubst < samples/backup-location.yaml | k apply -f -
k -n $ns wait --for=condition=Ready --timeout=120s backuplocation/local-s3
k -n $ns get backuplocations -o wide
k -n $ns get events --field-selector involvedObject.kind=BackupLocation

step "Backing up the node's own etcd and certificates: etcd-creds Secret and samples/backup-policy.yaml"
k -n $ns create secret generic etcd-creds --from-file=ca.crt="$pki/etcd/ca.crt" \
  --from-file=client.crt="$pki/etcd/healthcheck-client.crt" --from-file=client.key="$pki/etcd/healthcheck-client.key"
# The sample as users write it (etcd at https://127.0.0.1:2379, as on a kubeadm node), pointed at this node's PKI.
sed -e "s#/etc/kubernetes/pki#$pki#" samples/backup-policy.yaml | k apply -f -
echo 'kubectl annotate mbp test-backup kubedr.catalogicsoftware.com/backup-now="$(date +%s)"'
k -n $ns annotate mbp test-backup --overwrite kubedr.catalogicsoftware.com/backup-now="$(date +%s)"
st=""
for _ in $(seq 240); do
  st=$(k -n $ns get mbp test-backup -o jsonpath='{.status.backupStatus}')
  [ "$st" = Completed ] || [ "$st" = Failed ] && break
  sleep 0.5
done
k -n $ns get metadatabackuppolicies,metadatabackuprecords
k -n $ns get mbp test-backup -o jsonpath='{.status}' | pretty
k -n $ns get events --field-selector involvedObject.kind=MetadataBackupPolicy
[ "$st" = Completed ] || { echo "backup did not complete"; exit 1; }

step "Metrics, scraped through the chart's Service (as Prometheus would)"
ip=$(k -n $ns get service kubedr-metrics -o jsonpath='{.spec.clusterIP}')
port=$(k -n $ns get service kubedr-metrics -o jsonpath='{.spec.ports[0].port}')
echo "curl http://$ip:$port/metrics | grep policyName=\"test-backup\""
curl -s "http://$ip:$port/metrics" | grep 'policyName="test-backup"' | grep -v '_bucket'

step "kubectl logs deployment/kubedr (last lines)"
k -n $ns logs deployment/kubedr --tail=5

step "MetadataRestore into a claim bound to a hostPath volume; the kubelet runs the restore pod"
target="$KUBEDR_TESTENV_DIR/restore-volume"
# Owned by the restore pod's user: hostPath and local volumes ignore the pod's fsGroup.
mkdir -p "$target" && chown 65532:65532 "$target"
cat <<Y | k apply -f -
apiVersion: v1
kind: PersistentVolume
metadata: {name: demo-restore}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: manual
  claimRef: {namespace: $ns, name: restore-target}
  hostPath: {path: $target, type: Directory}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: restore-target, namespace: $ns}
spec: {accessModes: [ReadWriteOnce], storageClassName: manual, resources: {requests: {storage: 1Gi}}}
Y
k -n $ns wait --for=jsonpath='{.status.phase}'=Bound --timeout=60s pvc/restore-target 2>/dev/null \
  || for _ in $(seq 60); do [ "$(k -n $ns get pvc restore-target -o jsonpath='{.status.phase}')" = Bound ] && break; sleep 1; done
MBR_NAME=$(k -n $ns get mbr -o jsonpath='{.items[0].metadata.name}') envsubst < samples/restore.yaml | k apply -f -
ph=""
for _ in $(seq 180); do
  ph=$(k -n $ns get metadatarestore restore-1 -o jsonpath='{.status.restoreStatus}')
  [ "$ph" = Completed ] || [ "$ph" = Failed ] && break
  sleep 1
done
k -n $ns get metadatarestore restore-1 -o jsonpath='{.status}' | pretty
k -n $ns get events --field-selector involvedObject.kind=Pod | grep kubedr-restore || true
k -n $ns get events --field-selector involvedObject.kind=MetadataRestore
ls -l "$target/data"
[ "$ph" = Completed ] || { echo "restore did not complete"; exit 1; }

step "Disaster recovery, as if the cluster were gone: the location's Secret, saved beforehand"
creds="$KUBEDR_TESTENV_DIR/s3-creds.yaml"
(umask 077; k -n $ns get secret s3-creds -o yaml > "$creds")
bucket=$(k -n $ns get backuplocation local-s3 -o jsonpath='{.spec.bucketName}')
echo "kubedr snapshots --url $S3_URL --bucket $bucket --credentials $creds"
bun src/main.ts snapshots --url "$S3_URL" --bucket "$bucket" --credentials "$creds"
step "kubedr restore latest --target $KUBEDR_TESTENV_DIR/restore"
bun src/main.ts restore latest --target "$KUBEDR_TESTENV_DIR/restore" --url "$S3_URL" --bucket "$bucket" --credentials "$creds"
ls -l "$KUBEDR_TESTENV_DIR/restore/data"

if $keep; then
  step "Left running"
  echo "The cluster's addresses exist only inside network namespace $(field netns). Reach it with:"
  echo "  KUBEDR_TESTENV_DIR=$KUBEDR_TESTENV_DIR bun scripts/cluster/node.ts exec kubectl -n $ns get pods"
  echo "  nsenter --net=/run/netns/$(field netns) kubectl --kubeconfig $KUBECONFIG get nodes"
  echo "Stop it with: KUBEDR_TESTENV_DIR=$KUBEDR_TESTENV_DIR bun scripts/cluster/node.ts stop"
fi
