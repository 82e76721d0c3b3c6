/**
 * What follows a failed verification, with fake inputs: which failures call for a check of the data, and after a check
 * that found damage, which records are marked, which policies are told and asked for a new backup. restic's side
 * (check, repair) is tested with the real restic in test/engine/repository-damage.test.ts; here it is scripted.
 */
import { describe, expect, test } from 'bun:test';
import { REPOSITORY_DAMAGED } from '../../src/api/events.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord, Secret } from '../../src/api/types.ts';
import { RepositoryRepair } from '../../src/controllers/repository-repair.ts';
import { EngineError } from '../../src/engine/errors.ts';
import type { Restic } from '../../src/engine/restic.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import type { EventRecorder } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';

const location: BackupLocation = {
  metadata: { name: 'loc', namespace: 'ns' }, spec: { url: 'https://s3.example.com', bucketName: 'backups', credentials: 'creds' }, status: { initStatus: 'Completed' },
};
const creds: Secret = { metadata: { name: 'creds', namespace: 'ns' }, data: Object.fromEntries(
  ['access_key', 'secret_key', 'restic_repo_password'].map((k) => [k, Buffer.from('x').toString('base64')])) };
const policy = (name: string): MetadataBackupPolicy => ({ metadata: { name, namespace: 'ns' }, spec: { destination: 'loc', schedule: '@daily' } } as MetadataBackupPolicy);
const record = (name: string, policyName: string, snapshotId: string, backuploc = 'loc'): MetadataBackupRecord =>
  ({ metadata: { name, namespace: 'ns' }, spec: { snapshotId, policy: policyName, backuploc } });

const BROKEN = 'f681fe07fce3623fc6d1adc5786a873d8c8d7c4dbe20c1b783e8ade2588d687c';

/** restic scripted: `check` says what `broken` says, `repair snapshots --dry-run` names `lost`. */
function setup(opts: { broken: boolean; lost: string[]; checkFails?: boolean; marked?: string[]; repairEnabled?: boolean }) {
  const calls: string[][] = [];
  const restic = {
    lockWaitMs: 0,
    exclusive: <T>(_repo: unknown, fn: () => Promise<T>) => fn(),
    run: async (_repo: unknown, args: string[]) => {
      calls.push(args);
      if (args[0] === 'check') {
        if (opts.checkFails) throw new EngineError('Unreachable', 'S3 endpoint unreachable');
        return opts.broken
          ? { stdout: `{"message_type":"summary","num_errors":1,"broken_packs":["${BROKEN}"],"suggest_repair_index":false}\n`,
            stderr: `{"message_type":"error","message":"pack ${BROKEN} contains 2 errors: [blob 87d5: ciphertext verification failed]"}\n`, code: 1 }
          : { stdout: '{"message_type":"summary","num_errors":0,"broken_packs":null}\n', stderr: '', code: 0 };
      }
      if (args[0] === 'repair' && args[1] === 'snapshots') {
        return { stdout: opts.lost.map((id) => `\nsnapshot ${id} of [/data] at t by h\n  file "/data/etcd-snapshot.db": removed missing content\nwould save new snapshot\n`).join(''), stderr: '' };
      }
      return { stdout: '', stderr: '' };
    },
  } as unknown as Restic;
  const patches: [string, unknown][] = [];
  const client = { patchStatus: async (_r: unknown, _ns: string, name: string, body: unknown) => void patches.push([name, body]) } as unknown as KubeClient;
  const events: [string, string, string, string][] = [];
  const recorder: EventRecorder = { event: async (o, type, reason, message) => void events.push([o.metadata.name, type, reason, message]) };
  const requested: string[] = [];
  const repair = new RepositoryRepair({
    client, restic, recorder, log: createLogger({ level: 'error' }), secrets: fakeInformer([creds]),
    records: fakeInformer([record('mbr-a1', 'a', 'aaaa1111'), record('mbr-a2', 'a', 'aaaa2222'), record('mbr-b1', 'b', 'bbbb1111'),
      record('mbr-x', 'a', 'cccc1111', 'elsewhere')].map((r) => (opts.marked?.includes(r.spec.snapshotId)
      ? { ...r, status: { damage: { time: '2026-12-04T22:00:00Z', message: 'earlier' } } } : r))),
    repairEnabled: opts.repairEnabled, policies: fakeInformer([policy('a'), policy('b')]), requestBackup: (k) => void requested.push(k), now: () => new Date('2026-12-04T23:00:00Z'),
  });
  return { repair, calls, patches, events, requested };
}

