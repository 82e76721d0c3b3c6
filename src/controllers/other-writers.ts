/**
 * @module Before a new leader calls a backup that an earlier leader left `Running` "interrupted", it waits until that
 * backup can no longer store a snapshot. A deposed leader's restic is a process of its own: while the old controller is
 * frozen (or cut off from the API server but not from S3) it may still finish its upload. restic holds a
 * non-exclusive lock for as long as it runs and refreshes it, so the resolution waits (bounded) while such a lock of
 * another host is in the repository, then looks for the snapshot. A snapshot stored after the wait runs out is still
 * adopted by a later repository sync.
 */
import { hostname } from 'node:os';
import { type LockInfo, listLocks, removeStaleLocks } from '../engine/repository.ts';
import type { Repository, Restic } from '../engine/restic.ts';
import type { Logger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';

/** This process as restic's locks name it: the host name restic writes, and the process ids of our running restic. */
export interface OwnWriter {
  hostname: string;
  pids: ReadonlySet<number>;
}

/**
 * Locks that may be an unfinished backup of an earlier leader: non-exclusive (a backup's) and not this process's own
 * running restic. Dead writers' locks on this host are gone already (restic's stale rule runs first), so a lock of this
 * host that remains belongs to a live process: another controller's restic (two replicas on one machine), which counts.
 */
export function othersBackupLocks(locks: LockInfo[], own: OwnWriter): LockInfo[] {
  return locks.filter((l) => !l.exclusive && !(l.hostname === own.hostname && own.pids.has(l.pid)));
}

/** Waits until no other host's backup lock is left, or `maxWaitMs` passed; returns the locks still there (empty: none). */
export async function waitForOtherWriters(restic: Restic, repo: Repository,
  opts: { maxWaitMs: number; pollMs?: number; signal?: AbortSignal; log: Logger }): Promise<LockInfo[]> {
  const deadline = Date.now() + opts.maxWaitMs;
  for (;;) {
    await removeStaleLocks(restic, repo, { signal: opts.signal });
    const held = othersBackupLocks(await listLocks(restic, repo, { signal: opts.signal }), { hostname: hostname(), pids: restic.livePids() });
    if (held.length === 0 || Date.now() >= deadline || opts.signal?.aborted) return held;
    opts.log.info('an unfinished backup may still be uploading: waiting for its lock to go before judging it', {
      holders: held.map((l) => `PID ${l.pid} on ${l.hostname} since ${l.time}`),
    });
    await sleep(Math.min(opts.pollMs ?? 3_000, Math.max(deadline - Date.now(), 0)), opts.signal);
  }
}
