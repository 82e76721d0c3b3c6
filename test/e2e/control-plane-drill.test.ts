/**
 * The disaster drill on a real control plane. A second real node (its own network namespace, etcd, API server,
 * kubelet, ... started by scripts/cluster/node.ts next to the suite's) runs etcd and kube-apiserver as kubeadm does, as
 * static pods of its kubelet, and the chart-installed controller, which backs up that node's own etcd and certificates.
 * Then the control plane is lost: kube-apiserver and etcd stop and etcd's data is deleted. With the command line alone
 * (`kubedr snapshots`, `kubedr restore`, `kubedr etcd-restore --kubeadm`) a new etcd data directory is built from S3 and
 * etcd's manifest repointed at it; the kubelet starts etcd on it, the API server's manifest goes back, the other
 * components restart as a kubeadm runbook says, and the node and the controller pod come back: the cluster holds what
 * existed at backup time, nothing written later, and the controller carries on from what the snapshot holds.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import pkg from '../../package.json' with { type: 'json' };
import type { KubeEvent, MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, type TestEnv, importImage, loadEnv } from '../../scripts/cluster/node.ts';
import { cluster, eventually, kubedrImage, repoRoot, type Run } from '../support/e2e.ts';
import { render } from '../support/helm.ts';

const NS = 'kubedr-system';
/**
 * This node runs Debian 12's etcd 3.4, as older clusters do (the suite's node and the HA drill run 3.5), and is
 * restored with etcdutl 3.5, which reads 3.4 snapshots and moves the revision ahead for the clients that come back.
 */
const ETCD_34 = '/usr/bin/etcd';
let drill: TestEnv;
let drillDir: string;
let work: string;
let credentials: string;
let before: string[];
let restoredSnapshot: string;
const password = `drill-pw-${crypto.randomUUID()}`;

const spawn = (cmd: string[], input?: string, env: Record<string, string> = {}): Run => {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { input, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  const stderr = (r.stderr ?? '').split('\n').filter((l) => !l.includes('version difference')).join('\n').trim();
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr };
};
/** scripts/cluster/node.ts for the drill's node. */
const nodeCli = (args: string[]) => spawn([process.execPath, join(repoRoot, 'scripts/cluster/node.ts'), ...args], undefined,
  { KUBEDR_TESTENV_DIR: drillDir, KUBEDR_NODE_NAME: 'drill', KUBEDR_ETCD: ETCD_34, KUBEDR_CONTROL_PLANE: 'static-pods' });
/** A command inside the drill node's network namespace, where its addresses exist. */
const inDrill = (cmd: string[], input?: string, env: Record<string, string> = {}) =>
  spawn(['nsenter', `--net=/run/netns/${drill.netns}`, ...cmd], input, env);
