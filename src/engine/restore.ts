/**
 * @module Restoring a backup: pick the snapshot, restore it beside the destination, check the etcd snapshot's SHA-256
 * trailer, and only then move it into place. A failed or interrupted restore leaves what was there before untouched.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CERTS_DIR, DATA_DIR, SNAPSHOT_FILE } from './backup.ts';
import { EngineError } from './errors.ts';
import { verifySnapshotFile } from './etcd-snapshot.ts';
import type { SnapshotInfo } from './restic-output.ts';
import type { Repository, Restic, RunOptions } from './restic.ts';
import { listSnapshots } from './snapshots.ts';
import { holdsData } from '../util/fs.ts';

/**
 * The snapshot a user means by `ref` ("latest", a full id or an id prefix), among `snapshots` (newest first) of
 * `policy` when given. "latest" across several policies is ambiguous: restoring another policy's backup by accident is
 * worse than asking.
 */
export function pickSnapshot(snapshots: SnapshotInfo[], ref: string, policy?: string): SnapshotInfo {
  const candidates = policy ? snapshots.filter((s) => s.tags.includes(policy)) : snapshots;
  const scope = policy ? ` of policy "${policy}"` : '';
  if (ref === 'latest') {
    const newest = candidates[0];
    if (!newest) throw new EngineError('NotFound', `no snapshots${scope} in the repository`);
    const policies = new Set(candidates.map((s) => s.tags[0] ?? ''));
    if (!policy && policies.size > 1) {
      throw new EngineError('InvalidInput', `"latest" is ambiguous: the repository holds backups of several policies ` +
        `(${[...policies].sort().join(', ')}); choose one with --policy`);
    }
    return newest;
  }
  if (!/^[0-9a-f]{4,64}$/.test(ref)) throw new EngineError('InvalidInput', `"${ref}" is not a snapshot id (hex digits) or "latest"`);
  const matches = candidates.filter((s) => s.id.startsWith(ref));
  if (matches.length > 1) throw new EngineError('InvalidInput', `snapshot id "${ref}" is ambiguous: give more digits`);
  const found = matches[0];
  if (!found) throw new EngineError('NotFound', `no snapshot "${ref}"${scope} in the repository`);
  return found;
}

/**
 * What one restore run reports to whoever started it (the MetadataRestore controller reads it from the restore pod's
 * termination message). Kept well under the kubelet's 4096-byte limit.
 */
export type RestoreOutcome =
  | { ok: true; snapshotId: string; sha256: string; etcdSnapshotSize: number; files: number; bytes: number }
  | { ok: false; error: string; exitCode: number };

/** The outcome in a termination message, or undefined when the message is something else (a crash's log tail). */
export function parseRestoreOutcome(message: string | undefined): RestoreOutcome | undefined {
  if (!message?.startsWith('{')) return undefined;
  try {
    const o = JSON.parse(message) as RestoreOutcome;
    return typeof o.ok === 'boolean' ? o : undefined;
  } catch {
    return undefined;
  }
}

export interface RestoreRequest {
  repo: Repository;
  /** "latest", a snapshot id or a prefix of one. */
  snapshot: string;
  /** Only snapshots tagged with this policy name. */
  policy?: string;
  /** Directory that receives `data/etcd-snapshot.db` and `data/certificates/`. */
  target: string;
  /** Replace an existing `data/` in the target (after the new one verified). */
  overwrite?: boolean;
  /** SHA-256 the etcd snapshot must have (the backup record's etcdSnapshotSha256). */
  expectSha256?: string;
  /** Told each step as it starts, for progress output. */
  onStep?: (step: string) => void;
  run?: RunOptions;
}

export interface RestoreResult {
  snapshot: SnapshotInfo;
  /** Absolute path of the restored etcd snapshot. */
  etcdSnapshot: string;
  /** SHA-256 of the etcd snapshot's content (its verified trailer). */
  sha256: string;
  etcdSnapshotSize: number;
  /** Directory of the restored certificates, when the backup had them. */
  certificates?: string;
  files: number;
  bytes: number;
}

async function countFiles(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    files++;
    bytes += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return { files, bytes };
}

/** Restores one backup into `req.target`; see the module comment for the guarantees. */
export async function restoreBackup(restic: Restic, req: RestoreRequest): Promise<RestoreResult> {
  const step = req.onStep ?? (() => {});
  const dest = join(req.target, DATA_DIR);
  if (!req.overwrite && await holdsData(dest)) {
    throw new EngineError('Exists', `${dest} already exists and is not empty; choose another target, or allow replacing it (kubedr restore --force)`);
  }
  step('listing snapshots');
  const snapshot = pickSnapshot(await listSnapshots(restic, req.repo, undefined, req.run), req.snapshot, req.policy);

  await mkdir(req.target, { recursive: true });
  // Staged inside the target, so the final move is a rename on the same filesystem.
  const stage = await mkdtemp(join(req.target, '.kubedr-restore-'));
  try {
    step(`restoring snapshot ${snapshot.shortId} (${snapshot.time}, host ${snapshot.hostname})`);
    await restic.run(req.repo, ['restore', snapshot.id, '--target', stage], { timeoutMs: 60 * 60_000, ...req.run });
    const staged = join(stage, DATA_DIR);
    const stagedDb = join(staged, SNAPSHOT_FILE);
    if (!existsSync(stagedDb)) {
      throw new EngineError('NotFound', `snapshot ${snapshot.shortId} holds no ${DATA_DIR}/${SNAPSHOT_FILE}: it was not made by KubeDR`);
    }
    step(`verifying ${DATA_DIR}/${SNAPSHOT_FILE}`);
    const sha256 = await verifySnapshotFile(stagedDb);
    if (req.expectSha256 && req.expectSha256 !== sha256) {
      throw new EngineError('IntegrityError', `restored etcd snapshot has SHA-256 ${sha256}, but the backup record says ${req.expectSha256}`);
    }
    const counted = await countFiles(staged);
    const etcdSnapshotSize = (await stat(stagedDb)).size;
    if (existsSync(dest)) await rm(dest, { recursive: true, force: true });
    await rename(staged, dest);
    const certificates = existsSync(join(dest, CERTS_DIR)) ? join(dest, CERTS_DIR) : undefined;
    return { snapshot, etcdSnapshot: join(dest, SNAPSHOT_FILE), sha256, etcdSnapshotSize, certificates, ...counted };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
