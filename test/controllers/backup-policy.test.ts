/**
 * The policy reconciler's decisions about a backup another process left `Running` (a restart, a failover, an etcd
 * restored from a snapshot taken mid-backup), with fake inputs: the cache, the live object, the repository sync.
 */
import { describe, expect, test } from 'bun:test';
import { BACKUP_FAILED, BACKUP_SUCCEEDED } from '../../src/api/events.ts';
import type { MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import { BackupPolicyReconciler, type BackupPolicyDeps } from '../../src/controllers/backup-policy.ts';
import { newRecord } from '../../src/controllers/records.ts';
import type { Verifier } from '../../src/controllers/verification.ts';
import type { SyncResult } from '../../src/controllers/repository-sync.ts';
import type { Restic } from '../../src/engine/restic.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { ConnectionError } from '../../src/kube/errors.ts';
import { createMetrics } from '../../src/metrics/registry.ts';
import type { EventRecorder } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';

const KEY = 'ns/pol';
const runningPolicy = (): MetadataBackupPolicy => ({
  metadata: { name: 'pol', namespace: 'ns', generation: 1, creationTimestamp: '2026-11-30T00:00:00Z' },
  spec: { destination: 'loc', certsDir: '/pki', schedule: '0 0 1 1 *' },
  status: { backupStatus: 'Running', observedGeneration: 1, lastSuccessfulBackupTime: '2026-11-30T10:00:00Z',
    progress: { phase: 'Upload', updateTime: '2026-11-30T11:00:05Z' } },
});


interface World {
  cached: MetadataBackupPolicy;
  live: MetadataBackupPolicy | undefined;
  records?: MetadataBackupRecord[];
  sync: () => Promise<SyncResult>;
  /** The first N status writes fail as in an API outage. */
  failingWrites?: number;
}

async function resolveWith(w: World) {
  const patches: Record<string, unknown>[] = [];
  const events: [string, string, string][] = [];
  let failing = w.failingWrites ?? 0;
  // The API's records: those given, plus what the sync adopts.
  const apiRecords = [...(w.records ?? [])];
  const client = {
    list: async () => ({ items: apiRecords, resourceVersion: '1' }),
    get: async () => {
      if (!w.live) throw Object.assign(new Error('not found'), { status: 404 });
      return w.live;
    },
    patchStatus: async (_ref: unknown, _ns: string, _name: string, status: Record<string, unknown>) => {
      if (failing-- > 0) throw new ConnectionError('connect ECONNREFUSED 10.0.0.1:443');
      patches.push(status);
      return {};
    },
  } as unknown as KubeClient;
  const recorder: EventRecorder = { event: async (_o, type, reason, message) => void events.push([type, reason, message]) };
  const metrics = createMetrics();
  const deps: BackupPolicyDeps = {
    client, policies: fakeInformer([w.cached]), locations: fakeInformer([]), secrets: fakeInformer([]),
    records: fakeInformer([]), recorder, metrics, restic: {} as Restic, log: createLogger({ level: 'error' }),
    host: 'h', origin: { clusterId: 'c1', clusterName: 'one', namespace: 'ns' }, maxConcurrent: 1, now: () => new Date('2026-11-30T11:01:00Z'),
  };
  const r = new BackupPolicyReconciler(deps);
  let busyDuringSync: boolean | undefined;
  r.sync = {
    syncLocation: async () => {
      // What the real sync asks before adopting this policy's snapshots.
      busyDuringSync = r.isRunning(KEY);
      const result = await w.sync();
      apiRecords.push(...result.adopted);
      return result;
    },
    request: () => {},
  };
  const enqueued: string[] = [];
  r.enqueue = (k) => enqueued.push(k);
  await r.reconcile(KEY, new AbortController().signal);
  const started = r.isRunning(KEY);
  await r.drain(10_000);
  const value = async (name: string) => (await metrics.registry.getSingleMetric(name)?.get())?.values.find((v) => v.labels.policyName === 'pol')?.value ?? 0;
  return {
    patches, events, enqueued, started, busyDuringSync,
    counts: { backups: await value('kubedr_num_backups'), ok: await value('kubedr_num_successful_backups'), failed: await value('kubedr_num_failed_backups') },
  };
}

const conditionsOf = (status: Record<string, unknown> | undefined) =>
  ((status?.conditions ?? []) as { type: string; status: string; reason: string }[]).map((c) => [c.type, c.status, c.reason]);

const adopted = () => newRecord({ namespace: 'ns', policy: 'pol', location: 'loc', snapshotId: 'abcdef12', adopted: true,
  status: { backupTime: '2026-11-30T11:00:00.000Z' } });

describe('a Running status that no backup of this process matches', () => {
  test('the repository holds its snapshot: Completed from the adopted record, counted as one successful backup', async () => {
    const { patches, events, counts, enqueued, busyDuringSync } = await resolveWith({ cached: runningPolicy(), live: runningPolicy(), sync: async () => ({ adopted: [adopted()] }) });
    // The resolution is not a backup of this process: the sync must not skip this policy's snapshots for it.
    expect(busyDuringSync).toBe(false);
    expect(patches.at(-1)).toMatchObject({ backupStatus: 'Completed', snapshotId: 'abcdef12', mbrName: 'mbr-abcdef12', backupErrorMessage: '',
      lastSuccessfulBackupTime: '2026-11-30T11:00:00.000Z', progress: null });
    expect(events).toEqual([['Normal', BACKUP_SUCCEEDED, 'Backup completed, snapshot ID: abcdef12']]);
    expect(counts).toEqual({ backups: 1, ok: 1, failed: 0 });
    expect(conditionsOf(patches.at(-1))).toEqual([['LastBackupSucceeded', 'True', 'Adopted']]);
    expect(enqueued).toEqual([KEY]);
  });

  test('a record already in the API, newer than the last success, counts too (the status write was what failed)', async () => {
    const { patches } = await resolveWith({ cached: runningPolicy(), live: runningPolicy(), records: [adopted()], sync: async () => ({ adopted: [] }) });
    expect(patches.at(-1)).toMatchObject({ backupStatus: 'Completed', snapshotId: 'abcdef12' });
  });

  test('no snapshot newer than the last success: interrupted, before it stored a snapshot; one failure', async () => {
    const old = newRecord({ namespace: 'ns', policy: 'pol', location: 'loc', snapshotId: '00000000', status: { backupTime: '2026-11-30T10:00:00.000Z' } });
    const { patches, events, counts } = await resolveWith({ cached: runningPolicy(), live: runningPolicy(), records: [old], sync: async () => ({ adopted: [] }) });
    const message = 'interrupted: the controller stopped during the backup, before it stored a snapshot';
    expect(patches.at(-1)).toMatchObject({ backupStatus: 'Failed', backupErrorMessage: message, progress: null });
    expect(events).toEqual([['Warning', BACKUP_FAILED, message]]);
    expect(counts).toEqual({ backups: 1, ok: 0, failed: 1 });
    // Backup health, not the policy's readiness: its schedule is still fine.
    expect(conditionsOf(patches.at(-1))).toEqual([['LastBackupSucceeded', 'False', 'Interrupted']]);
  });

  test('the repository cannot be read: interrupted, saying it could not be checked and that a later sync records it', async () => {
    const { patches } = await resolveWith({ cached: runningPolicy(), live: runningPolicy(), sync: async () => { throw new Error('S3 endpoint unreachable'); } });
    expect(patches.at(-1)?.backupErrorMessage).toBe('interrupted: the controller stopped during the backup; whether it stored a snapshot ' +
      'could not be checked (S3 endpoint unreachable); a later repository sync records it if it did');
  });

  test('the final status is retried through an API outage until it lands', async () => {
    const { patches, counts } = await resolveWith({ cached: runningPolicy(), live: runningPolicy(), failingWrites: 2, sync: async () => ({ adopted: [adopted()] }) });
    expect(patches.map((p) => p.backupStatus)).toEqual(['Completed']);
    expect(counts.ok).toBe(1);
  }, 10_000);

  test('the cache lags behind a final write the API already has: nothing is reported', async () => {
    const done = runningPolicy();
    done.status = { ...done.status, backupStatus: 'Completed' };
    let synced = false;
    const { patches, events, started, counts } = await resolveWith({ cached: runningPolicy(), live: done, sync: async () => { synced = true; return { adopted: [] }; } });
    expect(started).toBe(false);
    expect(synced).toBe(false);
    expect(events).toEqual([]);
    expect(patches.every((p) => p.backupStatus === undefined)).toBe(true);
    expect(counts.backups).toBe(0);
  });
});

describe('an after-backup verification that did not end (the controller stopped during it)', () => {
  const policy = (mode?: 'AfterBackup' | 'Schedule' | 'Never'): MetadataBackupPolicy => ({
    metadata: { name: 'pol', namespace: 'ns', generation: 1, creationTimestamp: '2026-11-30T00:00:00Z' },
    spec: { destination: 'loc', certsDir: '/pki', schedule: '0 0 1 1 *', ...(mode ? { verification: { mode, schedule: '0 0 1 1 *' } } : {}) },
    status: { backupStatus: 'Completed', observedGeneration: 1, lastScheduleTime: '2026-11-30T00:00:00Z' },
  });
  const record = (name: string, time: string, verified: boolean) => ({
    ...newRecord({ namespace: 'ns', policy: 'pol', location: 'loc', snapshotId: `${name}00000`.slice(0, 8), status: { backupTime: time } }),
    metadata: { name, namespace: 'ns' },
    ...(verified ? { status: { backupTime: time, verification: { time, result: 'Succeeded' as const } } } : { status: { backupTime: time } }),
  }) as MetadataBackupRecord;

  async function reconcileTwice(p: MetadataBackupPolicy, records: MetadataBackupRecord[]): Promise<string[]> {
    const verified: string[] = [];
    const client = { patchStatus: async () => ({}) } as unknown as KubeClient;
    const r = new BackupPolicyReconciler({
      client, policies: fakeInformer([p]), secrets: fakeInformer([]), records: fakeInformer(records),
      locations: fakeInformer([{ metadata: { name: 'loc', namespace: 'ns' }, spec: { url: 'https://s3', bucketName: 'b', credentials: 'c' }, status: { initStatus: 'Completed' } }]),
      recorder: { event: async () => undefined }, metrics: createMetrics(), restic: {} as Restic, log: createLogger({ level: 'error' }),
      host: 'h', origin: { clusterId: 'c1', clusterName: 'one', namespace: 'ns' }, maxConcurrent: 1, now: () => new Date('2026-11-30T11:01:00Z'),
    });
    r.verifier = { verify: async (_p: unknown, _l: unknown, rec: MetadataBackupRecord) => { verified.push(rec.metadata.name); return true; } } as unknown as Verifier;
    await r.reconcile(KEY, new AbortController().signal);
    await r.drain(1000);
    await r.reconcile(KEY, new AbortController().signal);
    await r.drain(1000);
    return verified;
  }

  test('the newest backup without a verification is verified, once per process', async () => {
    expect(await reconcileTwice(policy(), [record('older', '2026-11-30T09:00:00Z', true), record('newest', '2026-11-30T10:00:00Z', false)])).toEqual(['newest']);
  });

  test('nothing when the newest is verified (an older unverified one is not looked at), or in Schedule or Never mode', async () => {
    expect(await reconcileTwice(policy(), [record('older', '2026-11-30T09:00:00Z', false), record('newest', '2026-11-30T10:00:00Z', true)])).toEqual([]);
    const unverified = [record('newest', '2026-11-30T10:00:00Z', false)];
    expect(await reconcileTwice(policy('Schedule'), unverified)).toEqual([]);
    expect(await reconcileTwice(policy('Never'), unverified)).toEqual([]);
  });
});
