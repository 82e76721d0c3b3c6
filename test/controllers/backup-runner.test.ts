/** The runner's bookkeeping of work in flight: resolutions are not backups, a gone policy's work is cancelled, each end enqueues (unless stopping), and shutdown waits, then cancels. */
import { expect, test } from 'bun:test';
import type { MetadataBackupPolicy } from '../../src/api/types.ts';
import { BackupOutcomes } from '../../src/controllers/backup-outcome.ts';
import { BackupRunner, type RunnerDeps } from '../../src/controllers/backup-runner.ts';
import type { Restic } from '../../src/engine/restic.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { ApiError } from '../../src/kube/errors.ts';
import { createMetrics } from '../../src/metrics/registry.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';

function runner(opts: { client?: KubeClient; policies?: MetadataBackupPolicy[] } = {}) {
  const log = createLogger({ level: 'error' });
  const metrics = createMetrics();
  const client = opts.client ?? ({} as KubeClient);
  const recorder = { event: async () => undefined };
  const deps: RunnerDeps = {
    client, policies: fakeInformer<MetadataBackupPolicy>(opts.policies ?? []), secrets: fakeInformer([]), locations: fakeInformer([]), records: fakeInformer([]),
    recorder, metrics, restic: {} as Restic, log, outcomes: new BackupOutcomes({ client, recorder, metrics, log }),
    host: 'h', origin: { clusterId: 'c', clusterName: 'c', namespace: 'ns' }, maxConcurrent: 1, locationWaitMs: 0,
  };
  const enqueued: string[] = [];
  return { enqueued, r: new BackupRunner(deps, { enqueue: (k) => enqueued.push(k) }) };
}

test('a resolution holds the policy (no second start) but is not a backup the sync must leave alone; its end enqueues the policy', async () => {
  const { r, enqueued } = runner();
  let finish!: () => void;
  r.resolve('ns/p', () => new Promise<void>((ok) => { finish = ok; }));
  expect(r.has('ns/p')).toBe(true);
  expect(r.isRunning('ns/p')).toBe(false);
  expect(r.waitingFor('ns/p')).toBeUndefined();
  finish();
  await r.drain(1_000);
  expect(r.has('ns/p')).toBe(false);
  expect(enqueued).toEqual(['ns/p']);
});

test('shutdown waits for work in flight up to its time limit, then cancels it and waits for it to stop', async () => {
  const { r } = runner();
  let cancelled = false;
  r.resolve('ns/p', (signal) => new Promise<void>((ok) => signal.addEventListener('abort', () => { cancelled = true; ok(); })));
  const extra = { abort: new AbortController(), done: Promise.resolve() };
  const started = performance.now();
  await r.drain(100, [extra]);
  expect(cancelled).toBe(true);
  expect(extra.abort.signal.aborted).toBe(true);
  expect(performance.now() - started).toBeGreaterThanOrEqual(90);
});

test('work that ends in time is not cancelled', async () => {
  const { r } = runner();
  const abort = new AbortController();
  await r.drain(1_000, [{ abort, done: Bun.sleep(20) }]);
  expect(abort.signal.aborted).toBe(false);
});

test('a policy gone: cancel aborts its work in flight, which then leaves the policy free', async () => {
  const { r } = runner();
  let signal!: AbortSignal;
  r.resolve('ns/p', (s) => new Promise<void>((ok) => { signal = s; s.addEventListener('abort', () => ok()); }));
  r.cancel('ns/other');
  expect(signal.aborted).toBe(false);
  r.cancel('ns/p');
  expect(signal.aborted).toBe(true);
  await r.drain(1_000);
  expect(r.has('ns/p')).toBe(false);
});

test('a backup holds its policy while it runs and enqueues it at its end, unless the controller is stopping', async () => {
  const { r, enqueued } = runner();
  // The policy left the cache before the run began: the run ends at once, as a run that failed would.
  r.start('ns/p', 'Scheduled', new AbortController().signal, Date.now());
  expect(r.has('ns/p')).toBe(true);
  expect(r.isRunning('ns/p')).toBe(true);
  await r.drain(1_000);
  expect(r.has('ns/p')).toBe(false);
  expect(enqueued).toEqual(['ns/p']);
  const stopping = new AbortController();
  stopping.abort();
  r.start('ns/q', 'OnDemand', stopping.signal, Date.now());
  await r.drain(1_000);
  expect(enqueued).toEqual(['ns/p']);
});

test('a backup whose failure the API refused to record is this process\'s to resolve, counted already (asked once)', async () => {
  const policy: MetadataBackupPolicy = { metadata: { name: 'p', namespace: 'ns' }, spec: { destination: 'gone', schedule: '0 0 1 1 *' } };
  const client = { patchStatus: async () => { throw new ApiError(403, 'Forbidden', 'refused', 'PATCH', '/x'); } } as unknown as KubeClient;
  const { r } = runner({ client, policies: [policy] });
  r.start('ns/p', 'OnDemand', new AbortController().signal, Date.now());
  await r.drain(5_000);
  expect(r.takeUnreported('ns/p')).toBe(true);
  expect(r.takeUnreported('ns/p')).toBe(false);
});