describe('which failed verifications call for reading the whole repository', () => {
  test('not those that never read the data: S3 away or refusing, a lock, a timeout, a cancel, a wrong password', () => {
    for (const kind of ['Unreachable', 'AccessDenied', 'Locked', 'Timeout', 'Cancelled', 'TlsError', 'WrongPassword'] as const) {
      expect(RepositoryRepair.concernsData(new EngineError(kind, 'x'))).toBe(false);
    }
  });
  test('those that may be damage: restic failing to read, a checksum that does not match, an etcd that does not start', () => {
    expect(RepositoryRepair.concernsData(new EngineError('Failed', 'ciphertext verification failed'))).toBe(true);
    expect(RepositoryRepair.concernsData(new EngineError('IntegrityError', 'SHA-256 mismatch'))).toBe(true);
    expect(RepositoryRepair.concernsData(new EngineError('Failed', 'the restored etcd did not start'))).toBe(true);
    // The Kubernetes API refusing the verification pod: the data was never read.
    expect(RepositoryRepair.concernsData(new Error('POST /api/v1/namespaces/x/pods: 422 Invalid'))).toBe(false);
  });
});

describe('after the check', () => {
  test('damage: packs repaired, the records that lost data marked (only in this location), each policy there told and backed up at once', async () => {
    const t = setup({ broken: true, lost: ['aaaa1111', 'bbbb1111'] });
    const report = await t.repair.checkAndRepair(location, new AbortController().signal);
    expect(report?.report.removedPacks).toEqual([BROKEN]);
    expect(report?.newlyDamaged.sort()).toEqual(['aaaa1111', 'bbbb1111']);
    expect(t.calls.map((c) => c.slice(0, 2).join(' '))).toEqual(['check --read-data', 'repair packs', 'repair snapshots']);
    expect(t.patches.map(([n]) => n).sort()).toEqual(['mbr-a1', 'mbr-b1']);
    expect(t.patches[0]?.[1]).toEqual({ damage: { time: '2026-12-04T23:00:00.000Z', message: expect.stringMatching(/^snapshot \w+ references data that was damaged .* does not restore \(restic check: pack f681fe07/) } });
    expect(t.events.map((e) => [e[0], e[1], e[2]]).sort()).toEqual([['a', 'Warning', REPOSITORY_DAMAGED], ['b', 'Warning', REPOSITORY_DAMAGED]]);
    expect(t.events.find((e) => e[0] === 'a')?.[3]).toBe('BackupLocation loc\'s repository held damaged data (restic check: pack ' + BROKEN +
      ' contains 2 errors: [blob 87d5: ciphertext verification failed]). Repaired: 1 damaged pack file(s) removed after salvaging their intact data. ' +
      '1 backup(s) of this policy lost data and do not restore: aaaa1111 (status.damage on their records). A new backup is being taken now, storing fresh copies.');
    expect(t.requested.sort()).toEqual(['ns/a', 'ns/b']);
  });

  test('only backups marked before still reference lost data (no damaged pack): nothing new, no event, no backup', async () => {
    const t = setup({ broken: false, lost: ['aaaa1111'], marked: ['aaaa1111'] });
    const known = { errors: 2, brokenPacks: [], repairIndex: false, messages: ['tree 6a5b: blob 87d5 not found in index'] };
    const outcome = await t.repair.checkAndRepair(location, new AbortController().signal, known);
    expect(outcome?.knownDamaged).toEqual(['aaaa1111']);
    expect(outcome?.newlyDamaged).toEqual([]);
    // The check given is used, not made again: only the snapshots are looked at.
    expect(t.calls.map((c) => c.slice(0, 2).join(' '))).toEqual(['repair snapshots']);
    expect([t.patches, t.events, t.requested]).toEqual([[], [], []]);
  });

  test('repair turned off (--repair-damage=false): the damage is reported with the command that repairs it; nothing changed, marked or backed up', async () => {
    const t = setup({ broken: true, lost: ['aaaa1111'], repairEnabled: false });
    await t.repair.checkAndRepair(location, new AbortController().signal);
    expect(t.calls.map((c) => c[0])).toEqual(['check']);
    expect(t.events.map((e) => e[0]).sort()).toEqual(['a', 'b']);
    expect(t.events[0]?.[3]).toContain(`Not repaired (--repair-damage=false): backups may deduplicate against the damaged data until it is. To repair: restic -r s3:https://s3.example.com/backups repair packs ${BROKEN}, then take a backup.`);
    expect([t.patches, t.requested]).toEqual([[], []]);
  });

  test('no damage found: nothing repaired, marked, told or backed up (the verification failed for another reason)', async () => {
    const t = setup({ broken: false, lost: [] });
    expect((await t.repair.checkAndRepair(location, new AbortController().signal))?.report.check.errors).toBe(0);
    expect(t.calls.map((c) => c[0])).toEqual(['check']);
    expect([t.patches, t.events, t.requested]).toEqual([[], [], []]);
  });

  test('the check itself fails (S3 went away): nothing is decided, nothing marked', async () => {
    const t = setup({ broken: true, lost: ['aaaa1111'], checkFails: true });
    expect(await t.repair.checkAndRepair(location, new AbortController().signal)).toBeUndefined();
    expect([t.patches, t.events, t.requested]).toEqual([[], [], []]);
  });
});
