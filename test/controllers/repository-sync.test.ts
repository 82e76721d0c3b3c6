/** Records as the repository's index: what a sync adopts or flags, record names and labels, and writes that must land. */
import { describe, expect, test } from 'bun:test';
import { POLICY_LABEL } from '../../src/api/group.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord, Secret } from '../../src/api/types.ts';
import { newRecord, policyLabelValue, recordName } from '../../src/controllers/records.ts';
import { RepositorySync, planSync } from '../../src/controllers/repository-sync.ts';
import { type BackupOrigin, originTags } from '../../src/engine/origin.ts';
import type { SnapshotInfo } from '../../src/engine/restic-output.ts';
import type { Restic } from '../../src/engine/restic.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import type { EventRecorder } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';
import { ApiError } from '../../src/kube/errors.ts';
import { retryUntilDone } from '../../src/util/retry.ts';

const location = { metadata: { name: 'loc', namespace: 'ns' }, spec: { url: 'https://s3', bucketName: 'b', credentials: 'c' } } as BackupLocation;
const policy = (name: string, destination = 'loc', namespace = 'ns') =>
  ({ metadata: { name, namespace }, spec: { destination, certsDir: '/pki', schedule: '* * * * *' } }) as MetadataBackupPolicy;
const here: BackupOrigin = { clusterId: '4f1c0a9e-1111-4222-8333-944455556666', clusterName: 'prod', namespace: 'ns' };
const rule = { origin: here, adoptUnmarked: false };
/** A snapshot of policy `tag`, taken by `origin` (this cluster and install by default; null: no origin recorded). */
const snap = (id: string, tag: string, time = '2026-11-30T10:00:00Z', origin: BackupOrigin | null = here): SnapshotInfo =>
  ({ id: `${id}${'0'.repeat(56)}`, shortId: id, time, hostname: 'h', tags: [tag, ...(origin ? originTags(origin) : [])], paths: ['/x'] });
const record = (id: string, pol: string, extra: Partial<MetadataBackupRecord['metadata']> = {}, loc = 'loc'): MetadataBackupRecord =>
  ({ metadata: { name: `mbr-${id}`, namespace: 'ns', ...extra }, spec: { snapshotId: id, policy: pol, backuploc: loc } });

describe('planSync', () => {
  test('a snapshot of a policy here that has no record is adopted; one with a record is not', () => {
    const plan = planSync(location, [snap('aaaaaaaa', 'p'), snap('bbbbbbbb', 'p')], [policy('p')], [record('aaaaaaaa', 'p')], rule);
    expect(plan.adopt.map((a) => [a.snapshot.shortId, a.policy])).toEqual([['bbbbbbbb', 'p']]);
    expect(plan.missing).toEqual([]);
  });

  test('adoptions come oldest first, so retention sees them in order', () => {
    const plan = planSync(location, [snap('bbbbbbbb', 'p', '2026-11-30T12:00:00Z'), snap('aaaaaaaa', 'p', '2026-11-30T11:00:00Z')], [policy('p')], [], rule);
    expect(plan.adopt.map((a) => a.snapshot.shortId)).toEqual(['aaaaaaaa', 'bbbbbbbb']);
  });

  test('snapshots of deleted policies, of other namespaces\' policies and of policies with another destination stay alone', () => {
    const plan = planSync(location, [snap('aaaaaaaa', 'gone'), snap('bbbbbbbb', 'elsewhere'), snap('cccccccc', 'other-ns')],
      [policy('elsewhere', 'other-loc'), policy('other-ns', 'loc', 'ns2')], [], rule);
    expect(plan.adopt).toEqual([]);
  });

  test('a policy whose backup runs right now is not adopted from under it', () => {
    const plan = planSync(location, [snap('aaaaaaaa', 'p')], [policy('p')], [], rule, (p) => p === 'p');
    expect(plan.adopt).toEqual([]);
  });

  test('a record with a full restic id (restic ≥ 0.17) matches its snapshot', () => {
    const full = `aaaaaaaa${'0'.repeat(56)}`;
    expect(planSync(location, [snap('aaaaaaaa', 'p')], [policy('p')], [record(full, 'p')], rule).adopt).toEqual([]);
  });

  test('records whose snapshot is gone are missing; records being deleted or already forgotten are not', () => {
    const plan = planSync(location, [snap('aaaaaaaa', 'p')], [policy('p')], [
      record('aaaaaaaa', 'p'), record('dddddddd', 'p'), record('eeeeeeee', 'p', { deletionTimestamp: '2026-11-30T10:00:00Z' }),
      record('ffffffff', 'p', { annotations: { 'kubedr.catalogicsoftware.com/snapshot-forgotten': 'true' } }),
      record('99999999', 'p', {}, 'other-loc'),
    ], rule);
    expect(plan.missing.map((r) => r.metadata.name)).toEqual(['mbr-dddddddd']);
    expect(plan.present.map((r) => r.metadata.name)).toEqual(['mbr-aaaaaaaa']);
  });
});

