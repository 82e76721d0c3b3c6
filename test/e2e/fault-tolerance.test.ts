/**
 * Never lose track of a backup, whatever fails around the controller (a real controller process on the test node):
 * the API server restarted in the middle of a backup, locks left by a restic killed on another host or this one, a location
 * deleted before its records, a namespace deleted with its records, and a policy name of 253 characters.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { hostname } from 'node:os';
import { restartApiserver, startExtraEtcd, stopExtra } from '../../scripts/cluster/node.ts';
import { BACKUP_NOW_ANNOTATION, POLICY_LABEL } from '../../src/api/group.ts';
import type { MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import {
  ControllerProcess, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, events, eventually,
  fillEtcd, getJson, kubectl, leaseOutlastingRestarts, locationSecretYaml, locationYaml, metricValue, policyYaml, resticAt, uniqueBucket, locationInit, withRestart,
} from '../support/e2e.ts';
import { frozenPrune } from '../support/locks.ts';

let ns: string;
let controller: ControllerProcess;
const password = `ft-pw-${crypto.randomUUID()}`;
const bucket = uniqueBucket('ft');
let bigEtcd: string;

const policy = (name: string) => getJson<MetadataBackupPolicy>(['mbp', name, '-n', ns]);
const records = (policyName: string) => getJson<{ items: MetadataBackupRecord[] }>(['mbr', '-n', ns]).items
  .filter((r) => r.spec.policy === policyName);
const snapshotsOf = (b: string, tag: string) =>
  (JSON.parse(resticAt(b, password, ['snapshots', '--json', '--no-lock', '--tag', tag]).stdout) as { short_id: string }[]).map((s) => s.short_id);

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('ft');
  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  bigEtcd = await startExtraEtcd(cluster(), 'etcd-ft-big');
  fillEtcd(bigEtcd, 120);
  // A lease long enough to ride out the API restart below: this test is about the backup, not the failover. With the
  // API server as a static pod the restart usually takes the kubelet's file check (20 s) on each side of the 9 s
  // down, but a CI run saw it pass the 120 s renew deadline this had: the controller stepped down and exited, and
  // every test after it waited for a controller that was gone.
  controller = await ControllerProcess.start(ns, [...leaseOutlastingRestarts(), '--lock-wait', '10s']);
  await locationInit(ns, 'loc', 'Completed');
}, 180_000);

afterAll(async () => {
  await controller?.stop();
  await stopExtra(cluster(), 'etcd-ft-big');
  deleteNamespace(ns);
});

describe('the API server restarted in the middle of a backup (down 9 s)', () => {
  test('the snapshot gets its record and the policy ends Completed; nothing stays Running; counts add up', async () => {
    apply(policyYaml(ns, 'api-restart', { etcdEndpoint: bigEtcd }));
    expect(kubectl(['annotate', 'mbp', 'api-restart', '-n', ns, '--overwrite', `${BACKUP_NOW_ANNOTATION}=restart`]).code).toBe(0);
    await eventually(() => expect(['Snapshot', 'Upload']).toContain(policy('api-restart').status?.progress?.phase ?? ''), 30_000, 100);
    await restartApiserver(cluster(), 9_000);
    const p = await eventually(() => {
      const x = policy('api-restart');
      if (x.status?.backupStatus !== 'Completed') throw new Error(JSON.stringify(x.status));
      return x;
    }, 120_000, 500);
    const snaps = snapshotsOf(bucket, 'api-restart');
    expect(snaps).toHaveLength(1);
    expect(p.status?.snapshotId).toBe(snaps[0]!);
    await eventually(() => expect(records('api-restart').map((r) => r.spec.snapshotId)).toEqual(snaps));
    const m = await controller.metrics();
    const n = (name: string) => metricValue(m, name, { policyName: 'api-restart' }) ?? -1;
    // Why, when it does not add up (a CI run once counted 2): the controller's warnings say which writes failed.
    if (n('kubedr_num_backups') !== 1) console.log(controller.logLines().filter((l) => l.level !== 'debug' && l.level !== 'info').map((l) => JSON.stringify(l)).join('\n'));
    expect(n('kubedr_num_backups')).toBe(1);
    expect(n('kubedr_num_successful_backups') + n('kubedr_num_failed_backups')).toBe(1);
    expect(p.status?.conditions?.find((c) => c.type === 'LastBackupSucceeded')?.status).toBe('True');
  }, withRestart(200_000));
});

describe('locks', () => {
  /** A restic prune started with `hostName` as its host, killed while it holds the repository's exclusive lock. */
  const killedPrune = async (hostName: string) => (await frozenPrune(bucket, password, hostName)).kill();

  test('the exclusive lock of a writer on another host is never removed: the backup waits (--lock-wait), then fails naming it', async () => {
    apply(policyYaml(ns, 'locked'));
    // Another host's prune: a crashed one, or a live one of another cluster sharing the bucket; nobody here can tell.
    await killedPrune('other-node');
    const lockIds = resticAt(bucket, password, ['list', 'locks', '--no-lock']).stdout.trim();
    const started = Date.now();
    // While it waits, its status says for what (kubectl get, kubedr status and kubedr backup show it).
    const waiting = eventually(() => expect(policy('locked').status?.progress?.waitingFor ?? '').toMatch(/^repository is locked by PID \d+ on other-node/), 60_000, 200);
    const p = await backupNow(ns, 'locked', 90_000);
    await waiting;
    expect(p.status?.backupStatus).toBe('Failed');
    expect(p.status?.backupErrorMessage).toMatch(/repository is locked by PID \d+ on other-node since \d{4}-\d\d-\d\d [\d:]+ \(exclusive\); waited \d+ s/);
    // Waited about --lock-wait (10 s here), not the 15 minutes restic 0.18 would retry, and not a moment.
    expect(Date.now() - started).toBeGreaterThan(8_000);
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(resticAt(bucket, password, ['list', 'locks', '--no-lock']).stdout.trim()).toBe(lockIds);
    // The person who knows that writer is gone removes its lock, as the message and the docs say; backups go on.
    expect(resticAt(bucket, password, ['unlock', '--remove-all']).code).toBe(0);
    expect((await backupNow(ns, 'locked', 60_000)).status?.backupStatus).toBe('Completed');
  }, 200_000);

  test('the lock of a restic that died on this host is stale by restic\'s own rule: removed, and the backup goes on at once', async () => {
    await killedPrune(hostname());
    const started = Date.now();
    const p = await backupNow(ns, 'locked', 60_000);
    expect(p.status?.backupErrorMessage).toBe('');
    expect(p.status?.backupStatus).toBe('Completed');
    expect(Date.now() - started).toBeLessThan(30_000);
  }, 120_000);
});

