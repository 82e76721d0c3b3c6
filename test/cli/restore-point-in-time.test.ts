/** `kubedr restore --at/--revision`: what the flags mean, and what is refused before anything is read. */
import { describe, expect, test } from 'bun:test';
import { EXIT, exitCodeFor } from '../../src/cli/exit-codes.ts';
import { type PointInTimeFlags, pointInTimeFrom, pointInTimeSummary, restoreToPoint } from '../../src/cli/restore-point-in-time.ts';
import type { Repository, Restic } from '../../src/engine/restic.ts';

describe('pointInTimeFrom', () => {
  test('neither flag: an ordinary restore', () => {
    expect(pointInTimeFrom(undefined, undefined)).toBeUndefined();
  });

  test('a time with its zone, "latest", or a revision', () => {
    expect(pointInTimeFrom('2026-12-04T14:03:27Z', undefined)).toEqual({ time: Date.parse('2026-12-04T14:03:27Z') });
    expect(pointInTimeFrom('2026-12-04T15:03:27+01:00', undefined)).toEqual({ time: Date.parse('2026-12-04T14:03:27Z') });
    expect(pointInTimeFrom('latest', undefined)).toBe('latest');
    expect(pointInTimeFrom(undefined, 1042)).toEqual({ revision: 1042 });
  });

  test('refused: a time without a zone (it would depend on the machine), not a time, both flags, a revision that is not one', () => {
    expect(() => pointInTimeFrom('2026-12-04T14:03:27', undefined)).toThrow(/RFC 3339 with a zone/);
    expect(() => pointInTimeFrom('yesterday', undefined)).toThrow(/is not a time/);
    expect(() => pointInTimeFrom('latest', 5)).toThrow(/give one/);
    expect(() => pointInTimeFrom(undefined, 0)).toThrow(/not an etcd revision/);
  });
});

test('the summary says what was rebuilt from what, the snapshot\'s checksum, and the next command', () => {
  const text = pointInTimeSummary({
    baseSnapshot: 'abcdef1234567890', baseRevision: 100, revision: 250, time: Date.parse('2026-12-04T14:03:27Z'), revisionsApplied: 150,
    changesApplied: 170, changeSetsRead: 3, sha256: 'f'.repeat(64), size: 4096, files: 3, bytes: 5000, replaySecs: 1.5, durationSecs: 4.2,
  }, '/r/data/etcd-snapshot.db');
  expect(text).toContain('as it was at 2026-12-04T14:03:27.000Z (revision 250): full backup abcdef12 (revision 100) and 170 changes in 150 revisions from 3 change set(s)');
  expect(text).toContain(`SHA-256 ${'f'.repeat(64)}`);
  expect(text).toContain('Next: kubedr etcd-restore --snapshot /r/data/etcd-snapshot.db --help');
});

describe('restoreToPoint refuses before reading any change set', () => {
  // A local address: no S3 bucket check, and the fake restic answers only the one listing these refusals need.
  const repo: Repository = { address: '/nonexistent/repo', password: 'p', accessKey: 'a', secretKey: 's' };
  const snapshot = (id: string, tags: string[]) => ({ id, short_id: id.slice(0, 8), time: '2026-12-04T14:00:00Z', hostname: 'h', tags, paths: ['/data'] });
  function resticListing(list: object[]) {
    const calls: string[][] = [];
    const restic = {
      run: async (_repo: Repository, args: string[]) => {
        calls.push(args);
        if (args[0] !== 'snapshots') throw new Error(`unexpected restic ${args.join(' ')}: a refusal must come from the listing alone`);
        return { stdout: JSON.stringify(list), stderr: '' };
      },
    } as unknown as Restic;
    return { restic, calls };
  }
  const clusterA = ['kubedr-cluster-id=aaaa1111', 'kubedr-cluster=prod', 'kubedr-namespace=kubedr'];
  const clusterB = ['kubedr-cluster-id=bbbb2222', 'kubedr-cluster=staging', 'kubedr-namespace=kubedr'];
  const flags = (over: Partial<PointInTimeFlags> = {}): PointInTimeFlags =>
    ({ repo, policy: 'etcd', cluster: undefined, target: '/nonexistent/target', overwrite: false, signal: new AbortController().signal, onStep: () => undefined, ...over });
  const failure = async (p: Promise<unknown>) => p.then(() => { throw new Error('expected a refusal'); }, (e: unknown) => e as Error);

  test('without --policy: a usage error (exit 2) saying why, without listing the repository', async () => {
    const { restic, calls } = resticListing([]);
    const err = await failure(restoreToPoint(restic, 'latest', flags({ policy: undefined })));
    expect(err.message).toContain('needs --policy');
    expect(exitCodeFor(err)).toBe(EXIT.usage);
    expect(calls).toEqual([]);
  });

  test('a policy with only full backups: "not a continuous policy", the not-found code, and what it can restore to instead', async () => {
    const { restic } = resticListing([snapshot('f1'.repeat(8), ['etcd', ...clusterA, 'kubedr-etcd-revision=100'])]);
    const err = await failure(restoreToPoint(restic, { time: Date.parse('2026-12-04T14:03:27Z') }, flags()));
    expect(err.message).toContain('policy "etcd" has no stored changes: it is not a continuous policy');
    expect(err.message).toContain('kubedr restore <snapshot-id|latest>');
    expect(exitCodeFor(err)).toBe(EXIT.notFound);
  });

  test('no backups of the policy at all: not found, naming the policy', async () => {
    const { restic } = resticListing([snapshot('f1'.repeat(8), ['other', ...clusterA])]);
    const err = await failure(restoreToPoint(restic, 'latest', flags()));
    expect(err.message).toContain('no backups of policy "etcd"');
    expect(exitCodeFor(err)).toBe(EXIT.notFound);
  });

  test('two clusters\' chains of the policy in one bucket: both named, and --cluster asked for (exit 2)', async () => {
    const { restic } = resticListing([
      snapshot('a1'.repeat(8), ['kubedr-changes=etcd', ...clusterA]),
      snapshot('b1'.repeat(8), ['kubedr-changes=etcd', ...clusterB]),
    ]);
    const err = await failure(restoreToPoint(restic, 'latest', flags()));
    expect(err.message).toContain('several clusters or installs');
    expect(err.message).toContain('prod');
    expect(err.message).toContain('staging');
    expect(err.message).toContain('--cluster');
    expect(exitCodeFor(err)).toBe(EXIT.usage);
  });

  test('--cluster picks one of them: the refusal is no longer about clusters', async () => {
    // Only cluster A's full backup is listed without a change set of its own, so the next check speaks: the choice was made.
    const { restic } = resticListing([
      snapshot('a1'.repeat(8), ['etcd', ...clusterA, 'kubedr-etcd-revision=100']),
      snapshot('b1'.repeat(8), ['kubedr-changes=etcd', ...clusterB]),
    ]);
    const err = await failure(restoreToPoint(restic, 'latest', flags({ cluster: 'prod' })));
    expect(err.message).toContain('not a continuous policy');
  });
});
