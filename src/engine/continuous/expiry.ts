/**
 * @module Change sets go with the full backups they continue: once retention forgot a policy's older full backups,
 * the change sets that end at or before the oldest one left can serve no restore and are forgotten too. Called after
 * retention (so it also happens for a policy whose continuous backup was turned off) and now and then while a
 * recorder stores (a retry of one that failed).
 */
import type { BackupOrigin } from '../origin.ts';
import type { Repository, Restic } from '../restic.ts';
import { forgetSnapshots } from '../snapshots.ts';
import { listChain } from './change-store.ts';
import { expiredChangeSets } from './window.ts';

export interface ChangeSetExpiry {
  /** Change sets forgotten (their data goes with the next prune). */
  forgotten: number;
  /** The oldest full backup's revision, which they ended at or before. */
  oldestFullRevision?: number;
}

export async function forgetExpiredChangeSets(restic: Restic, repo: Repository, policy: string, origin: BackupOrigin | undefined,
  signal?: AbortSignal): Promise<ChangeSetExpiry> {
  const { fulls, sets } = await listChain(restic, repo, policy, origin, { signal });
  const old = expiredChangeSets(fulls, sets).map((s) => s.id);
  if (old.length === 0) return { forgotten: 0 };
  const { forgotten } = await forgetSnapshots(restic, repo, old, { origin, run: { signal } });
  return { forgotten: forgotten.length, oldestFullRevision: fulls[0]?.revision };
}
