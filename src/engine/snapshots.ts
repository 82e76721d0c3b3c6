/** @module Listing and expiring restic snapshots. */
import { parseSnapshots, parseStats, type SnapshotInfo } from './restic-output.ts';
import type { Repository, Restic, RunOptions } from './restic.ts';
import { withStaleLockRetry } from './repository.ts';

/**
 * Snapshots in the repository, newest first; only those carrying `tag` when given. `readOnly` takes no lock: a listing
 * must neither wait for a backup's lock nor, if killed, leave a stale lock that blocks the next backup.
 */
export async function listSnapshots(restic: Restic, repo: Repository, run: RunOptions = {}, opts: { tag?: string; readOnly?: boolean } = {}): Promise<SnapshotInfo[]> {
  const args = ['snapshots', '--json', ...(opts.readOnly ? ['--no-lock'] : []), ...(opts.tag ? ['--tag', opts.tag] : [])];
  const { stdout } = await restic.run(repo, args, run);
  return parseSnapshots(stdout).sort((a, b) => Date.parse(b.time) - Date.parse(a.time));
}

/**
 * Forgets the snapshots, in one run for the whole batch, under the repository's lock. Ids that are already gone are
 * ignored by restic, so this is idempotent. Forgetting is quick; the data goes with the next prune (pruneRepository),
 * which runs on its own cadence, off the backup path.
 */
export async function forgetSnapshots(restic: Restic, repo: Repository, ids: string[], run: RunOptions = {}): Promise<void> {
  if (ids.length === 0) return;
  await restic.exclusive(repo, () => withStaleLockRetry(restic, repo, () => restic.run(repo, ['forget', ...ids], run)));
}

/** Removes the data no snapshot references any more (after forgets). Slow on a big repository: minutes to an hour. */
export async function pruneRepository(restic: Restic, repo: Repository, run: RunOptions = {}): Promise<void> {
  await restic.exclusive(repo, () => withStaleLockRetry(restic, repo,
    () => restic.run(repo, ['prune'], { ...run, timeoutMs: run.timeoutMs ?? 60 * 60_000 })));
}

/** Bytes a restore of the snapshot writes (restic 0.14's `snapshots` does not report sizes). */
export async function snapshotSize(restic: Restic, repo: Repository, id: string, run: RunOptions = {}): Promise<number> {
  const { stdout } = await restic.run(repo, ['stats', '--json', id], run);
  return parseStats(stdout).totalSize;
}

/** Whether the repository still holds the snapshot (restic lists nothing, and exits 0, for an unknown id). */
export async function snapshotExists(restic: Restic, repo: Repository, id: string, run: RunOptions = {}): Promise<boolean> {
  const { stdout } = await restic.run(repo, ['snapshots', '--json', id], run);
  return parseSnapshots(stdout).length > 0;
}
