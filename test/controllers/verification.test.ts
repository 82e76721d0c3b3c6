/**
 * The verifier's decisions with fake inputs (the engine's verification is a stand-in; test/engine/verify and the e2e
 * tests run the real one): what a success and a failure write, and which failures have the repository checked.
 */
import { describe, expect, test } from 'bun:test';
import { BACKUP_VERIFICATION_FAILED, BACKUP_VERIFIED } from '../../src/api/events.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord, Secret } from '../../src/api/types.ts';
import type { RepositoryRepair } from '../../src/controllers/repository-repair.ts';
import { Verifier } from '../../src/controllers/verification.ts';
import { EngineError } from '../../src/engine/errors.ts';
import type { Restic } from '../../src/engine/restic.ts';
import type { VerifyResult } from '../../src/engine/verify.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { ApiError } from '../../src/kube/errors.ts';
import { createMetrics } from '../../src/metrics/registry.ts';
import type { EventRecorder } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';

const location: BackupLocation = {
  metadata: { name: 'loc', namespace: 'ns' }, spec: { url: 'https://s3.example.com', bucketName: 'backups', credentials: 'creds' }, status: { initStatus: 'Completed' },
};
const creds: Secret = { metadata: { name: 'creds', namespace: 'ns' }, data: Object.fromEntries(
  ['access_key', 'secret_key', 'restic_repo_password'].map((k) => [k, Buffer.from('x').toString('base64')])) };
const policy = { metadata: { name: 'p', namespace: 'ns' }, spec: { destination: 'loc', schedule: '@daily' } } as MetadataBackupPolicy;
const record: MetadataBackupRecord = { metadata: { name: 'mbr-1', namespace: 'ns' }, spec: { snapshotId: 'abcdef12', policy: 'p', backuploc: 'loc' } };

/**
 * `live` is the record as the API server has it when the verifier asks: the same, being deleted, or gone (retention
 * expired the backup meanwhile).
 */
function setup(outcome: VerifyResult | Error, rec: MetadataBackupRecord = record, live: () => MetadataBackupRecord | 'gone' = () => rec) {
  const patches: [string, string, unknown][] = [];
  const client = {
    patchStatus: async (r: { plural: string }, _ns: string, name: string, body: unknown) => void patches.push([r.plural, name, body]),
    get: async (_r: unknown, _ns: string, name: string) => {
      const now = live();
      if (now === 'gone') throw new ApiError(404, 'NotFound', `metadatabackuprecords "${name}" not found`, 'GET', `/…/${name}`);
      return now;
    },
  } as unknown as KubeClient;
  const events: [string, string][] = [];
  const recorder: EventRecorder = { event: async (_o, type, reason) => void events.push([type, reason]) };
  const checked: string[] = [];
  const repair = { checkAndRepair: async (l: BackupLocation) => void checked.push(l.metadata.name) } as unknown as RepositoryRepair;
  const metrics = createMetrics();
  const verifier = new Verifier({
    client, secrets: fakeInformer([creds]), restic: {} as Restic, recorder, metrics, log: createLogger({ level: 'error' }),
    acquire: async () => () => undefined, repair, now: () => new Date('2026-12-04T23:00:00Z'),
    verifyBackup: async () => {
      if (outcome instanceof Error) throw outcome;
      return outcome;
    },
  });
  return { verify: () => verifier.verify(policy, location, rec, new AbortController().signal), patches, events, checked };
}

