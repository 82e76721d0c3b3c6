import { describe, expect, test } from 'bun:test';
import { EngineError } from '../../src/engine/errors.ts';
import { parseRestoreOutcome, pickSnapshot } from '../../src/engine/restore.ts';
import type { SnapshotInfo } from '../../src/engine/restic-output.ts';

const snap = (id: string, tag: string, time: string): SnapshotInfo =>
  ({ id, shortId: id.slice(0, 8), time, hostname: 'cp-1', tags: [tag], paths: ['/data'] });
// Newest first, as listSnapshots returns them.
const two = [
  snap('bbbb2222cccc', 'daily', '2026-11-25T03:00:00Z'),
  snap('aaaa1111dddd', 'daily', '2026-11-24T03:00:00Z'),
];
const mixed = [snap('cccc3333eeee', 'hourly', '2026-11-25T04:00:00Z'), ...two];

const kindOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err instanceof EngineError ? `${err.kind}: ${err.message}` : String(err);
  }
  return 'no error';
};

describe('pickSnapshot', () => {
  test('latest is the newest snapshot of the only policy', () => {
    expect(pickSnapshot(two, 'latest').id).toBe('bbbb2222cccc');
  });
  test('latest among several policies needs a policy, and names them', () => {
    expect(kindOf(() => pickSnapshot(mixed, 'latest'))).toBe(
      'InvalidInput: "latest" is ambiguous: the repository holds backups of several policies (daily, hourly); choose one with --policy');
    expect(pickSnapshot(mixed, 'latest', 'daily').id).toBe('bbbb2222cccc');
  });
  test('an id prefix picks its snapshot; an ambiguous or unknown one is an error', () => {
    expect(pickSnapshot(mixed, 'aaaa1111').id).toBe('aaaa1111dddd');
    expect(kindOf(() => pickSnapshot([...mixed, snap('aaaa1111ffff', 'x', '2026-01-01T00:00:00Z')], 'aaaa1111'))).toMatch(/^InvalidInput: .*ambiguous/);
    expect(kindOf(() => pickSnapshot(mixed, 'deadbeef'))).toBe('NotFound: no snapshot "deadbeef" in the repository');
  });
  test('an id of another policy is not found when a policy is given', () => {
    expect(kindOf(() => pickSnapshot(mixed, 'cccc3333', 'daily'))).toBe('NotFound: no snapshot "cccc3333" of policy "daily" in the repository');
  });
  test('no snapshots, or not an id', () => {
    expect(kindOf(() => pickSnapshot([], 'latest'))).toBe('NotFound: no snapshots in the repository');
    expect(kindOf(() => pickSnapshot(two, 'yesterday'))).toMatch(/^InvalidInput: "yesterday" is not a snapshot id/);
  });
});

describe('parseRestoreOutcome', () => {
  test('reads the JSON a restore run writes, and nothing else', () => {
    expect(parseRestoreOutcome('{"ok":false,"error":"wrong repository password","exitCode":3}'))
      .toEqual({ ok: false, error: 'wrong repository password', exitCode: 3 });
    expect(parseRestoreOutcome('panic: runtime error')).toBeUndefined();
    expect(parseRestoreOutcome('{"truncated')).toBeUndefined();
    expect(parseRestoreOutcome(undefined)).toBeUndefined();
  });
});
