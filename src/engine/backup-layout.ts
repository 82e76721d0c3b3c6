/**
 * @module What a backup holds and where: the paths under `data/` that every backup has, whether restic stored them as
 * files (a staged backup) or inside one tar archive (a streamed one, engine/backup-archive.ts). A restore always lays
 * them out on disk this way.
 */
import { isAbsolute, join, normalize } from 'node:path';

export const SNAPSHOT_FILE = 'etcd-snapshot.db';
/**
 * Under `data/`, beside the snapshot: the etcd members when it was taken (JSON, engine/etcd-members.ts EtcdMember[]),
 * so a restore from S3 alone knows how many members to recreate. Backups taken before it was written lack it.
 */
export const MEMBERS_FILE = 'etcd-members.json';
export const CERTS_DIR = 'certificates';
export const DATA_DIR = 'data';
/** Under `data/`: the policy's extraPaths, each at its host path (`data/extra/etc/kubernetes/enc/…`). */
export const EXTRA_DIR = 'extra';
/**
 * The one file of a streamed backup (restic's `--stdin-filename`): a tar archive of the paths above. A snapshot whose
 * paths are this file is read by extracting it; any other is a staged backup of `data/`.
 */
export const ARCHIVE_FILE = 'kubedr-backup.tar';

/** Whether a restic snapshot holds a streamed backup (its only path is the archive). */
export function isArchiveSnapshot(paths: readonly string[]): boolean {
  return paths.length === 1 && paths[0] === `/${ARCHIVE_FILE}`;
}

/** Where a host path of extraPaths is stored, relative to `data/`: `extra/<path without its leading slash>`. */
export function extraPathIn(hostPath: string): string {
  return join(EXTRA_DIR, normalize(hostPath).replace(/^\/+/, ''));
}

/** Why a path of extraPaths cannot be used, or undefined when it can (absolute, not `/`, no `..`). */
export function extraPathProblem(path: string): string | undefined {
  if (!isAbsolute(path)) return `"${path}" is not an absolute path`;
  if (path.split('/').includes('..')) return `"${path}" contains ".."`;
  if (normalize(path) === '/') return 'the root directory "/" cannot be backed up';
  return undefined;
}

/** What to do about an extra path that does not exist in the controller's pod. */
export const EXTRA_PATH_HINT = ' (with the Helm chart, mount the host directory holding it into the controller\'s pod: value certsHostPaths)';

/** Why a certsDir or extra path could not be read, in words a user can act on; `hint` follows "does not exist". */
export function sourceProblem(err: unknown, hint = ''): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? `does not exist${hint}` : code === 'ENOTDIR' ? 'is not a directory'
    : code === 'EACCES' ? 'cannot be read (permission denied)' : (err as Error).message;
}
