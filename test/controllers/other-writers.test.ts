/** A new leader's wait for an earlier leader's upload: which locks count, and that the wait ends (lock gone, or time up). */
import { describe, expect, test } from 'bun:test';
import { othersBackupLocks, waitForOtherWriters } from '../../src/controllers/other-writers.ts';
import type { LockInfo } from '../../src/engine/repository.ts';
import type { Restic } from '../../src/engine/restic.ts';
import { createLogger } from '../../src/util/log.ts';

const lock = (hostname: string, exclusive = false, id = 'a'.repeat(64)): LockInfo => ({ id, time: '2026-12-04T18:00:00Z', exclusive, hostname, pid: 42 });
const repo = { address: 's3:https://s3/b', password: 'p', accessKey: 'a', secretKey: 's' };
const log = createLogger({ level: 'error' });

/** A restic whose repository holds `lockSets[i]` at the i-th listing (the last set stays). */
function resticWith(lockSets: LockInfo[][]) {
  const calls: string[] = [];
  let listing = 0;
  let current: LockInfo[] = [];
  const restic = {
    livePids: () => new Set<number>(),
    run: async (_repo: unknown, args: string[]) => {
      calls.push(args.slice(0, 2).join(' '));
      if (args[0] === 'list') {
        current = lockSets[Math.min(listing++, lockSets.length - 1)]!;
        return { stdout: current.map((l) => l.id).join('\n'), stderr: '' };
      }
      if (args[0] === 'cat') return { stdout: JSON.stringify(current.find((l) => l.id === args[2])), stderr: '' };
      return { stdout: '', stderr: '' };
    },
  } as unknown as Restic;
  return { restic, calls };
}

describe('an earlier leader\'s unfinished upload', () => {
  test('counts backup (non-exclusive) locks, but not those of this process\'s own running restic', () => {
    const mine = { ...lock('cp-1'), pid: 7 };
    const sameHostOtherProcess = { ...lock('cp-1'), pid: 8 };
    expect(othersBackupLocks([mine, sameHostOtherProcess, lock('cp-2'), lock('cp-3', true)], { hostname: 'cp-1', pids: new Set([7]) }))
      .toEqual([sameHostOtherProcess, lock('cp-2')]);
  });

  test('the wait ends when the other host\'s lock is gone; stale locks are cleared by restic\'s rule first', async () => {
    const { restic, calls } = resticWith([[lock('cp-2', false, 'b'.repeat(64))], [lock('cp-2', false, 'b'.repeat(64))], []]);
    const left = await waitForOtherWriters(restic, repo, { maxWaitMs: 5_000, pollMs: 10, log });
    expect(left).toEqual([]);
    expect(calls.filter((c) => c === 'list locks').length).toBe(3);
    expect(calls[0]).toBe('unlock');
  });

  test('the wait is bounded: a lock that stays is returned after maxWaitMs', async () => {
    const { restic } = resticWith([[lock('cp-2', false, 'c'.repeat(64))]]);
    const started = performance.now();
    const left = await waitForOtherWriters(restic, repo, { maxWaitMs: 200, pollMs: 50, log });
    expect(left.map((l) => l.hostname)).toEqual(['cp-2']);
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});
