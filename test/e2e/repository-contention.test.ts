/**
 * Long repository work meeting other work, on the real node (issue "safety" §4): the controller's own restic runs are
 * caught at their slowest point and frozen (SIGSTOP, as a stalled S3 would hold them) while they hold their lock.
 * - A prune of one location in progress: that location's next backup says `Queued`, waiting for the prune, without
 *   taking the backup slot, and another location's backup completes meanwhile (before: it held the slot, so every
 *   other backup waited for the prune).
 * - A verification reading a backup under its shared lock: retention's forget and the prune after it wait for it, and
 *   the verification succeeds (before: read with --no-lock, a prune could repack the packs under it: a false failure).
 * - A prune that ends while the API server is away: its status cannot be written, which is no failed prune (before: a
 *   PruneFailed), and it is not run again at once; the next prune writes its outcome.
 * - A controller stopped (SIGTERM) while a verification reads: it waits for it up to its shutdown time, then stops it
 *   and exits; started again, it verifies that backup (before: it stayed unverified), and the killed reader's lock
 *   does not hold up the next forget and prune.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { restartApiserver } from '../../scripts/cluster/node.ts';
import { PRUNE_FAILED } from '../../src/api/events.ts';
import { BACKUP_NOW_ANNOTATION } from '../../src/api/group.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import { isAlive } from '../../src/util/process.ts';
import {
  ControllerProcess, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, events, eventually, getJson,
  kubectl, locationInit, locationSecretYaml, locationYaml, metricValue, policyYaml, resticAt, uniqueBucket,
} from '../support/e2e.ts';
import { type FrozenChild, frozenChild } from '../support/locks.ts';

const password = `contention-pw-${crypto.randomUUID()}`;
const buckets = { busy: uniqueBucket('busy'), other: uniqueBucket('other'), read: uniqueBucket('read'), api: uniqueBucket('api'),
  stop: uniqueBucket('stop') };
let ns: string;
let controller: ControllerProcess;
const frozen: FrozenChild[] = [];

const policy = (name: string) => getJson<MetadataBackupPolicy>(['mbp', name, '-n', ns]);
const records = (name: string) => getJson<{ items: MetadataBackupRecord[] }>(['mbr', '-n', ns]).items.filter((r) => r.spec.policy === name);
const snapshotIds = (bucket: string) =>
  (JSON.parse(resticAt(bucket, password, ['snapshots', '--json', '--no-lock']).stdout) as { short_id: string }[]).map((s) => s.short_id).sort();
const logged = (msg: string, location: string) =>
  controller.logLines().filter((l) => l.msg === msg && l.backupLocation === `${ns}/${location}`).length;
const warnings = () => events(ns).filter((e) => e.type === 'Warning').map((e) => `${e.involvedObject.name} ${e.reason}: ${e.message}`);

/** Asks for a backup without waiting for it; returns the value its status will say it served. */
function askBackup(name: string): string {
  const value = `contention-${crypto.randomUUID().slice(0, 8)}`;
  const r = kubectl(['annotate', 'mbp', name, '-n', ns, '--overwrite', `${BACKUP_NOW_ANNOTATION}=${value}`]);
  if (r.code !== 0) throw new Error(r.stderr);
  return value;
}

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('contention');
  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  for (const [name, bucket] of Object.entries(buckets)) apply(locationYaml(ns, name, { bucketName: bucket, credentials: 's3-creds' }));
  apply(policyYaml(ns, 'pb', { destination: 'busy', retainNumBackups: 1, verification: { mode: 'Never' } }));
  apply(policyYaml(ns, 'po', { destination: 'other', verification: { mode: 'Never' } }));
  apply(policyYaml(ns, 'pv', { destination: 'read', retainNumBackups: 2 }));
  // A prune as soon as one snapshot is forgotten; one backup at a time (the default, said for the reader).
  controller = await ControllerProcess.start(ns, ['--prune-after-forgets', '1', '--max-concurrent-backups', '1']);
  for (const name of Object.keys(buckets)) await locationInit(ns, name);
}, 120_000);

afterAll(async () => {
  for (const f of frozen) f.thaw();
  await controller?.stop();
  if (ns) deleteNamespace(ns);
});

