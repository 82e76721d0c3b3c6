/** When a location's repository is pruned: on its own cadence, sooner after many forgets, never all at once on a restart. */
import { expect, test } from 'bun:test';
import { PRUNE_FAILED, PRUNE_LEFT_TO_MAINTENANCE } from '../../src/api/events.ts';
import type { BackupLocation, Secret } from '../../src/api/types.ts';
import { Pruner, pruneDue } from '../../src/controllers/pruner.ts';
import { EngineError } from '../../src/engine/errors.ts';
import type { Restic } from '../../src/engine/restic.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import type { Metrics } from '../../src/metrics/registry.ts';
import { ConnectionError } from '../../src/kube/errors.ts';
import type { EventRecorder } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';

const H = 3_600_000;
const base = { startedAt: 0, intervalMs: 24 * H, afterForgets: 50 };

test('a location pruned a day ago with forgets since is due; one pruned an hour ago is not', () => {
  expect(pruneDue({ ...base, lastPrune: 0, forgets: 3, now: 24 * H })).toBe(true);
  expect(pruneDue({ ...base, lastPrune: 23 * H, forgets: 3, now: 24 * H })).toBe(false);
});

test('enough forgets make it due at once', () => {
  expect(pruneDue({ ...base, lastPrune: 23 * H, forgets: 50, now: 24 * H })).toBe(true);
});

test('never pruned: counted from this process\'s start, and only once something was forgotten', () => {
  expect(pruneDue({ ...base, lastPrune: undefined, forgets: 0, now: 1 })).toBe(false);
  expect(pruneDue({ ...base, lastPrune: undefined, forgets: 0, now: 48 * H })).toBe(false);
  expect(pruneDue({ ...base, lastPrune: undefined, forgets: 2, now: 1 * H })).toBe(false);
  expect(pruneDue({ ...base, lastPrune: undefined, forgets: 2, now: 25 * H })).toBe(true);
});

test('a recorded prune is repeated each interval even without forgets seen by this process (they may predate a restart)', () => {
  expect(pruneDue({ ...base, lastPrune: 0, forgets: 0, now: 24 * H })).toBe(true);
});

/**
 * Runs the pruner over one location whose last prune was two days ago, for 300 ms; restic's run does `run`, the API's
 * status writes do `patchStatus` (default: recorded).
 */
async function pruneOnce(spec: Partial<BackupLocation['spec']>, run: () => Promise<void>,
  patchStatus?: (body: Record<string, unknown>) => Promise<void>) {
  const loc = { metadata: { name: 'loc', namespace: 'ns' }, spec: { url: 'https://s3.example.com', bucketName: 'backups', credentials: 'c', ...spec },
    status: { initStatus: 'Completed', lastPruneTime: new Date(Date.now() - 2 * 24 * H).toISOString(),
      protection: { versioning: 'Enabled', objectLock: 'Enabled', retentionMode: 'COMPLIANCE', retentionDays: 30 } } } as BackupLocation;
  const creds = { metadata: { name: 'c', namespace: 'ns' }, data: Object.fromEntries(
    ['access_key', 'secret_key', 'restic_repo_password'].map((k) => [k, Buffer.from('x').toString('base64')])) } as Secret;
  const events: { type: string; reason: string; message: string }[] = [];
  const patches: Record<string, unknown>[] = [];
  const runs: string[] = [];
  /** Every status write and event, in the order made. */
  const order: string[] = [];
  const restic = {
    exclusive: <T>(_r: unknown, fn: () => Promise<T>) => fn(),
    lockWaitMs: 1000,
    run: async (_r: unknown, args: string[]) => {
      runs.push(args[0]!);
      await run();
      return { stdout: '', stderr: '' };
    },
  } as unknown as Restic;
  const client = { patchStatus: async (_r: unknown, _ns: string, _n: string, body: Record<string, unknown>) => {
    order.push(`status ${Object.keys(body).join(',')}`);
    return patchStatus ? patchStatus(body) : void patches.push(body);
  } } as unknown as KubeClient;
  const recorder: EventRecorder = { event: async (_o, type, reason, message) => {
    order.push(`event ${reason}`);
    events.push({ type, reason, message });
  } };
  const failures: string[] = [];
  const metrics = { pruneFailures: { inc: (l: { location: string }, n = 1) => { if (n) failures.push(l.location); } } } as unknown as Pick<Metrics, 'pruneFailures'>;
  const pruner = new Pruner({ client, locations: fakeInformer([loc]), secrets: fakeInformer([creds]), restic, recorder, metrics,
    log: createLogger({ level: 'error' }), intervalMs: 24 * H, afterForgets: 50 });
  const stop = new AbortController();
  const started = pruner.start(stop.signal);
  await Bun.sleep(300);
  stop.abort();
  await started;
  return { events, patches, runs, order, failures };
}

