/**
 * @module A repository's keys (restic `key list|add|remove`): each opens the repository with its own password. Used by
 * the controller's key rotation and by `kubedr rotate-key`. Passwords go to restic in private files (restic.ts).
 */
import { EngineError } from './errors.ts';
import { withLockWait } from './repository.ts';
import type { Repository, Restic, RunOptions } from './restic.ts';

/** One repository key as `restic key list --json` shows it; `current` is the key the password used opens. */
export interface RepoKey {
  id: string;
  current: boolean;
}

/** The keys `repo.password` sees, and which one it opens. */
export async function listKeys(restic: Restic, repo: Repository, run: RunOptions = {}): Promise<RepoKey[]> {
  const { stdout } = await restic.run(repo, ['key', 'list', '--json', '--no-lock'], run);
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed)) throw new EngineError('Failed', 'restic key list --json printed no list');
  return parsed.map((k: { id?: unknown; current?: unknown }) => ({ id: String(k.id ?? ''), current: k.current === true }));
}

/** The key `password` opens, or undefined when it opens none. */
export async function keyOf(restic: Restic, repo: Repository, password: string, run: RunOptions = {}): Promise<string | undefined> {
  try {
    return (await listKeys(restic, { ...repo, password }, run)).find((k) => k.current)?.id;
  } catch (err) {
    if (err instanceof EngineError && err.kind === 'WrongPassword') return undefined;
    throw err;
  }
}

/**
 * Adds `newPassword` as a key (opened with `repo.password`) and returns the new key's id, proven by opening the
 * repository with it. Waits for another writer's lock as any write does.
 */
export async function addKey(restic: Restic, repo: Repository, newPassword: string, who: { host: string; user: string }, run: RunOptions = {}): Promise<string> {
  await withLockWait(restic, repo, () => restic.run(repo, ['key', 'add', '--host', who.host, '--user', who.user], { ...run, newPassword }), { signal: run.signal });
  const id = await keyOf(restic, repo, newPassword, run);
  if (!id) throw new EngineError('Failed', 'restic key add succeeded, but the new password does not open the repository');
  return id;
}

/** Removes the key `id` (restic refuses to remove the key `repo.password` opens). restic takes an exclusive lock for it. */
export async function removeKey(restic: Restic, repo: Repository, id: string, run: RunOptions = {}): Promise<void> {
  await withLockWait(restic, repo, () => restic.run(repo, ['key', 'remove', id], run), { signal: run.signal });
}