test('a prune in progress: its location\'s next backup waits Queued for it, outside the backup slot; another location\'s backup completes meanwhile', async () => {
  expect((await backupNow(ns, 'pb', 90_000)).status?.backupStatus).toBe('Completed');
  // The second backup makes retention forget the first, and the prune follows at once: caught holding its exclusive lock.
  const pruning = frozenChild(controller.pid, /restic.*\sprune(\s|$)/, buckets.busy, password, { exclusive: true });
  expect((await backupNow(ns, 'pb', 90_000)).status?.backupStatus).toBe('Completed');
  const prune = await pruning;
  frozen.push(prune);
  expect(logged('pruning repository', 'busy')).toBe(1);

  const served = askBackup('pb');
  const queued = await eventually(() => {
    const p = policy('pb').status?.progress;
    if (p?.phase !== 'Queued' || !p.waitingFor) throw new Error(`not queued: ${JSON.stringify(p)}`);
    return p.waitingFor;
  }, 30_000);
  expect(queued).toContain('a prune of s3:');
  expect(queued).toContain(buckets.busy);

  // The one backup slot is free: the other location's backup runs and completes while the prune still holds its lock.
  const other = await backupNow(ns, 'po', 90_000);
  expect(other.status?.backupStatus).toBe('Completed');
  expect(isAlive(prune.pid)).toBe(true);
  expect(logged('repository pruned', 'busy')).toBe(0);
  expect(policy('pb').status?.progress?.phase).toBe('Queued');

  // The prune goes on: then the queued backup runs, and nothing failed.
  prune.thaw();
  await eventually(() => expect(logged('repository pruned', 'busy')).toBe(1), 60_000);
  const done = await eventually(() => {
    const p = policy('pb');
    if (p.status?.backupNowServed !== served || p.status.backupStatus === 'Running') throw new Error(JSON.stringify(p.status));
    return p;
  }, 90_000);
  expect(done.status?.backupStatus).toBe('Completed');
  // Its retention forgets the one before (one kept): then the records are exactly the repository's one snapshot.
  await eventually(() => {
    const ids = records('pb').map((r) => r.spec.snapshotId);
    expect(ids).toEqual([done.status!.snapshotId!]);
    expect(snapshotIds(buckets.busy)).toEqual(ids);
  }, 60_000);
  expect(warnings()).toEqual([]);
}, 360_000);

test('a verification reading under its shared lock: retention\'s forget and the prune wait for it, and it succeeds', async () => {
  const verified = (mbr: string) => getJson<MetadataBackupRecord>(['mbr', mbr, '-n', ns]).status?.verification;
  const first = await backupNow(ns, 'pv', 90_000);
  await eventually(() => expect(verified(first.status!.mbrName!)?.result).toBe('Succeeded'), 90_000);

  // The second backup's verification, caught reading with its lock.
  const reading = frozenChild(controller.pid, /restic.*\srestore\s/, buckets.read, password);
  const second = await backupNow(ns, 'pv', 90_000);
  const reader = await reading;
  frozen.push(reader);

  // A backup beside the reader (both take shared locks); retention then forgets the first backup and must wait.
  const third = await backupNow(ns, 'pv', 90_000);
  expect(third.status?.backupStatus).toBe('Completed');
  await Bun.sleep(8_000);
  expect(snapshotIds(buckets.read)).toContain(first.status!.snapshotId!);
  expect(logged('repository pruned', 'read')).toBe(0);
  expect(verified(second.status!.mbrName!)).toBeUndefined();

  reader.thaw();
  await eventually(() => expect(verified(second.status!.mbrName!)?.result).toBe('Succeeded'), 90_000);
  await eventually(() => expect(logged('repository pruned', 'read')).toBe(1), 90_000);
  await eventually(() => expect(verified(third.status!.mbrName!)?.result).toBe('Succeeded'), 90_000);
  const kept = [second.status!.snapshotId!, third.status!.snapshotId!].sort();
  expect(snapshotIds(buckets.read)).toEqual(kept);
  await eventually(() => expect(records('pv').map((r) => r.spec.snapshotId).sort()).toEqual(kept), 60_000);
  expect(resticAt(buckets.read, password, ['check']).code).toBe(0);
  expect(warnings()).toEqual([]);
}, 420_000);