describe('credentials refused by S3 while the location shows Ready', () => {
  test('the backup fails at once with the server\'s words, the location goes not ready, and other policies are not held up', async () => {
    apply(locationSecretYaml(ns, { name: 'revocable', password }));
    apply(locationYaml(ns, 'revocable', { bucketName: uniqueBucket('ft-revoked'), credentials: 'revocable' }));
    await locationInit(ns, 'revocable', 'Completed');
    apply(policyYaml(ns, 'revoked-1', { destination: 'revocable' }));
    apply(policyYaml(ns, 'revoked-2', { destination: 'revocable' }));
    apply(policyYaml(ns, 'elsewhere'));
    expect((await backupNow(ns, 'revoked-1')).status?.backupStatus).toBe('Completed');
    // The keys change (rotated, or revoked and replaced by a wrong pair): restic 0.18 alone retries a refusal for minutes.
    apply(locationSecretYaml(ns, { name: 'revocable', password, accessKey: 'REVOKED-KEY' }));
    const started = Date.now();
    const one = await backupNow(ns, 'revoked-1', 60_000);
    expect(one.status?.backupStatus).toBe('Failed');
    expect(one.status?.backupErrorMessage).toMatch(/refused the credentials|not ready/);
    expect(Date.now() - started).toBeLessThan(30_000);
    await eventually(() => {
      const loc = getJson<{ status?: { initStatus?: string; initErrorMessage?: string } }>(['bl', 'revocable', '-n', ns]);
      expect(loc.status?.initStatus).toBe('Failed');
      expect(loc.status?.initErrorMessage).toContain('S3 endpoint refused the credentials');
    }, 30_000);
    // The other policies: one at the same location fails at once, naming the location; one elsewhere is not held up.
    const two = await backupNow(ns, 'revoked-2', 30_000);
    expect(two.status?.backupErrorMessage).toContain('BackupLocation "revocable" is not ready');
    expect((await backupNow(ns, 'elsewhere', 60_000)).status?.backupStatus).toBe('Completed');
    expect(Date.now() - started).toBeLessThan(90_000);
    const text = JSON.stringify([getJson(['bl', 'revocable', '-n', ns]), getJson(['mbp', '-n', ns]), events(ns)]);
    expect(text).not.toContain(password);
  }, 240_000);
});

