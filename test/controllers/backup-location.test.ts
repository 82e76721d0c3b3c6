/** The location reconciler's decision to open a repository again: new inputs, or a backup that met refused credentials. */
import { expect, test } from 'bun:test';
import { INIT_FAILED } from '../../src/api/events.ts';
import type { BackupLocation, Secret } from '../../src/api/types.ts';
import { BackupLocationReconciler } from '../../src/controllers/backup-location.ts';
import { EngineError } from '../../src/engine/errors.ts';
import type { Restic } from '../../src/engine/restic.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { createMetrics } from '../../src/metrics/registry.ts';
import type { EventRecorder } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';

const creds: Secret = { metadata: { name: 'creds', namespace: 'ns', resourceVersion: '5' }, data: Object.fromEntries(
  ['access_key', 'secret_key', 'restic_repo_password'].map((k) => [k, Buffer.from('x').toString('base64')])) };
/** Ready for exactly these inputs (generation 1, Secret version 5). */
const ready: BackupLocation = {
  metadata: { name: 'loc', namespace: 'ns', generation: 1 },
  spec: { url: 'https://s3.example.com:9000', bucketName: 'backups', credentials: 'creds' },
  status: { initStatus: 'Completed', observedGeneration: 1, observedCredentialsVersion: '5',
    conditions: [{ type: 'Ready', status: 'True', reason: 'RepositoryReady', message: '', lastTransitionTime: '2026-12-04T10:00:00Z' }] },
};

test('a ready location is not opened again for the same inputs, unless a backup found its credentials refused', async () => {
  const statuses: Record<string, unknown>[] = [];
  const events: string[] = [];
  const resticCalls: string[][] = [];
  const client = { patchStatus: async (_r: unknown, _ns: string, _n: string, s: Record<string, unknown>) => void statuses.push(s) } as unknown as KubeClient;
  const restic = {
    run: async (_repo: unknown, args: string[]) => {
      resticCalls.push(args);
      throw new EngineError('AccessDenied', 'S3 endpoint refused the credentials: The AWS Access Key Id you provided does not exist in our records.');
    },
  } as unknown as Restic;
  const recorder: EventRecorder = { event: async (_o, _t, reason) => void events.push(reason) };
  const r = new BackupLocationReconciler({
    client, locations: fakeInformer([ready]), secrets: fakeInformer([creds]), recorder, metrics: createMetrics(), restic,
    log: createLogger({ level: 'error' }), retryBaseMs: 1000,
  });
  const signal = new AbortController().signal;
  expect(await r.reconcile('ns/loc', signal)).toBeUndefined();
  expect(resticCalls).toEqual([]);

  r.recheck('ns/loc');
  expect(await r.reconcile('ns/loc', signal)).toEqual({ requeueAfter: 1000 });
  expect(resticCalls).toEqual([['init']]);
  expect(statuses.at(-1)).toMatchObject({ initStatus: 'Failed', initErrorMessage: expect.stringContaining('refused the credentials') });
  expect(events).toEqual([INIT_FAILED]);
  // Once: the next reconcile of unchanged inputs goes back to trusting the status it wrote.
  resticCalls.length = 0;
  await r.reconcile('ns/loc', signal);
  expect(resticCalls).toEqual([]);
});

test('after a restart, a location that failed for good keeps its failure series in /metrics (at 0), without being retried', async () => {
  const failed: BackupLocation = { ...ready, status: { ...ready.status, initStatus: 'Failed', initErrorMessage: 'wrong repository password',
    conditions: [{ type: 'Ready', status: 'False', reason: 'WrongPassword', message: 'wrong repository password', lastTransitionTime: '2026-12-04T10:00:00Z' }] } };
  const metrics = createMetrics();
  const restic = { run: async () => { throw new Error('must not run'); } } as unknown as Restic;
  const r = new BackupLocationReconciler({
    client: {} as KubeClient, locations: fakeInformer([failed]), secrets: fakeInformer([creds]), recorder: { event: async () => undefined },
    metrics, restic, log: createLogger({ level: 'error' }),
  });
  expect(await r.reconcile('ns/loc', new AbortController().signal)).toBeUndefined();
  const text = await metrics.registry.metrics();
  expect(text).toContain('kubedr_backup_location_init_failures_total{location="loc",reason="WrongPassword"} 0');
});

test('a location whose spec.protection was removed loses its Protected condition at the next init, whatever the outcome', async () => {
  const was: BackupLocation = { ...ready, metadata: { ...ready.metadata, generation: 2 }, status: { ...ready.status,
    conditions: [...ready.status!.conditions!, { type: 'Protected', status: 'True', reason: 'ObjectLocked', message: 'locked', lastTransitionTime: '2026-12-04T10:00:00Z' }] } };
  const statuses: { conditions?: { type: string }[] }[] = [];
  const client = { patchStatus: async (_r: unknown, _ns: string, _n: string, s: { conditions?: { type: string }[] }) => void statuses.push(s) } as unknown as KubeClient;
  const restic = { run: async () => { throw new EngineError('Unreachable', 'connection refused'); } } as unknown as Restic;
  const r = new BackupLocationReconciler({
    client, locations: fakeInformer([was]), secrets: fakeInformer([creds]), recorder: { event: async () => undefined }, metrics: createMetrics(),
    restic, log: createLogger({ level: 'error' }), retryBaseMs: 1000,
  });
  await r.reconcile('ns/loc', new AbortController().signal);
  expect(statuses.length).toBeGreaterThan(0);
  for (const s of statuses) expect(s.conditions?.map((c) => c.type)).toEqual(['Ready']);
});
