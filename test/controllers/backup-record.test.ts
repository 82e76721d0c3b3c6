/** The record finalizer's decisions with fake inputs: forget, retry while the repository is unreachable, or release. */
import { describe, expect, test } from 'bun:test';
import { FOREIGN_SNAPSHOT_KEPT, FORGET_FAILED, SNAPSHOT_KEPT } from '../../src/api/events.ts';
import { RECORD_FINALIZER } from '../../src/api/group.ts';
import type { BackupLocation, MetadataBackupRecord, Secret } from '../../src/api/types.ts';
import { BackupRecordReconciler } from '../../src/controllers/backup-record.ts';
import { EngineError } from '../../src/engine/errors.ts';
import { type BackupOrigin, originTags } from '../../src/engine/origin.ts';
import { ApiError } from '../../src/kube/errors.ts';
import type { Restic } from '../../src/engine/restic.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import type { EventRecorder } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';


const deleting: MetadataBackupRecord = {
  metadata: { name: 'mbr-abcdef12', namespace: 'ns', deletionTimestamp: '2026-11-30T12:00:00Z', finalizers: [RECORD_FINALIZER], resourceVersion: '7' },
  spec: { snapshotId: 'abcdef12', policy: 'p', backuploc: 'loc' },
};
const location = (extra: Partial<BackupLocation['metadata']> = {}): BackupLocation => ({
  metadata: { name: 'loc', namespace: 'ns', ...extra },
  spec: { url: 'https://s3.example.com:9000', bucketName: 'backups', credentials: 'creds' },
  status: { initStatus: 'Completed' },
});
const creds: Secret = { metadata: { name: 'creds', namespace: 'ns' }, data: Object.fromEntries(
  ['access_key', 'secret_key', 'restic_repo_password'].map((k) => [k, Buffer.from('x').toString('base64')])) };

const here: BackupOrigin = { clusterId: '4f1c0a9e-1111-4222-8333-944455556666', clusterName: 'prod', namespace: 'ns' };
/** `restic snapshots --json` of the record's snapshot, taken by `origin`. */
const listing = (origin: BackupOrigin) => JSON.stringify([{ id: `abcdef12${'0'.repeat(56)}`, short_id: 'abcdef12',
  time: '2026-11-30T10:00:00Z', hostname: 'h', tags: ['p', ...originTags(origin)], paths: ['data'] }]);

async function finalize(locations: BackupLocation[], resticFails?: Error, patchFails?: Error, snapshotsJson = listing(here),
  namespace: { deletionTimestamp?: string } = {}) {
  const patches: unknown[] = [];
  const events: [string, string, string][] = [];
  const resticCalls: string[][] = [];
  const client = {
    patch: async (_r: unknown, _ns: string, _n: string, p: unknown) => {
      if (patchFails) throw patchFails;
      patches.push(p);
    },
    patchStatus: async () => ({}),
    get: async (r: { plural: string }, _ns: string, name: string) => {
      expect([r.plural, name]).toEqual(['namespaces', 'ns']);
      return { metadata: { name, ...namespace } };
    },
  } as unknown as KubeClient;
  const restic = {
    exclusive: <T>(_repo: unknown, fn: () => Promise<T>) => fn(),
    run: async (_repo: unknown, args: string[]) => {
      resticCalls.push(args);
      if (resticFails) throw resticFails;
      return { stdout: args[0] === 'snapshots' ? snapshotsJson : '', stderr: '' };
    },
  } as unknown as Restic;
  const recorder: EventRecorder = { event: async (_o, type, reason, message) => void events.push([type, reason, message]) };
  const forgotten: number[] = [];
  const r = new BackupRecordReconciler({
    client, records: fakeInformer([deleting]), locations: fakeInformer(locations), secrets: fakeInformer([creds]),
    recorder, restic, log: createLogger({ level: 'error' }), origin: here, retryMs: 1234, onForgotten: (_l, n) => void forgotten.push(n),
  });
  const result = await r.reconcile('ns/mbr-abcdef12', new AbortController().signal);
  return { patches, events, resticCalls, result, forgotten };
}

