/** @module Listing and expiring restic snapshots. */
import { parseSnapshots, parseStats, type SnapshotInfo } from './restic-output.ts';
import type { Repository, Restic, RunOptions } from './restic.ts';
import { withStaleLockRetry } from './repository.ts';

/** Snapshots in the repository, newest first; only those carrying `tag` when given. */
export async function listSnapshots(restic: Restic, repo: Repository, tag?: string, run: RunOptions = {}): Promise<SnapshotInfo[]> {
  const { stdout } = await restic.run(repo, ['snapshots', '--json', ...(tag ? ['--tag', tag] : [])], run);
  return parseSnapshots(stdout).sort((a, b) => Date.parse(b.time) - Date.parse(a.time));
}

/**
 * Forgets the snapshots and prunes unreferenced data, in one run for the whole batch, under the repository's lock.
 * Ids that are already gone are ignored by restic, so this is idempotent.
 */
export async function forgetSnapshots(restic: Restic, repo: Repository, ids: string[], run: RunOptions = {}): Promise<void> {
  if (ids.length === 0) return;
  await restic.exclusive(repo, () => withStaleLockRetry(restic, repo, async () => {
    await restic.run(repo, ['forget', ...ids], run);
    await restic.run(repo, ['prune'], { ...run, timeoutMs: run.timeoutMs ?? 60 * 60_000 });
  }));
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
