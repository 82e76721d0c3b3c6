/** @module Listing and expiring restic snapshots. */
import { type BackupOrigin, clusterLabel, isChangeSet, ownership } from './origin.ts';
import { parseSnapshots, parseStats, type SnapshotInfo } from './restic-output.ts';
import type { Repository, Restic, RunOptions } from './restic.ts';
import { withLockWait } from './repository.ts';

/**
 * Full backups in the repository, newest first; only those carrying `tag` when given. `readOnly` takes no lock: a
 * listing must neither wait for a backup's lock nor, if killed, leave a stale lock that blocks the next backup.
 * `changeSets` lists the change sets of continuous backup instead (never mixed with full backups: nothing that
 * adopts, forgets or restores full backups may take one for a backup).
 */
export async function listSnapshots(restic: Restic, repo: Repository, run: RunOptions = {},
  opts: { tag?: string; readOnly?: boolean; changeSets?: boolean } = {}): Promise<SnapshotInfo[]> {
  const args = ['snapshots', '--json', ...(opts.readOnly ? ['--no-lock'] : []), ...(opts.tag ? ['--tag', opts.tag] : [])];
  const { stdout } = await restic.run(repo, args, run);
  return parseSnapshots(stdout).filter((s) => isChangeSet(s.tags) === (opts.changeSets ?? false))
    .sort((a, b) => Date.parse(b.time) - Date.parse(a.time));
}

export interface ForgetResult {
  /** Ids given to restic forget (ids already gone included: restic ignores them). */
  forgotten: string[];
  /** Ids left alone because another cluster or install took them, with whose they are. */
  foreign: { id: string; cluster: string }[];
}

/**
 * Forgets the snapshots, in one run for the whole batch, under the repository's lock. Ids that are already gone are
 * ignored by restic, so this is idempotent. Forgetting is quick; the data goes with the next prune (pruneRepository),
 * which runs on its own cadence, off the backup path.
 *
 * With `origin`, a snapshot that another cluster or install took is never forgotten, whatever asked for it (a record
 * adopted by an earlier version that did not tell clusters apart may point at one): the ids are looked up first,
 * without a lock, and the foreign ones are returned instead.
 */
export async function forgetSnapshots(restic: Restic, repo: Repository, ids: string[],
  opts: { run?: RunOptions; origin?: BackupOrigin } = {}): Promise<ForgetResult> {
  if (ids.length === 0) return { forgotten: [], foreign: [] };
  const run = opts.run ?? {};
  const foreign: ForgetResult['foreign'] = [];
  if (opts.origin) {
    const origin = opts.origin;
    const { stdout } = await restic.run(repo, ['snapshots', '--json', '--no-lock', ...ids], run);
    for (const snap of parseSnapshots(stdout)) {
      if (ownership(snap.tags, origin) !== 'foreign') continue;
      const id = ids.find((i) => snap.id.startsWith(i));
      if (id) foreign.push({ id, cluster: clusterLabel(snap.tags) });
    }
  }
  const forgotten = ids.filter((i) => !foreign.some((f) => f.id === i));
  if (forgotten.length > 0) {
    await restic.exclusive(repo, () => withLockWait(restic, repo, () => restic.run(repo, ['forget', ...forgotten], run), { signal: run.signal }),
      `a forget of ${forgotten.length} snapshot(s) in ${repo.address}`);
  }
  return { forgotten, foreign };
}

/** Removes the data no snapshot references any more (after forgets). Slow on a big repository: minutes to an hour. */
export async function pruneRepository(restic: Restic, repo: Repository, run: RunOptions = {}): Promise<void> {
  await restic.exclusive(repo, () => withLockWait(restic, repo,
    () => restic.run(repo, ['prune'], { ...run, timeoutMs: run.timeoutMs ?? 60 * 60_000 }), { signal: run.signal }), `a prune of ${repo.address}`);
}

/** Bytes a restore of the snapshot writes (restic 0.14's `snapshots` does not report sizes). */
export async function snapshotSize(restic: Restic, repo: Repository, id: string, run: RunOptions = {}): Promise<number> {
  const { stdout } = await restic.run(repo, ['stats', '--json', '--no-lock', id], run);
  return parseStats(stdout).totalSize;
}

/** Whether the repository still holds the snapshot (restic lists nothing, and exits 0, for an unknown id). */
export async function snapshotExists(restic: Restic, repo: Repository, id: string, run: RunOptions = {}): Promise<boolean> {
  // No lock: a lookup must not fail while a prune holds the repository exclusively.
  const { stdout } = await restic.run(repo, ['snapshots', '--json', '--no-lock', id], run);
  return parseSnapshots(stdout).length > 0;
}
