/**
 * Retention after a backup: the newest retainNumBackups of the policy stay, the rest are forgotten and their records
 * deleted, and the change sets those full backups took out of every chain go with them (also for a policy that no
 * longer records changes). A repository modelled as restic's listing answers it.
 */
import { expect, test } from 'bun:test';
import { BACKUPS_EXPIRED, RETENTION_FAILED } from '../../src/api/events.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord, Secret } from '../../src/api/types.ts';
import { applyRetention } from '../../src/controllers/retention.ts';
import { RECORD_FINALIZER, SNAPSHOT_FORGOTTEN_ANNOTATION } from '../../src/api/group.ts';
import { EngineError } from '../../src/engine/errors.ts';
import { ApiError } from '../../src/kube/errors.ts';
import { type BackupOrigin, CHANGES_TAG, REVISION_TAG, originTags } from '../../src/engine/origin.ts';
import type { Restic } from '../../src/engine/restic.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import type { EventRecorder } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';

const here: BackupOrigin = { clusterId: '4f1c0a9e-1111-4222-8333-944455556666', clusterName: 'prod', namespace: 'ns' };
const id = (short: string) => `${short}${'0'.repeat(64 - short.length)}`;
const full = (short: string, revision: number, time: string) =>
  ({ id: id(short), short_id: short, time, hostname: 'cp-1', tags: ['daily', ...originTags(here), `${REVISION_TAG}${revision}`], paths: ['/data'] });
const changes = (short: string, from: number, to: number) =>
  ({ id: id(short), short_id: short, time: '2026-12-01T00:00:00Z', hostname: 'cp-1', paths: ['/changes'],
    tags: [`${CHANGES_TAG}daily`, ...originTags(here), `kubedr-revisions=${from}-${to}`, 'kubedr-changes-from=1', 'kubedr-changes-to=2'] });
const record = (name: string, snapshot: string, time: string) =>
  ({ metadata: { name, namespace: 'ns', creationTimestamp: time, resourceVersion: `rv-${name}`, finalizers: ['example.com/keep', RECORD_FINALIZER] }, spec: { policy: 'daily', backuploc: 'loc', snapshotId: id(snapshot) },
    status: { backupTime: time } }) as unknown as MetadataBackupRecord;

/** Restic over a repository of snapshots: lists (all, or by id) and forgets; `failForget` refuses forgets. */
function modelRestic(snapshots: ReturnType<typeof full>[], failForget = false) {
  const runs: string[][] = [];
  const restic = {
    lockWaitMs: 1000,
    exclusive: <T>(_r: unknown, fn: () => Promise<T>) => fn(),
    run: async (_r: unknown, args: string[]) => {
      runs.push(args);
      if (args[0] === 'snapshots') {
        const ids = args.slice(1).filter((a) => !a.startsWith('--'));
        return { stdout: JSON.stringify(snapshots.filter((s) => !ids.length || ids.some((i) => s.id.startsWith(i)))), stderr: '' };
      }
      if (args[0] === 'forget') {
        if (failForget) throw new EngineError('Failed', 'Fatal: unable to create lock in backend: 503 Service Unavailable');
        for (const i of args.slice(1)) snapshots.splice(snapshots.findIndex((s) => s.id.startsWith(i)), 1);
        return { stdout: '', stderr: '' };
      }
      if (args[0] === 'unlock') return { stdout: '', stderr: '' };
      throw new Error(`unexpected restic ${args.join(' ')}`);
    },
  } as unknown as Restic;
  return { restic, runs, snapshots };
}

async function retain(retainNumBackups: number, records: MetadataBackupRecord[], repo: ReturnType<typeof modelRestic>, changed: string[] = []) {
  const policy = { metadata: { name: 'daily', namespace: 'ns' }, spec: { retainNumBackups } } as unknown as MetadataBackupPolicy;
  const location = { metadata: { name: 'loc', namespace: 'ns' }, spec: { url: 'https://s3.example.com', bucketName: 'backups', credentials: 'c' } } as BackupLocation;
  const creds = { metadata: { name: 'c', namespace: 'ns' }, data: Object.fromEntries(
    ['access_key', 'secret_key', 'restic_repo_password'].map((k) => [k, Buffer.from('x').toString('base64')])) } as Secret;
  const deleted: string[] = [];
  const events: { type: string; reason: string; message: string }[] = [];
  const forgottenCounts: number[] = [];
  const patches: { name: string; patch: unknown }[] = [];
  const client = {
    patch: async (_r: unknown, _ns: string, name: string, patch: { metadata: { resourceVersion?: string } }) => {
      patches.push({ name, patch });
      if (patch.metadata.resourceVersion && changed.includes(name)) throw new ApiError(409, 'Conflict', 'the object has been modified', 'PATCH', '/x');
    },
    delete: async (_r: unknown, _ns: string, name: string) => void deleted.push(name),
  } as unknown as KubeClient;
  const recorder: EventRecorder = { event: async (_o, type, reason, message) => void events.push({ type, reason, message }) };
  await applyRetention({ client, records: fakeInformer(records), secrets: fakeInformer([creds]), restic: repo.restic, recorder,
    log: createLogger({ level: 'error' }), origin: here, onForgotten: (_l, n) => void forgottenCounts.push(n) }, policy, location, records.at(-1)!);
  return { deleted, events, forgottenCounts, patches };
}