const kc = (args: string[], input?: string) => inDrill(['kubectl', '--kubeconfig', drill.kubeconfig, ...args], input);
function kcJson<T>(args: string[]): T {
  const r = kc(['get', ...args, '-o', 'json']);
  if (r.code !== 0) throw new Error(`kubectl get ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
/** The kubedr command line as an operator runs it on the node: only PATH and the given variables in its environment. */
const kubedr = (args: string[]) => {
  const r = spawnSync('nsenter', [`--net=/run/netns/${drill.netns}`, process.execPath, join(repoRoot, 'src/main.ts'), ...args],
    { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
};
const policy = () => kcJson<MetadataBackupPolicy>(['mbp', 'node', '-n', NS]);
const recordNames = () => kcJson<{ items: MetadataBackupRecord[] }>(['mbr', '-n', NS]).items.map((r) => r.metadata.name).sort();
const b64 = (f: string) => readFileSync(join(drill.pki, f)).toString('base64');

async function backupNow(value: string): Promise<MetadataBackupPolicy> {
  expect(kc(['annotate', 'mbp', 'node', '-n', NS, '--overwrite', `kubedr.catalogicsoftware.com/backup-now=${value}`]).code).toBe(0);
  return eventually(() => {
    const p = policy();
    if (p.status?.backupNowServed !== value || p.status.backupStatus === 'Running') throw new Error(JSON.stringify(p.status));
    return p;
  }, 90_000);
}

beforeAll(async () => {
  drillDir = `${cluster().dir}-drill`;
  work = mkdtempSync(join(tmpdir(), 'cp-drill-'));
  const archive = join(repoRoot, 'dist/kubedr-image.tar');
  kubedrImage();
  const up = nodeCli(['start']);
  if (up.code !== 0) throw new Error(`drill node did not start: ${up.stderr}`);
  drill = loadEnv(drillDir);
  importImage(drill, archive);

  const values = join(work, 'values.yaml');
  writeFileSync(values, dump({
    image: { repository: 'localhost/kubedr', tag: pkg.version, pullPolicy: 'Never' },
    certsHostPaths: [drill.pki],
    monitoring: { serviceMonitor: { enabled: false }, prometheusRule: { enabled: false }, dashboard: { enabled: false } },
  }));
  expect(kc(['create', 'namespace', NS]).code).toBe(0);
  const install = kc(['apply', '-f', '-'], render(['--name', 'kubedr', '--namespace', NS, '--include-crds', '-f', values]).manifest);
  if (install.code !== 0) throw new Error(install.stderr);
  expect(kc(['rollout', 'status', 'deployment/kubedr', '-n', NS, '--timeout=180s']).code).toBe(0);

  const secret = (name: string, data: Record<string, string>) => kc(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: NS }, data }));
  expect(secret('s3-creds', {
    access_key: Buffer.from(S3_ACCESS_KEY).toString('base64'), secret_key: Buffer.from(S3_SECRET_KEY).toString('base64'),
    restic_repo_password: Buffer.from(password).toString('base64'), 'ca.crt': b64('ca.crt'),
  }).code).toBe(0);
  expect(secret('etcd-creds', { 'ca.crt': b64('etcd/ca.crt'), 'client.crt': b64('etcd/healthcheck-client.crt'), 'client.key': b64('etcd/healthcheck-client.key') }).code).toBe(0);
  expect(kc(['apply', '-f', '-'], `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: BackupLocation
metadata: { name: s3, namespace: ${NS} }
spec: { url: "${drill.s3Url}", bucketName: drill, credentials: s3-creds }
---
apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupPolicy
metadata: { name: node, namespace: ${NS} }
spec: { destination: s3, certsDir: "${drill.pki}", etcdEndpoint: "https://127.0.0.1:2379", etcdCreds: etcd-creds, schedule: "0 0 1 1 *" }
`).code).toBe(0);
  await eventually(() => expect(kcJson<{ status?: { initStatus?: string } }>(['bl', 's3', '-n', NS]).status?.initStatus).toBe('Completed'), 90_000);

  // Objects at backup time, and a first backup whose record the restored cluster must hold.
  expect(kc(['create', 'namespace', 'before-backup']).code).toBe(0);
  expect(kc(['create', 'configmap', 'keep-me', '-n', 'before-backup', '--from-literal=answer=42']).code).toBe(0);
  expect((await backupNow('first')).status?.backupStatus).toBe('Completed');
  before = recordNames();
  // The backup that will be restored: its etcd snapshot is taken while this backup runs.
  const restoredBackup = await backupNow('restored');
  expect(restoredBackup.status?.backupStatus).toBe('Completed');
  restoredSnapshot = restoredBackup.status!.snapshotId!;
  // The operator kept the location's Secret, as `kubectl get secret -o yaml` saves it.
  credentials = join(work, 's3-creds.yaml');
  writeFileSync(credentials, kc(['get', 'secret', 's3-creds', '-n', NS, '-o', 'yaml']).stdout, { mode: 0o600 });
  // Written after the backup: must not come back.
  expect(kc(['create', 'namespace', 'after-backup']).code).toBe(0);
  expect(kc(['create', 'configmap', 'too-late', '-n', 'before-backup']).code).toBe(0);
}, 420_000);

afterAll(() => {
  // KUBEDR_KEEP_NODE=1 (as for with-node.sh) keeps the drill's node to look at: nsenter --net=/run/netns/kdr-drill …
  if (drillDir && process.env.KUBEDR_KEEP_NODE !== '1') nodeCli(['stop']);
  rmSync(work, { recursive: true, force: true });
});

describe('the control plane is lost and rebuilt from S3 with the command line', () => {
  const restored = () => join(work, 'restored');
  /** kubeadm's /etc/kubernetes/manifests on the drill's node: its kubelet runs every file there. */
  const manifest = (file = 'etcd.yaml') => join(drill.dir, 'manifests', file);
  const etcdStatus = () => JSON.parse(inDrill(['etcdctl', '--endpoints', drill.etcdEndpoint, '--cacert', join(drill.pki, 'etcd/ca.crt'),
    '--cert', join(drill.pki, 'etcd/healthcheck-client.crt'), '--key', join(drill.pki, 'etcd/healthcheck-client.key'),
    'endpoint', 'status', '-w', 'json']).stdout) as { Status: { version: string; header: { revision: number } } }[];

  test('etcd and the API server stop and etcd\'s data is deleted: the cluster does not answer', () => {
    // The runbook's first step (kubedr moves the API server's manifest aside), then etcd's manifest leaves too.
    expect(kubedr(['etcd-restore', '--stop-apiserver', '--etcd-manifest', manifest()]).code).toBe(0);
    expect(existsSync(manifest('kube-apiserver.yaml'))).toBe(false);
    expect(nodeCli(['stop-control-plane']).code).toBe(0);
    rmSync(join(drill.dir, 'etcd-data'), { recursive: true, force: true });
    expect(kc(['get', 'namespaces', '--request-timeout=3s']).code).not.toBe(0);
    // etcd's disk is replaced: its manifest goes back and the kubelet starts it on an empty data directory.
    renameSync(join(drill.dir, 'manifests-aside/etcd.yaml'), manifest());
  });

  test('kubedr restore brings back the latest backup of the policy, verified', () => {
    const at = ['--url', drill.s3Url, '--bucket', 'drill', '--credentials', credentials];
    const list = kubedr(['snapshots', ...at, '--json', '--no-size']);
    expect(list.code).toBe(0);
    expect((JSON.parse(list.stdout) as { policy: string }[]).map((s) => s.policy)).toEqual(['node', 'node']);
    const r = kubedr(['restore', 'latest', '--policy', 'node', '--target', restored(), ...at]);
    expect(r.stderr).not.toContain('failed');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("matches the snapshot's own trailer; restic checked every piece it read");
  });

  test('kubedr etcd-restore --kubeadm builds a new data directory, repoints etcd\'s manifest, and the kubelet runs etcd on it', async () => {
    const r = kubedr(['etcd-restore', '--snapshot', join(restored(), 'data/etcd-snapshot.db'), '--etcd-manifest', manifest(), '--kubeadm']);
    expect(r.stderr).not.toContain('failed');
    expect(r.code).toBe(0);
    const dataDir = readdirSync(drill.dir).find((f) => f.startsWith('etcd-data-restored-'));
    expect(dataDir).toBeDefined();
    expect(existsSync(join(drill.dir, dataDir!, 'member/snap/db'))).toBe(true);
    expect(readFileSync(manifest(), 'utf8')).toContain(join(drill.dir, dataDir!));
    // The kubelet read the edited manifest and restarted etcd on the restored data: its revision moved a billion ahead.
    await eventually(() => expect(etcdStatus()[0]!.Status.header.revision).toBeGreaterThan(1_000_000_000), 90_000, 1000);
  }, 120_000);

  test('after it, a restore without --kubeadm defaults to where etcd now reads (the repointed etcd-data hostPath), and refuses it while it holds data', () => {
    const hostPath = join(drill.dir, readdirSync(drill.dir).find((f) => f.startsWith('etcd-data-restored-'))!);
    const containerDir = /--data-dir=(\S+)/.exec(readFileSync(manifest(), 'utf8'))?.[1];
    expect(containerDir).toBeDefined();
    expect(containerDir).not.toBe(hostPath);
    const r = kubedr(['etcd-restore', '--snapshot', join(restored(), 'data/etcd-snapshot.db'), '--etcd-manifest', manifest()]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${hostPath} is not empty`);
    // The member etcd runs on is untouched.
    expect(existsSync(join(hostPath, 'member/snap/db'))).toBe(true);
    expect(etcdStatus()[0]!.Status.header.revision).toBeGreaterThan(1_000_000_000);
  });

  test('the API server\'s manifest goes back, the node is Ready again, and the cluster holds exactly what it held at backup time', async () => {
    expect(kubedr(['etcd-restore', '--start-apiserver', '--etcd-manifest', manifest()]).code).toBe(0);
    const up = nodeCli(['start-control-plane']);
    expect(up.stderr).not.toContain('not ready');
    expect(up.code).toBe(0);
    expect(kc(['get', 'configmap', 'keep-me', '-n', 'before-backup', '-o', 'jsonpath={.data.answer}']).stdout).toBe('42');
    expect(kc(['get', 'namespace', 'after-backup']).stderr).toContain('NotFound');
    expect(kc(['get', 'configmap', 'too-late', '-n', 'before-backup']).stderr).toContain('NotFound');
    // The restored Node carries its backup-time status; the kubelet reports anew within its status period (a CI run,
    // with other nodes loading the machine, read False just after the start): a person waits for Ready, as here.
    await eventually(() => expect(kc(['get', 'node', drill.node, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']).stdout).toBe('True'),
      90_000, 1000);
    // etcd and the API server are the kubelet's static pods, as on kubeadm: it shows them as mirror pods again once
    // the API server answers (the restored etcd may hold them from backup time, or not).
    await eventually(() => expect(kc(['get', 'pods', '-n', 'kube-system', '-o', 'jsonpath={.items[*].metadata.name}']).stdout.split(' '))
      .toEqual(expect.arrayContaining([`etcd-${drill.node}`, `kube-apiserver-${drill.node}`])), 90_000, 1000);
    const status = etcdStatus();
    expect(status[0]!.Status.version).toStartWith('3.4.');
    expect(status[0]!.Status.header.revision).toBeGreaterThan(1_000_000_000);
  }, 240_000);

  test('the controller pod comes back, adopts the backup the snapshot was taken during, and carries on', async () => {
    await eventually(() => expect(kc(['rollout', 'status', 'deployment/kubedr', '-n', NS, '--timeout=5s']).code).toBe(0), 180_000, 2000);
    // The etcd snapshot was taken while the second backup ran: the restored policy says Running and that backup's
    // record was never in etcd. Its snapshot is in the repository, so the controller adopts it and reports it done.
    const p = await eventually(() => {
      const x = policy();
      if (x.status?.backupStatus !== 'Completed') throw new Error(JSON.stringify(x.status));
      return x;
    }, 180_000, 1000);
    expect(p.status?.snapshotId).toBe(restoredSnapshot);
    expect(recordNames()).toEqual([...before, `mbr-${restoredSnapshot}`].sort());
    const events = kcJson<{ items: KubeEvent[] }>(['events', '-n', NS]).items
      .filter((e) => e.involvedObject.name === 'node');
    expect(events.map((e) => e.reason)).toContain('BackupAdopted');
    // Adopted, it is verified like the others, and that verification reads its facts from the snapshot (an adopted
    // record has none of its own backup): SHA-256, size, revision, the certificates and their expiry.
    const adopted = await eventually(() => {
      const r = kcJson<MetadataBackupRecord>(['mbr', `mbr-${restoredSnapshot}`, '-n', NS]);
      if (!r.status?.verification) throw new Error(JSON.stringify(r.status));
      return r;
    }, 180_000, 2000);
    expect(adopted.status?.verification).toMatchObject({ result: 'Succeeded' });
    expect(adopted.status?.etcdSnapshotSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(adopted.status?.etcdSnapshotSize).toBeGreaterThan(0);
    expect(adopted.status?.etcdRevision).toBe(adopted.status?.verification?.revision);
    expect(adopted.status?.certificates?.length).toBeGreaterThan(0);
    expect(Date.parse(adopted.status?.earliestCertificateExpiry ?? '')).toBeGreaterThan(Date.now());
    await eventually(() => expect(kcJson<{ status?: { initStatus?: string } }>(['bl', 's3', '-n', NS]).status?.initStatus).toBe('Completed'), 60_000);
    const next = await backupNow('after-restore');
    expect(next.status?.backupStatus).toBe('Completed');
    expect(recordNames()).toEqual([...before, `mbr-${restoredSnapshot}`, next.status!.mbrName!].sort());
  }, 400_000);
});