describe('a verification', () => {
  test('of a backup that retention expired meanwhile: nothing written, no event, no check (it is not a failure)', async () => {
    let calls = 0;
    // Still there when the slot is taken, gone once the read failed: the snapshot was forgotten under the restore.
    const t = setup(new EngineError('NotFound', 'failed to find snapshot: failed to load snapshot abcdef12'), record, () => (calls++ === 0 ? record : 'gone'));
    expect(await t.verify()).toBe(false);
    expect(t.patches).toEqual([]);
    expect(t.events).toEqual([]);
    expect(t.checked).toEqual([]);
    // Already being deleted when its turn came: not even started.
    const deleting = { ...record, metadata: { ...record.metadata, deletionTimestamp: '2026-12-04T22:59:00Z' } };
    const u = setup(new Error('must not run'), record, () => deleting);
    expect(await u.verify()).toBe(false);
    expect(u.events).toEqual([]);
  });

  test('that restores: the record and the policy say so, a Normal event; no check of the repository', async () => {
    const t = setup({ snapshotId: 'abcdef12', sha256: 'f'.repeat(64), etcdSnapshotSize: 4096, revision: 42, keyCount: 300, durationSecs: 1.5 });
    expect(await t.verify()).toBe(true);
    expect(t.patches.map(([r, n]) => `${r}/${n}`)).toEqual(['metadatabackuprecords/mbr-1', 'metadatabackuppolicies/p']);
    expect(t.patches[0]?.[2]).toMatchObject({ verification: { result: 'Succeeded', revision: 42, keyCount: 300 } });
    expect(t.patches[1]?.[2]).toEqual({ lastVerifiedTime: '2026-12-04T23:00:00.000Z', lastVerifiedSnapshotId: 'abcdef12' });
    expect(t.events).toEqual([['Normal', BACKUP_VERIFIED]]);
    expect(t.checked).toEqual([]);
  });

  test('that fails on the data: Failed with the cause, an earlier success\'s figures cleared, a Warning, and the repository checked', async () => {
    const t = setup(new EngineError('Failed', 'restic restore failed: ciphertext verification failed'));
    expect(await t.verify()).toBe(false);
    expect(t.patches).toEqual([['metadatabackuprecords', 'mbr-1', { verification: {
      time: '2026-12-04T23:00:00.000Z', result: 'Failed', durationSecs: expect.any(String), revision: null, keyCount: null,
      message: 'verifying backup abcdef12 failed: restic restore failed: ciphertext verification failed',
    } }]]);
    expect(t.events).toEqual([['Warning', BACKUP_VERIFICATION_FAILED]]);
    expect(t.checked).toEqual(['loc']);
  });

  test('that fails without reading the data (S3 unreachable): Failed and a Warning, but no check of the repository', async () => {
    const t = setup(new EngineError('Unreachable', 'S3 endpoint unreachable: https://s3.example.com'));
    expect(await t.verify()).toBe(false);
    expect(t.events).toEqual([['Warning', BACKUP_VERIFICATION_FAILED]]);
    expect(t.checked).toEqual([]);
  });

  test('of a record adopted from the repository (no facts of its own): the facts are read from the snapshot, certificates included', async () => {
    const certificates = [{ file: 'ca.crt', notAfter: '2036-01-01T00:00:00Z' }, { file: 'etcd/server.crt', notAfter: '2027-06-01T00:00:00Z' }];
    const t = setup({ snapshotId: 'abcdef12', sha256: 'f'.repeat(64), etcdSnapshotSize: 4096, certificates, revision: 42, keyCount: 300, durationSecs: 1.5 },
      { ...record, status: { backupTime: '2026-12-04T22:00:00Z' } });
    await t.verify();
    expect(t.patches[0]?.[2]).toMatchObject({ etcdSnapshotSha256: 'f'.repeat(64), etcdSnapshotSize: 4096, etcdRevision: 42, certificates,
      earliestCertificateExpiry: '2027-06-01T00:00:00Z', verification: { result: 'Succeeded' } });
  });

  test('of a record with its backup\'s own facts: they are kept, not overwritten', async () => {
    const t = setup({ snapshotId: 'abcdef12', sha256: 'f'.repeat(64), etcdSnapshotSize: 4096, revision: 42, keyCount: 300, durationSecs: 1.5 },
      { ...record, status: { etcdSnapshotSha256: 'a'.repeat(64), etcdSnapshotSize: 1 } });
    await t.verify();
    expect(Object.keys(t.patches[0]?.[2] as object)).toEqual(['verification']);
  });
});