describe('a record being deleted', () => {
  test('a conflict releasing the finalizer (a verification wrote the status meanwhile) is looked at again soon', async () => {
    const { result } = await finalize([location()], undefined, new ApiError(409, 'Conflict', 'the object has been modified', 'PATCH', '/x'));
    expect(result).toEqual({ requeueAfter: 200 });
  });

  test('forgets its snapshot (no prune: that runs on its own cadence), counts it for the pruner, then releases the record', async () => {
    const { patches, resticCalls, forgotten } = await finalize([location()]);
    expect(resticCalls).toEqual([['snapshots', '--json', '--no-lock', 'abcdef12'], ['forget', 'abcdef12']]);
    expect(forgotten).toEqual([1]);
    expect(patches).toEqual([{ metadata: { finalizers: [], resourceVersion: '7' } }]);
  });

  test('a snapshot another cluster took (a record adopted before clusters were told apart) is never forgotten; the record is released', async () => {
    const other = { clusterId: '0b9d2c7e-aaaa-4bbb-8ccc-dddddddddddd', clusterName: 'staging', namespace: 'ns' };
    const { patches, events, resticCalls, forgotten } = await finalize([location()], undefined, undefined, listing(other));
    expect(resticCalls).toEqual([['snapshots', '--json', '--no-lock', 'abcdef12']]);
    expect(forgotten).toEqual([0]);
    expect(events.map((e) => e[1])).toEqual([FOREIGN_SNAPSHOT_KEPT]);
    expect(events[0]?.[2]).toContain('belongs to cluster staging (0b9d2c7e)');
    expect(patches).toEqual([{ metadata: { finalizers: [], resourceVersion: '7' } }]);
  });

  test('a snapshot without a cluster identity (taken before the upgrade by this cluster\'s records) is forgotten as before', async () => {
    const { resticCalls } = await finalize([location()], undefined, undefined, JSON.stringify([{ id: `abcdef12${'0'.repeat(56)}`,
      short_id: 'abcdef12', time: '2026-11-30T10:00:00Z', hostname: 'h', tags: ['p'], paths: ['data'] }]));
    expect(resticCalls.at(-1)).toEqual(['forget', 'abcdef12']);
  });

  test('an unreachable repository keeps the record, says why once, and retries', async () => {
    const { patches, events, result } = await finalize([location()], new EngineError('Unreachable', 'S3 endpoint unreachable'));
    expect(patches).toEqual([]);
    expect(events.map((e) => e[1])).toEqual([FORGET_FAILED]);
    expect(result).toEqual({ requeueAfter: 1234 });
  });

  test('its location deleted (as with the namespace): released at once, with a Warning saying the snapshot stays and how to remove it', async () => {
    const { patches, events, resticCalls } = await finalize([]);
    expect(resticCalls).toEqual([]);
    expect(patches).toEqual([{ metadata: { finalizers: [], resourceVersion: '7' } }]);
    expect(events).toEqual([['Warning', SNAPSHOT_KEPT, 'BackupLocation "loc" is gone, so snapshot abcdef12 could not be forgotten: it stays in ' +
      'that location\'s repository. If it is no longer needed, remove it with: restic -r <repository> forget abcdef12 --prune']]);
  });

  test('its location being deleted: released too, and the message names the repository', async () => {
    const { events } = await finalize([location({ deletionTimestamp: '2026-11-30T12:00:00Z' })]);
    expect(events[0]?.[2]).toContain('restic -r s3:https://s3.example.com:9000/backups forget abcdef12 --prune');
  });

  test('its namespace being deleted (the location still there): released, the snapshot kept, not forgotten one by one', async () => {
    const { patches, events, resticCalls } = await finalize([location()], undefined, undefined, listing(here), { deletionTimestamp: '2026-11-30T12:00:00Z' });
    expect(resticCalls).toEqual([]);
    expect(patches).toEqual([{ metadata: { finalizers: [], resourceVersion: '7' } }]);
    expect(events).toEqual([['Warning', SNAPSHOT_KEPT, 'Namespace "ns" is being deleted, so snapshot abcdef12 was not forgotten: it stays in S3 ' +
      'for a new install (or `kubedr snapshots`) to find']]);
  });
});

describe('a record not being deleted', () => {
  const bare: MetadataBackupRecord = { metadata: { name: 'mbr-abcdef12', namespace: 'ns', resourceVersion: '7' }, spec: { snapshotId: 'abcdef12', policy: 'p', backuploc: 'loc' } };
  async function reconcile(namespace: { deletionTimestamp?: string }) {
    const patches: unknown[] = [];
    const client = {
      patch: async (_r: unknown, _ns: string, _n: string, p: unknown) => void patches.push(p),
      get: async () => ({ metadata: { name: 'ns', ...namespace } }),
    } as unknown as KubeClient;
    const r = new BackupRecordReconciler({
      client, records: fakeInformer([bare]), locations: fakeInformer([location()]), secrets: fakeInformer([creds]),
      recorder: { event: async () => undefined }, restic: {} as Restic, log: createLogger({ level: 'error' }), origin: here,
    });
    await r.reconcile('ns/mbr-abcdef12', new AbortController().signal);
    return patches;
  }

  test('gets the finalizer it lacks (made by KubeDR or by hand)', async () => {
    expect(await reconcile({})).toEqual([{ metadata: { finalizers: [RECORD_FINALIZER], resourceVersion: '7' } }]);
  });

  test('in a namespace being deleted, it does not: its release was on purpose, and the finalizer would keep the namespace Terminating', async () => {
    expect(await reconcile({ deletionTimestamp: '2026-12-05T00:44:01Z' })).toEqual([]);
  });
});
