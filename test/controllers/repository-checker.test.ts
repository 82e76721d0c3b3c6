/** The scheduled check's decisions with fake inputs: when it is due, and what each outcome writes and sets off. */
import { describe, expect, test } from 'bun:test';
import { REPOSITORY_CHECK_FAILED } from '../../src/api/events.ts';
import type { BackupLocation, Secret } from '../../src/api/types.ts';
import { RepositoryChecker, checkDue } from '../../src/controllers/repository-checker.ts';
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

describe('checkDue', () => {
  const h = 3_600_000;
  test('an interval after the last check, or after this process started when none is recorded; never when off', () => {
    expect(checkDue({ lastCheck: 0 + 1, startedAt: 0, now: 24 * h, intervalMs: 24 * h })).toBe(false);
    expect(checkDue({ lastCheck: 1, startedAt: 0, now: 24 * h + 1, intervalMs: 24 * h })).toBe(true);
    expect(checkDue({ lastCheck: undefined, startedAt: 10 * h, now: 24 * h, intervalMs: 24 * h })).toBe(false);
    expect(checkDue({ lastCheck: undefined, startedAt: 0, now: 24 * h, intervalMs: 24 * h })).toBe(true);
    expect(checkDue({ lastCheck: undefined, startedAt: 0, now: 100 * h, intervalMs: 0 })).toBe(false);
  });
});

function setup(check: { errors: number; broken?: boolean } | Error) {
  const args: string[][] = [];
  const restic = {
    lockWaitMs: 0,
    run: async (_repo: unknown, a: string[]) => {
      args.push(a);
      if (check instanceof Error) throw check;
      return { stdout: `{"message_type":"summary","num_errors":${check.errors},"broken_packs":${check.broken ? '["1234"]' : 'null'}}\n`,
        stderr: check.errors ? '{"message_type":"error","message":"pack 1234 contains 1 errors"}\n' : '', code: check.errors ? 1 : 0 };
    },
  } as unknown as Restic;
  const patches: unknown[] = [];
  const client = { patchStatus: async (_r: unknown, _ns: string, _n: string, body: unknown) => void patches.push(body) } as unknown as KubeClient;
  const events: [string, string][] = [];
  const recorder: EventRecorder = { event: async (_o, type, reason) => void events.push([type, reason]) };
  const repaired: [string, boolean][] = [];
  let held = 0;
  const checker = new RepositoryChecker({
    client, locations: fakeInformer([location]), secrets: fakeInformer([creds]), restic, recorder, log: createLogger({ level: 'error' }),
    repair: { checkAndRepair: async (l, _s, known) => {
      repaired.push([l.metadata.name, known === undefined]);
      return known ? { report: { check: known, removedPacks: [], indexRebuilt: false, damagedSnapshots: ['aaaa1111'] }, newlyDamaged: [], knownDamaged: ['aaaa1111'] } : undefined;
    } },
    acquire: async () => { held++; return () => { held--; }; }, intervalMs: 60_000, subset: '5%', now: () => new Date('2026-12-04T23:00:00Z'),
  });
  return { check: () => checker.check(location, new AbortController().signal), args, patches, events, repaired, held: () => held };
}

describe('a scheduled check', () => {
  test('reads the configured subset; no errors: Passed in the location\'s status, nothing else', async () => {
    const t = setup({ errors: 0 });
    expect(await t.check()).toBe('Passed');
    expect(t.args).toEqual([['check', '--read-data-subset=5%', '--json']]);
    expect(t.patches).toEqual([{ lastCheckTime: '2026-12-04T23:00:00.000Z', lastCheckResult: 'Passed', lastCheckMessage: expect.stringMatching(/^read 5% of the data in [\d.]+ s: no errors$/) }]);
    expect([t.events, t.repaired, t.held()]).toEqual([[], [], 0]);
  });

  test('a damaged pack: the whole repository read and repaired (RepositoryRepair), Damaged in the status', async () => {
    const t = setup({ errors: 1, broken: true });
    expect(await t.check()).toBe('Damaged');
    expect(t.repaired).toEqual([['loc', true]]);
    expect(t.patches[0]).toMatchObject({ lastCheckResult: 'Damaged', lastCheckMessage: expect.stringContaining('1 error(s) (pack 1234 contains 1 errors); the whole repository was read and repaired') });
    expect(t.held()).toBe(0);
  });

  test('no damaged pack, but backups referencing lost data: no full read; Damaged, naming them and what to do', async () => {
    const t = setup({ errors: 1 });
    expect(await t.check()).toBe('Damaged');
    expect(t.repaired).toEqual([['loc', false]]);
    expect(t.patches[0]).toMatchObject({ lastCheckResult: 'Damaged', lastCheckMessage: expect.stringContaining('no damaged pack, but 1 backup(s) reference lost data and do not restore (aaaa1111; status.damage on their records): delete those records') });
  });

  test('a check that cannot run (S3 away): Failed in the status and a Warning event; the slot is given back', async () => {
    const t = setup(new EngineError('Unreachable', 'S3 endpoint unreachable: https://s3.example.com'));
    expect(await t.check()).toBe('Failed');
    expect(t.patches[0]).toMatchObject({ lastCheckResult: 'Failed', lastCheckMessage: 'checking the repository\'s data failed: S3 endpoint unreachable: https://s3.example.com' });
    expect(t.events).toEqual([['Warning', REPOSITORY_CHECK_FAILED]]);
    expect([t.repaired, t.held()]).toEqual([[], 0]);
  });
});