describe('planSync in a bucket shared with other clusters and installs', () => {
  const other: BackupOrigin = { clusterId: '0b9d2c7e-aaaa-4bbb-8ccc-dddddddddddd', clusterName: 'staging', namespace: 'ns' };

  test('another cluster\'s snapshot of a policy with the same name is never adopted', () => {
    const plan = planSync(location, [snap('aaaaaaaa', 'p', undefined, other), snap('bbbbbbbb', 'p')], [policy('p')], [], rule);
    expect(plan.adopt.map((a) => a.snapshot.shortId)).toEqual(['bbbbbbbb']);
    expect(plan.unmarked).toEqual([]);
  });

  test('another install\'s snapshot (same cluster, another namespace) is never adopted', () => {
    const plan = planSync(location, [snap('aaaaaaaa', 'p', undefined, { ...here, namespace: 'ns2' })], [policy('p')], [], rule);
    expect(plan.adopt).toEqual([]);
  });

  test('a snapshot without a cluster identity is left alone and reported, unless told to adopt such snapshots', () => {
    const snapshots = [snap('aaaaaaaa', 'p', undefined, null), snap('cccccccc', 'gone', undefined, null)];
    const plan = planSync(location, snapshots, [policy('p')], [], rule);
    expect(plan.adopt).toEqual([]);
    expect(plan.unmarked.map((s) => s.shortId)).toEqual(['aaaaaaaa']);
    const told = planSync(location, snapshots, [policy('p')], [], { origin: here, adoptUnmarked: true });
    expect(told.adopt.map((a) => a.snapshot.shortId)).toEqual(['aaaaaaaa']);
    expect(told.unmarked).toEqual([]);
  });

  test('a record of an unmarked snapshot (written before the upgrade) keeps it present, not missing', () => {
    const plan = planSync(location, [snap('aaaaaaaa', 'p', undefined, null)], [policy('p')], [record('aaaaaaaa', 'p')], rule);
    expect(plan.present.map((r) => r.metadata.name)).toEqual(['mbr-aaaaaaaa']);
    expect(plan.unmarked).toEqual([]);
  });
});

describe('records', () => {
  test('named mbr-<short id> whatever id restic reports', () => {
    expect(recordName('1a2b3c4d')).toBe('mbr-1a2b3c4d');
    expect(recordName(`1a2b3c4d${'e'.repeat(56)}`)).toBe('mbr-1a2b3c4d');
  });

  test('a policy name of up to 253 characters gives a valid, unique label value; the spec keeps the full name', () => {
    const long = `${'p'.repeat(60)}-${'q'.repeat(192)}`;
    const other = `${'p'.repeat(60)}-${'r'.repeat(192)}`;
    const v = policyLabelValue(long);
    expect(v.length).toBeLessThanOrEqual(63);
    expect(v).toMatch(/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/);
    expect(v).not.toBe(policyLabelValue(other));
    expect(policyLabelValue('short-name')).toBe('short-name');
    const r = newRecord({ namespace: 'ns', policy: long, location: 'loc', snapshotId: 'abcdef12', status: {} });
    expect(r.metadata.labels?.[POLICY_LABEL]).toBe(v);
    expect(r.spec.policy).toBe(long);
  });

  test('an adopted record says so', () => {
    const r = newRecord({ namespace: 'ns', policy: 'p', location: 'loc', snapshotId: 'abcdef12', status: {}, adopted: true });
    expect(r.metadata.annotations).toEqual({ 'kubedr.catalogicsoftware.com/adopted': 'true' });
  });
});

