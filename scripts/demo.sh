#!/usr/bin/env bash
# `npm run demo`: a local cluster (etcd on mTLS, kube-apiserver, S3 over HTTPS), the CRDs, the controller, a sample
# Secret + BackupLocation, then a MetadataBackupPolicy for the cluster's own etcd and certificates with an on-demand
# backup; shows what a user sees: status, records, events and metrics. Ends with a disaster-recovery restore from S3
# (kubedr snapshots, kubedr restore latest) that brings back a verified etcd snapshot.
# `npm run demo -- --keep` leaves everything running and prints how to reach it; otherwise it all stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
[ "${1:-}" = "--keep" ] && keep=true
scripts/install-deps.sh
export PATH="$PWD/node_modules/.bin:$PATH"
export KUBEDR_TESTENV_DIR="$PWD/.demo"
ctl_pid=""
cleanup() {
  [ -n "$ctl_pid" ] && kill "$ctl_pid" 2>/dev/null && wait "$ctl_pid" 2>/dev/null
  bun scripts/testenv.ts stop
}
$keep || trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
k() { kubectl "$@" 2> >(grep -v 'version difference' >&2); }

step "Starting the local cluster (first run builds kube-apiserver: about 10 minutes)"
bun scripts/testenv.ts start
eval "$(bun scripts/testenv.ts env)"
state="$KUBEDR_TESTENV_DIR/state.json"
S3_URL=$(bun -e "console.log(require('$state').s3Url)")
k apply -f crds/
k wait --for=condition=Established --timeout=60s crd --all >/dev/null
k create namespace kubedr-system

step "Starting the controller (logs: $KUBEDR_TESTENV_DIR/controller.log)"
bun src/main.ts controller --http-port 0 --http-address 127.0.0.1 > "$KUBEDR_TESTENV_DIR/controller.log" 2>&1 &
ctl_pid=$!
port=""
for _ in $(seq 100); do
  port=$(grep -o '"msg":"serving metrics and health".*"address":"[^"]*"' "$KUBEDR_TESTENV_DIR/controller.log" | grep -o '[0-9]*"$' | tr -d '"' || true)
  [ -n "$port" ] && break
  sleep 0.2
done
[ -n "$port" ] || { cat "$KUBEDR_TESTENV_DIR/controller.log"; exit 1; }
echo "metrics and health on http://127.0.0.1:$port"

step "Applying samples/s3-credentials-secret.yaml (plus the test CA as ca.crt) and samples/backup-location.yaml"
# The local S3 endpoint accepts S3RVER/S3RVER; the repository password is made up for this demo.
S3_ACCESS_KEY=S3RVER S3_SECRET_KEY=S3RVER RESTIC_REPO_PASSWORD="demo-$(date +%s)" \
  envsubst < samples/s3-credentials-secret.yaml | k apply -f -
k -n kubedr-system patch secret s3-creds --type merge -p "{\"data\":{\"ca.crt\":\"$(base64 -w0 "$KUBEDR_TESTENV_DIR/pki/ca.crt")\"}}"
S3_URL=$S3_URL envsubst < samples/backup-location.yaml | k apply -f -

step "Waiting for the repository to be initialised"
k -n kubedr-system wait --for=condition=Ready --timeout=120s backuplocation/local-s3

step "kubectl get backuplocations"
k -n kubedr-system get backuplocations -o wide
step "status"
k -n kubedr-system get backuplocation local-s3 -o jsonpath='{.status}' | bun -e 'console.log(JSON.stringify(JSON.parse(await Bun.stdin.text()), null, 2))'
step "events"
k -n kubedr-system get events --field-selector involvedObject.kind=BackupLocation
step "metrics (curl http://127.0.0.1:$port/metrics | grep kubedr_backup_location)"
curl -s "http://127.0.0.1:$port/metrics" | grep '^kubedr_backup_location'

step "Backing up the local cluster's own etcd: etcd-creds Secret and samples/backup-policy.yaml"
pki="$KUBEDR_TESTENV_DIR/pki"
etcd=$(bun -e "console.log(require('$state').etcdEndpoint)")
k -n kubedr-system create secret generic etcd-creds --from-file=ca.crt="$pki/etcd/ca.crt" \
  --from-file=client.crt="$pki/etcd/healthcheck-client.crt" --from-file=client.key="$pki/etcd/healthcheck-client.key"
# The sample as users write it, pointed at this cluster's etcd and certificate directory.
sed -e "s#https://127.0.0.1:2379#$etcd#" -e "s#/etc/kubernetes/pki#$pki#" samples/backup-policy.yaml | k apply -f -

step "On-demand backup: kubectl annotate mbp test-backup kubedr.catalogicsoftware.com/backup-now=\"\$(date +%s)\""
k -n kubedr-system annotate mbp test-backup --overwrite kubedr.catalogicsoftware.com/backup-now="$(date +%s)"
for _ in $(seq 120); do
  st=$(k -n kubedr-system get mbp test-backup -o jsonpath='{.status.backupStatus}')
  [ "$st" = Completed ] || [ "$st" = Failed ] && break
  sleep 0.5
done

step "kubectl get metadatabackuppolicies,metadatabackuprecords"
k -n kubedr-system get metadatabackuppolicies,metadatabackuprecords
step "policy status"
k -n kubedr-system get mbp test-backup -o jsonpath='{.status}' | bun -e 'console.log(JSON.stringify(JSON.parse(await Bun.stdin.text()), null, 2))'
step "events"
k -n kubedr-system get events --field-selector involvedObject.kind=MetadataBackupPolicy
step "metrics (grep policyName=\"test-backup\")"
curl -s "http://127.0.0.1:$port/metrics" | grep 'policyName="test-backup"' | grep -v '_bucket'
[ "$st" = Completed ] || { echo "backup did not complete"; exit 1; }

step "Disaster recovery, as if the cluster were gone: the location's Secret, saved beforehand"
creds="$KUBEDR_TESTENV_DIR/s3-creds.yaml"
(umask 077; k -n kubedr-system get secret s3-creds -o yaml > "$creds")
bucket=$(k -n kubedr-system get backuplocation local-s3 -o jsonpath='{.spec.bucketName}')
echo "kubedr snapshots --url $S3_URL --bucket $bucket --credentials $creds"
bun src/main.ts snapshots --url "$S3_URL" --bucket "$bucket" --credentials "$creds"
step "kubedr restore latest --target $KUBEDR_TESTENV_DIR/restore"
bun src/main.ts restore latest --target "$KUBEDR_TESTENV_DIR/restore" --url "$S3_URL" --bucket "$bucket" --credentials "$creds"
ls -l "$KUBEDR_TESTENV_DIR/restore/data"

if $keep; then
  step "Left running"
  echo "export KUBECONFIG=$KUBECONFIG"
  echo "controller pid $ctl_pid; stop everything with: kill $ctl_pid; KUBEDR_TESTENV_DIR=$KUBEDR_TESTENV_DIR bun scripts/testenv.ts stop"
fi