test('a prune that ends while the API server is away: no PruneFailed, none counted, not run again at once; the next prune is in status', async () => {
  // Without leader election here: an outage longer than the renew deadline deposes a leader, and a deposed leader
  // stops its prune (a blip shorter than the deadline keeps it; the API server's restart takes longer than that).
  await controller.stop();
  controller = await ControllerProcess.start(ns, ['--prune-after-forgets', '1', '--leader-elect=false']);
  apply(policyYaml(ns, 'pa', { destination: 'api', retainNumBackups: 1, verification: { mode: 'Never' } }));
  expect((await backupNow(ns, 'pa', 90_000)).status?.backupStatus).toBe('Completed');
  const pruning = frozenChild(controller.pid, /restic.*\sprune(\s|$)/, buckets.api, password, { exclusive: true });
  expect((await backupNow(ns, 'pa', 90_000)).status?.backupStatus).toBe('Completed');
  const prune = await pruning;
  frozen.push(prune);

  const restarted = restartApiserver(cluster(), 15_000);
  await eventually(() => expect(kubectl(['get', 'namespace', ns]).code).not.toBe(0), 60_000);
  prune.thaw();
  await eventually(() => expect(logged('repository pruned', 'api')).toBe(1), 15_000);
  await eventually(() => expect(logged('the prune\'s outcome could not be written to status', 'api')).toBeGreaterThanOrEqual(1), 15_000);
  expect(metricValue(await controller.metrics(), 'kubedr_backup_location_prune_failures_total', { location: 'api' })).toBe(0);
  await restarted;

  await eventually(() => expect(kubectl(['get', 'namespace', ns]).code).toBe(0), 60_000);
  await Bun.sleep(5_000);
  expect(logged('pruning repository', 'api')).toBe(1);
  expect(events(ns, 'api').filter((e) => e.reason === PRUNE_FAILED)).toEqual([]);
  expect(metricValue(await controller.metrics(), 'kubedr_backup_location_prune_failures_total', { location: 'api' })).toBe(0);

  // The next forget makes the next prune, whose outcome lands in status.
  expect((await backupNow(ns, 'pa', 90_000)).status?.backupStatus).toBe('Completed');
  const loc = await eventually(() => {
    const l = getJson<BackupLocation>(['bl', 'api', '-n', ns]);
    if (l.status?.lastPruneResult !== 'Succeeded') throw new Error(JSON.stringify(l.status));
    return l;
  }, 90_000);
  expect(loc.status?.lastPruneMessage).toMatch(/^pruned in \d+\.\d s, 1 snapshot\(s\) forgotten since the prune before$/);
  expect(Date.parse(loc.status!.lastPruneTime!)).toBeGreaterThan(Date.now() - 120_000);
  expect(warnings()).toEqual([]);
}, 420_000);

test('SIGTERM during a verification: the controller waits, then stops it and exits; started again, it verifies that backup', async () => {
  await controller.stop();
  controller = await ControllerProcess.start(ns, ['--prune-after-forgets', '1']);
  apply(policyYaml(ns, 'ps', { destination: 'stop', retainNumBackups: 1 }));
  const verified = (mbr: string) => getJson<MetadataBackupRecord>(['mbr', mbr, '-n', ns]).status?.verification;
  const reading = frozenChild(controller.pid, /restic.*\srestore\s/, buckets.stop, password);
  const taken = await backupNow(ns, 'ps', 90_000);
  const reader = await reading;
  frozen.push(reader);

  const t0 = performance.now();
  const code = await controller.stop();
  const seconds = (performance.now() - t0) / 1000;
  console.log(`controller stopped ${seconds.toFixed(1)} s after SIGTERM (exit ${code}), --shutdown-timeout 10s`);
  expect(code).toBe(0);
  // It waited for the verification (the drain: shutdown time less 2 s), then cancelled it; restic stopped within its grace.
  expect(seconds).toBeGreaterThan(7);
  expect(seconds).toBeLessThan(30);
  // Killed as the controller exits: the kernel finishes a SIGKILLed restic (and its parent's successor reaps it) a
  // moment after the exit the test saw; once in CI the check came first.
  await eventually(() => expect(isAlive(reader.pid)).toBe(false), 3_000, 50);
  expect(controller.logLines().some((l) => l.msg === 'cancelling running backups at shutdown')).toBe(true);
  expect(verified(taken.status!.mbrName!)).toBeUndefined();

  controller = await ControllerProcess.start(ns, ['--prune-after-forgets', '1']);
  await eventually(() => expect(verified(taken.status!.mbrName!)?.result).toBe('Succeeded'), 120_000);
  // The next backup's retention forgets this one and the prune follows: the dead reader's lock holds neither up.
  const next = await backupNow(ns, 'ps', 90_000);
  await eventually(() => expect(snapshotIds(buckets.stop)).toEqual([next.status!.snapshotId!]), 120_000);
  await eventually(() => expect(logged('repository pruned', 'stop')).toBe(1), 90_000);
  expect(warnings()).toEqual([]);
}, 420_000);
