/** @module Small filesystem questions shared by the restore steps of the engine and the command line. */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rmdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

/** True when `path` holds something a restore must not overwrite unasked: a non-empty directory, or any other file. */
export async function holdsData(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length > 0;
  } catch {
    return existsSync(path);
  }
}

/** Why this process cannot create files in a directory. */
export interface WriteDenial {
  /** The directory tried: the path itself, or its nearest existing ancestor when the path does not exist yet. */
  dir: string;
  /** Error code of the failed attempt: EACCES, EPERM, EROFS, ENOTDIR (not a directory), ... */
  code: string;
  ownerUid: number;
  ownerGid: number;
  /** Permission bits, e.g. 0o755. */
  mode: number;
}

/**
 * Undefined when this process can create files in `path`, or, if `path` does not exist yet, in the ancestor where
 * `mkdir -p` would start; else why not. It creates and removes a probe directory, the way a restore stages its files,
 * because permission bits alone do not tell: read-only mounts, ACLs, root without CAP_DAC_OVERRIDE.
 */
export async function writeDenial(path: string): Promise<WriteDenial | undefined> {
  let dir = resolve(path);
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  const st = await stat(dir);
  const facts = { dir, ownerUid: st.uid, ownerGid: st.gid, mode: st.mode & 0o7777 };
  if (!st.isDirectory()) return { ...facts, code: 'ENOTDIR' };
  try {
    await rmdir(await mkdtemp(join(dir, '.kubedr-write-check-')));
    return undefined;
  } catch (err) {
    const code = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : 'EIO';
    return { ...facts, code };
  }
}
