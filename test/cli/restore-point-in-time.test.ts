/** `kubedr restore --at/--revision`: what the flags mean, and what is refused before anything is read. */
import { describe, expect, test } from 'bun:test';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT, exitCodeFor } from '../../src/cli/exit-codes.ts';
import { type PointInTimeFlags, latestChangeChain, pointInTimeFrom, pointInTimeSummary, restoreToPoint } from '../../src/cli/restore-point-in-time.ts';
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

  test('"latest" of a policy means its last stored change when it records changes (its chain, listed once), else its newest full backup', async () => {
    const full = snapshot('f1'.repeat(8), ['etcd', ...clusterA, 'kubedr-etcd-revision=100']);
    const changes = snapshot('c1'.repeat(8), ['kubedr-changes=etcd', ...clusterA]);
    const ids = (list: { id: string }[] | undefined) => list?.map((s) => s.id);
    expect(ids(await latestChangeChain(resticListing([full, changes]).restic, repo, 'etcd', undefined))).toEqual([full.id, changes.id]);
    expect(await latestChangeChain(resticListing([full]).restic, repo, 'etcd', undefined)).toBeUndefined();
    // Another policy's changes say nothing of this one.
    expect(await latestChangeChain(resticListing([full, snapshot('d1'.repeat(8), ['kubedr-changes=other', ...clusterA])]).restic, repo, 'etcd', undefined))
      .toBeUndefined();
    // Several clusters: no, and the ordinary restore refuses that in its own words.
    const b = snapshot('b1'.repeat(8), ['kubedr-changes=etcd', ...clusterB]);
    expect(await latestChangeChain(resticListing([full, changes, b]).restic, repo, 'etcd', undefined)).toBeUndefined();
    expect(ids(await latestChangeChain(resticListing([full, changes, b]).restic, repo, 'etcd', 'prod'))).toEqual([full.id, changes.id]);
  });

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

  test('a time in a gap: not found (exit 4), naming the windows that can be restored to, before anything is downloaded', async () => {
    const t0 = Date.parse('2026-12-04T10:00:00Z');
    const min = 60_000;
    const changes = (id: string, from: number, to: number, fromTime: number, toTime: number) => snapshot(id, ['kubedr-changes=etcd', ...clusterA,
      `kubedr-revisions=${from}-${to}`, `kubedr-changes-from=${fromTime}`, `kubedr-changes-to=${toTime}`]);
    const full = (id: string, revision: number, time: number) =>
      ({ ...snapshot(id, ['etcd', ...clusterA, `kubedr-etcd-revision=${revision}`]), time: new Date(time).toISOString() });
    // Revisions 201..299 were never stored (etcd compacted them): the chain of the first full backup ends at 200, at t0 + 10 min.
    const { restic, calls } = resticListing([full('f1'.repeat(8), 100, t0), changes('c1'.repeat(8), 101, 200, t0 + min, t0 + 10 * min),
      full('f2'.repeat(8), 300, t0 + 30 * min), changes('c2'.repeat(8), 301, 400, t0 + 31 * min, t0 + 40 * min)]);
    const err = await failure(restoreToPoint(restic, { time: t0 + 20 * min }, flags()));
    expect(exitCodeFor(err)).toBe(EXIT.notFound);
    expect(err.message).toContain('cannot be restored to');
    expect(err.message).toContain('2026-12-04T10:10:00');
    expect(err.message).toContain('2026-12-04T10:30:00');
    expect(calls.every((c) => c[0] === 'snapshots')).toBe(true);
  });

  test('a target that holds data: refused with the flag this command has for replacing it (--force), nothing downloaded', async () => {
    const target = mkdtempSync(join(tmpdir(), 'kubedr-pit-'));
    try {
      mkdirSync(join(target, 'data'));
      writeFileSync(join(target, 'data', 'etcd-snapshot.db'), 'an earlier restore');
      const { restic, calls } = resticListing([snapshot('f1'.repeat(8), ['etcd', ...clusterA, 'kubedr-etcd-revision=100']),
        snapshot('c1'.repeat(8), ['kubedr-changes=etcd', ...clusterA, 'kubedr-revisions=101-200', 'kubedr-changes-from=1', 'kubedr-changes-to=2'])]);
      const err = await failure(restoreToPoint(restic, 'latest', flags({ target })));
      expect(err.message).toContain('kubedr restore --force');
      expect(exitCodeFor(err)).toBe(EXIT.exists);
      expect(calls.every((c) => c[0] === 'snapshots')).toBe(true);
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
  });
});