describe('one backup slot (--max-concurrent-backups=1)', () => {
  test('a backup waiting for the slot says which backup holds it, then runs', async () => {
    apply(policyYaml(ns, 'slot-holder', { etcdEndpoint: bigEtcd }));
    apply(policyYaml(ns, 'slot-waiter'));
    await eventually(() => expect(policy('slot-waiter').status?.conditions?.some((c) => c.type === 'Ready')).toBe(true));
    expect(kubectl(['annotate', 'mbp', 'slot-holder', '-n', ns, '--overwrite', `${BACKUP_NOW_ANNOTATION}=slot`]).code).toBe(0);
    await eventually(() => expect(['Snapshot', 'Upload']).toContain(policy('slot-holder').status?.progress?.phase ?? ''), 30_000, 100);
    expect(kubectl(['annotate', 'mbp', 'slot-waiter', '-n', ns, '--overwrite', `${BACKUP_NOW_ANNOTATION}=slot`]).code).toBe(0);
    await eventually(() => expect(policy('slot-waiter').status?.progress?.waitingFor ?? '')
      .toMatch(new RegExp(`^a backup slot \\(--max-concurrent-backups=1\\), held by ${ns}/slot-holder \\(running \\d+ s\\)$`)), 30_000, 100);
    await eventually(() => expect(policy('slot-waiter').status?.backupStatus).toBe('Completed'), 120_000);
    expect(policy('slot-holder').status?.backupStatus).toBe('Completed');
  }, 180_000);
});

describe('deletion never wedges', () => {
  test('a location deleted before its records: deleting a record releases it at once, saying the snapshot stays', async () => {
    const gone = uniqueBucket('ft-gone');
    apply(locationYaml(ns, 'doomed', { bucketName: gone, credentials: 's3-creds' }));
    await locationInit(ns, 'doomed', 'Completed');
    apply(policyYaml(ns, 'to-doomed', { destination: 'doomed' }));
    const p = await backupNow(ns, 'to-doomed');
    expect(p.status?.backupStatus).toBe('Completed');
    expect(kubectl(['delete', 'mbp', 'to-doomed', '-n', ns]).code).toBe(0);
    expect(kubectl(['delete', 'bl', 'doomed', '-n', ns]).code).toBe(0);
    const del = kubectl(['delete', 'mbr', p.status!.mbrName!, '-n', ns, '--timeout=30s']);
    expect(del.stderr).toBe('');
    expect(del.code).toBe(0);
    const kept = events(ns, p.status!.mbrName!).find((e) => e.reason === 'SnapshotKept');
    expect(kept?.type).toBe('Warning');
    expect(kept?.message).toContain(`forget ${p.status!.snapshotId} --prune`);
    expect(snapshotsOf(gone, 'to-doomed')).toEqual([p.status!.snapshotId!]);
  });

  test('a namespace deleted with its location, policies and records goes away; nothing stays Terminating', async () => {
    const other = createNamespace('ft-ns');
    apply(locationSecretYaml(other, { name: 's3-creds', password }));
    apply(etcdSecretYaml(other, 'etcd-creds'));
    apply(locationYaml(other, 'loc', { bucketName: uniqueBucket('ft-ns'), credentials: 's3-creds' }));
    apply(policyYaml(other, 'pol'));
    const c = await ControllerProcess.start(other);
    try {
      await locationInit(other, 'loc', 'Completed');
      expect((await backupNow(other, 'pol')).status?.backupStatus).toBe('Completed');
      expect((await backupNow(other, 'pol')).status?.backupStatus).toBe('Completed');
      expect(kubectl(['delete', 'namespace', other, '--wait=false']).code).toBe(0);
      await eventually(() => expect(kubectl(['get', 'namespace', other]).stderr).toContain('NotFound'), 90_000, 1000);
    } finally {
      await c.stop();
    }
  }, 150_000);
});

test('a policy name of 253 characters works end to end: snapshot, record, label', async () => {
  const name = `p${'-long'.repeat(50)}`.padEnd(253, 'x');
  expect(name.length).toBe(253);
  apply(policyYaml(ns, name));
  const p = await backupNow(ns, name);
  expect(p.status?.backupErrorMessage).toBe('');
  expect(p.status?.backupStatus).toBe('Completed');
  const r = getJson<MetadataBackupRecord>(['mbr', p.status!.mbrName!, '-n', ns]);
  expect(r.spec.policy).toBe(name);
  expect(r.metadata.labels?.[POLICY_LABEL]?.length).toBeLessThanOrEqual(63);
});
