/** Continuous backup's decisions with fake inputs: which policies get a recorder, and what a policy that cannot have one is told. */
import { describe, expect, test } from 'bun:test';
import type { BackupLocation, MetadataBackupPolicy, Secret } from '../../src/api/types.ts';
import { ContinuousBackup, recorderInputs } from '../../src/controllers/continuous-backup.ts';
import type { Restic } from '../../src/engine/restic.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { createMetrics } from '../../src/metrics/registry.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const location: BackupLocation = {
  metadata: { name: 'loc', namespace: 'ns' }, spec: { url: 'https://s3.example.com', bucketName: 'backups', credentials: 'creds' }, status: { initStatus: 'Completed' },
};
const creds: Secret = { metadata: { name: 'creds', namespace: 'ns' }, data: { access_key: b64('a'), secret_key: b64('s'), restic_repo_password: b64('p') } };
const policy = (continuous?: MetadataBackupPolicy['spec']['continuous'], more: Partial<MetadataBackupPolicy['spec']> = {}): MetadataBackupPolicy => ({
  metadata: { name: 'p', namespace: 'ns' },
  spec: { destination: 'loc', schedule: '@daily', etcdEndpoint: 'http://127.0.0.1:2379', ...(continuous ? { continuous } : {}), ...more },
});

describe('recorderInputs', () => {
  const locations = fakeInformer([location]);
  const secrets = fakeInformer([creds]);

  test('no recorder unless the policy asks for one (a KubeDR manifest has no continuous field), nor for a policy being deleted', () => {
    expect(recorderInputs(policy(), locations, secrets)).toBeUndefined();
    expect(recorderInputs(policy({ enabled: false }), locations, secrets)).toBeUndefined();
    const deleting = { ...policy({ enabled: true }), metadata: { name: 'p', namespace: 'ns', deletionTimestamp: '2026-12-05T00:00:00Z' } };
    expect(recorderInputs(deleting, locations, secrets)).toBeUndefined();
  });

  test('enabled: etcd, the location\'s repository and the flush interval (30 s by default)', () => {
    expect(recorderInputs(policy({ enabled: true }), locations, secrets)).toMatchObject({
      etcd: { endpoint: 'http://127.0.0.1:2379' }, repo: { address: 's3:https://s3.example.com/backups', password: 'p' }, flushIntervalMs: 30_000,
    });
    expect(recorderInputs(policy({ enabled: true, flushInterval: '1m' }), locations, secrets)).toMatchObject({ flushIntervalMs: 60_000 });
  });

  test('what stops it is said plainly: a location not ready, missing etcd credentials, a bad interval', () => {
    expect(recorderInputs(policy({ enabled: true }, { destination: 'other' }), locations, secrets)).toEqual({ problem: 'BackupLocation "other" not found' });
    expect(recorderInputs(policy({ enabled: true }, { etcdEndpoint: 'https://127.0.0.1:2379' }), locations, secrets))
      .toEqual({ problem: 'etcd credentials Secret "etcd-creds" not found' });
    expect(recorderInputs(policy({ enabled: true, flushInterval: 'soon' }), locations, secrets)).toEqual({ problem: 'invalid duration "soon" (e.g. 500ms, 15s, 2m, 1h)' });
    expect(recorderInputs(policy({ enabled: true, flushInterval: '100ms' }), locations, secrets)).toEqual({ problem: 'continuous.flushInterval "100ms" is shorter than 1s' });
  });
});

describe('a policy whose continuous backup cannot run', () => {
  test('is told why in status.continuous once, not at every resync; nothing runs restic', async () => {
    const patches: unknown[] = [];
    const client = { patchStatus: async (_r: unknown, _ns: string, _n: string, body: unknown) => void patches.push(body) } as unknown as KubeClient;
    let resticRuns = 0;
    const restic = { run: async () => { resticRuns++; return { stdout: '[]', stderr: '' }; } } as unknown as Restic;
    const c = new ContinuousBackup({
      client, policies: fakeInformer([policy({ enabled: true }, { destination: 'missing' })]), locations: fakeInformer([location]), secrets: fakeInformer([creds]),
      restic, recorder: { event: async () => {} }, metrics: createMetrics(), log: createLogger({ level: 'error' }),
      origin: { clusterId: 'c', clusterName: 'c', namespace: 'ns' }, host: 'h', requestBackup: () => {}, resyncMs: 5,
    });
    const stop = new AbortController();
    const running = c.start(stop.signal);
    await Bun.sleep(50);
    stop.abort();
    await running;
    expect(patches).toHaveLength(1);
    expect(patches[0]).toMatchObject({ continuous: { state: 'Stopped', message: 'continuous backup cannot run: BackupLocation "missing" not found' } });
    expect(resticRuns).toBe(0);
  });
});
