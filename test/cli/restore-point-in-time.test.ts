/** `kubedr restore --at/--revision`: what the flags mean, and what is refused before anything is read. */
import { describe, expect, test } from 'bun:test';
import { pointInTimeFrom, pointInTimeSummary } from '../../src/cli/restore-point-in-time.ts';

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