describe('retryUntilDone', () => {
  test('retries failures until the write lands', async () => {
    let calls = 0;
    const delays: number[] = [];
    const v = await retryUntilDone(async () => {
      if (++calls < 4) throw new Error('connection refused');
      return 'landed';
    }, { baseMs: 1, maxMs: 4, onRetry: (_e, _a, d) => delays.push(d) });
    expect(v).toBe('landed');
    expect(delays).toEqual([1, 2, 4]);
  });

  test('a permanent error is thrown at once', async () => {
    let calls = 0;
    const invalid = new ApiError(422, 'Invalid', 'label too long', 'POST', '/x');
    const err = await retryUntilDone(async () => { calls++; throw invalid; }, { baseMs: 1, permanent: (e) => e === invalid }).catch((e) => e);
    expect(err).toBe(invalid);
    expect(calls).toBe(1);
  });

  test('gives up with the last error once aborted (the controller is stopping)', async () => {
    const stop = new AbortController();
    let calls = 0;
    const err = await retryUntilDone(async () => {
      if (++calls === 2) stop.abort();
      throw new Error(`attempt ${calls}`);
    }, { baseMs: 1, signal: stop.signal }).catch((e: Error) => e.message);
    expect(err).toBe('attempt 2');
  });
});

/** A location ready for syncs, and its credentials. */
const loc = { ...location, spec: { ...location.spec, bucketName: 'backups' }, status: { initStatus: 'Completed' } } as BackupLocation;
const creds = { metadata: { name: 'c', namespace: 'ns' }, data: Object.fromEntries(
  ['access_key', 'secret_key', 'restic_repo_password'].map((k) => [k, Buffer.from('x').toString('base64')])) } as Secret;

describe('RepositorySync against a repository that retention changes meanwhile', () => {
  const snapshotJson = JSON.stringify([{ id: `aaaaaaaa${'0'.repeat(56)}`, short_id: 'aaaaaaaa', time: '2026-11-30T10:00:00Z', hostname: 'h',
    tags: ['p', ...originTags(here)], paths: ['data'] }]);

  /** A sync whose listing shows one snapshot without a record; `stillThere` is what asking for it by id answers. */
  async function syncWith(stillThere: boolean) {
    const created: string[] = [];
    const restic = {
      run: async (_repo: unknown, args: string[]) => {
        const byId = args.length > 3;
        return { stdout: byId && !stillThere ? '[]' : snapshotJson, stderr: '' };
      },
    } as unknown as Restic;
    const client = {
      create: async (_r: unknown, _ns: string, obj: MetadataBackupRecord) => void created.push(obj.metadata.name),
      patchStatus: async () => ({}),
    } as unknown as KubeClient;
    const recorder: EventRecorder = { event: async () => undefined };
    const sync = new RepositorySync({
      client, locations: fakeInformer([loc]), policies: fakeInformer([policy('p')]), records: fakeInformer<MetadataBackupRecord>([]),
      secrets: fakeInformer([creds]), restic, recorder, log: createLogger({ level: 'error' }), periodMs: 60_000, ownership: rule,
    });
    const result = await sync.syncLocation('ns', 'loc');
    return { created, adopted: result.adopted.map((r) => r.metadata.name) };
  }

  test('a snapshot still there when its record is about to be made is adopted', async () => {
    expect(await syncWith(true)).toEqual({ created: ['mbr-aaaaaaaa'], adopted: ['mbr-aaaaaaaa'] });
  });

  test('a snapshot retention forgot after the listing (its record just deleted) is not brought back as a record', async () => {
    expect(await syncWith(false)).toEqual({ created: [], adopted: [] });
  });
});

describe('RepositorySync while a backup completes during its listing', () => {
  test('the record written meanwhile (after its snapshot) is not reported missing; one there before the listing is', async () => {
    const records = [record('aaaaaaaa', 'p')];
    const restic = {
      // The listing shows neither snapshot; while it runs, a backup writes snapshot bbbbbbbb and then its record.
      run: async () => {
        records.push(record('bbbbbbbb', 'p'));
        return { stdout: '[]', stderr: '' };
      },
    } as unknown as Restic;
    const flagged: string[] = [];
    const client = { patchStatus: async (_r: unknown, _ns: string, name: string) => void flagged.push(name) } as unknown as KubeClient;
    const sync = new RepositorySync({
      client, locations: fakeInformer([loc]), policies: fakeInformer([policy('p')]), records: fakeInformer(records),
      secrets: fakeInformer([creds]), restic, recorder: { event: async () => undefined }, log: createLogger({ level: 'error' }),
      periodMs: 60_000, ownership: rule,
    });
    await sync.syncLocation('ns', 'loc');
    expect(flagged).toEqual(['mbr-aaaaaaaa']);
  });
});