test('the oldest backups beyond retainNumBackups are forgotten and their records deleted; the change sets only they continued go too', async () => {
  const repo = modelRestic([
    full('aaaa', 100, '2026-12-01T01:00:00Z'), changes('c1', 101, 150), changes('c2', 151, 199),
    full('bbbb', 200, '2026-12-01T02:00:00Z'), changes('c3', 195, 250),
    full('cccc', 300, '2026-12-01T03:00:00Z'), changes('c4', 301, 320),
  ]);
  const { deleted, events, forgottenCounts } = await retain(2, [
    record('r1', 'aaaa', '2026-12-01T01:00:00Z'), record('r2', 'bbbb', '2026-12-01T02:00:00Z'), record('r3', 'cccc', '2026-12-01T03:00:00Z'),
  ], repo);
  expect(deleted).toEqual(['r1']);
  expect(events.map((e) => e.reason)).toEqual([BACKUPS_EXPIRED]);
  // c3 starts before bbbb's revision but reaches past it: it continues bbbb and stays.
  expect(repo.snapshots.map((s) => s.short_id)).toEqual(['bbbb', 'c3', 'cccc', 'c4']);
  expect(forgottenCounts).toEqual([1, 2]);
  expect(repo.runs[0]).toEqual(['unlock']);
});

test('a policy that no longer records changes still loses the change sets of its forgotten backups', async () => {
  const repo = modelRestic([full('aaaa', 100, '2026-12-01T01:00:00Z'), changes('c1', 101, 150), full('bbbb', 200, '2026-12-01T02:00:00Z')]);
  await retain(1, [record('r1', 'aaaa', '2026-12-01T01:00:00Z'), record('r2', 'bbbb', '2026-12-01T02:00:00Z')], repo);
  expect(repo.snapshots.map((s) => s.short_id)).toEqual(['bbbb']);
});

test('nothing beyond retention: nothing is forgotten or listed; stale locks of dead writers are cleared, as after every backup', async () => {
  const repo = modelRestic([full('aaaa', 100, '2026-12-01T01:00:00Z'), changes('c1', 50, 90)]);
  const { deleted, events } = await retain(2, [record('r1', 'aaaa', '2026-12-01T01:00:00Z')], repo);
  expect(deleted).toEqual([]);
  expect(events).toEqual([]);
  expect(repo.runs.map((a) => a[0])).toEqual(['unlock']);
});

test('a forget that fails: RetentionFailed, records and change sets kept for the next backup to try again', async () => {
  const repo = modelRestic([full('aaaa', 100, '2026-12-01T01:00:00Z'), changes('c1', 101, 150), full('bbbb', 200, '2026-12-01T02:00:00Z')], true);
  const { deleted, events } = await retain(1, [record('r1', 'aaaa', '2026-12-01T01:00:00Z'), record('r2', 'bbbb', '2026-12-01T02:00:00Z')], repo);
  expect(deleted).toEqual([]);
  expect(events).toHaveLength(1);
  expect(events[0]).toMatchObject({ type: 'Warning', reason: RETENTION_FAILED });
  expect(events[0]!.message).toContain('old backups kept until the next backup');
  expect(repo.snapshots).toHaveLength(3);
});

test('an expired record loses its forget finalizer with the mark, so the delete removes it without waiting for the record reconciler', async () => {
  const repo = modelRestic([full('aaaa', 100, '2026-12-01T01:00:00Z'), full('bbbb', 200, '2026-12-01T02:00:00Z'), full('cccc', 300, '2026-12-01T03:00:00Z')]);
  const { deleted, patches } = await retain(1, [
    record('r1', 'aaaa', '2026-12-01T01:00:00Z'), record('r2', 'bbbb', '2026-12-01T02:00:00Z'), record('r3', 'cccc', '2026-12-01T03:00:00Z'),
  ], repo, ['r2']);
  const forgotten = { [SNAPSHOT_FORGOTTEN_ANNOTATION]: 'true' };
  expect(patches).toEqual([
    // Changed since the cache saw it: only marked; its finalizer releases it without a second forget.
    { name: 'r2', patch: { metadata: { annotations: forgotten, finalizers: ['example.com/keep'], resourceVersion: 'rv-r2' } } },
    { name: 'r2', patch: { metadata: { annotations: forgotten } } },
    { name: 'r1', patch: { metadata: { annotations: forgotten, finalizers: ['example.com/keep'], resourceVersion: 'rv-r1' } } },
  ]);
  expect(deleted).toEqual(['r2', 'r1']);
});