test('a good prune: its time, result and what it did in status; no failure counted', async () => {
  const { patches, failures, events } = await pruneOnce({}, async () => undefined);
  expect(patches).toHaveLength(1);
  expect(patches[0]).toMatchObject({ lastPruneResult: 'Succeeded' });
  expect(String(patches[0]!.lastPruneMessage)).toMatch(/^pruned in \d+\.\d s, 0 snapshot\(s\) forgotten since the prune before$/);
  expect(typeof patches[0]!.lastPruneTime).toBe('string');
  expect(events).toEqual([]);
  expect(failures).toEqual([]);
});

test('a good prune whose lastPruneTime cannot be written (API away) is no PruneFailed, and is not run again at once', async () => {
  const { events, runs, failures } = await pruneOnce({}, async () => undefined, async () => { throw new ConnectionError('connect ECONNREFUSED 10.96.0.1:443'); });
  expect(runs).toEqual(['prune']);
  expect(events).toEqual([]);
  expect(failures).toEqual([]);
});

test('a protected location\'s prune is reported as left to maintenance (Normal, with the lifecycle command, in status first)', async () => {
  const { events, patches, order } = await pruneOnce({ protection: { expected: 'ObjectLock' } }, async () => undefined);
  // Status before the event: whoever sees the event finds the note in status.
  expect(order).toEqual(['status lastPruneTime,lastPruneResult,lastPruneMessage', `event ${PRUNE_LEFT_TO_MAINTENANCE}`]);
  expect(patches[0]?.lastPruneResult).toBe('LeftToMaintenance');
  expect(events.map((e) => `${e.type} ${e.reason}`)).toEqual([`Normal ${PRUNE_LEFT_TO_MAINTENANCE}`]);
  expect(events[0]!.message).toContain('versioning Enabled, object lock Enabled, default retention COMPLIANCE 30 days');
  expect(events[0]!.message).toContain('put-bucket-lifecycle-configuration');
  expect(patches.some((p) => typeof p.lastPruneTime === 'string')).toBe(true);
  expect(patches.find((p) => 'lastPruneMessage' in p)?.lastPruneMessage).toBe(events[0]!.message);
});

test('a prune the bucket refuses (AccessDenied) is expected on a protected location: no PruneFailed, the prune command to run', async () => {
  const refuse = async () => { throw new EngineError('AccessDenied', 'Remove(<data/12ab>) failed: client.RemoveObject: Access Denied.'); };
  const kept = await pruneOnce({ protection: { expected: 'ObjectLock' } }, refuse);
  expect(kept.events.map((e) => `${e.type} ${e.reason}`)).toEqual([`Normal ${PRUNE_LEFT_TO_MAINTENANCE}`]);
  expect(kept.events[0]!.message).toContain('restic -r s3:https://s3.example.com/backups prune with the maintenance keys');
  expect(kept.patches.some((p) => 'lastPruneTime' in p)).toBe(false);
  // Without spec.protection the same refusal is a failure, as before; and a protected location's other failures too.
  const plain = await pruneOnce({}, refuse);
  expect(plain.events.map((e) => `${e.type} ${e.reason}`)).toEqual([`Warning ${PRUNE_FAILED}`]);
  // A failure is also in status and counted, status before the event.
  expect(plain.order).toEqual(['status lastPruneResult,lastPruneMessage', `event ${PRUNE_FAILED}`]);
  expect(plain.patches[0]).toEqual({ lastPruneResult: 'Failed', lastPruneMessage: plain.events[0]!.message });
  expect(plain.failures).toEqual(['loc']);
  expect(kept.failures).toEqual([]);
  const away = await pruneOnce({ protection: { expected: 'ObjectLock' } }, async () => { throw new EngineError('Unreachable', 'connection refused'); });
  expect(away.events.map((e) => `${e.type} ${e.reason}`)).toEqual([`Warning ${PRUNE_FAILED}`]);
});

test('an unprotected location\'s good prune records no event, as before', async () => {
  const { events } = await pruneOnce({}, async () => undefined);
  expect(events).toEqual([]);
});
