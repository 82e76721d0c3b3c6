/**
 * @module Restoring a backup: pick the snapshot, restore it beside the destination, check the etcd snapshot's SHA-256
 * trailer, and only then move it into place. A failed, cancelled or timed-out restore removes what it staged and leaves
 * what was there before untouched.
 *
 * Replacing an existing `data/` never leaves the target with neither the old nor the new data: the old is renamed to
 * `data.before-restore`, the new renamed in, then the old deleted. A run killed between the renames leaves the old data
 * under that name, and the next run puts it back (or, if the new data made it in, deletes it) before anything else.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ARCHIVE_FILE, CERTS_DIR, DATA_DIR, SNAPSHOT_FILE, isArchiveSnapshot } from './backup-layout.ts';
import { EngineError } from './errors.ts';
import { verifySnapshotFile } from './etcd-snapshot.ts';
import { extractTarFile } from './tar.ts';
import { clusterLabel, matchesCluster, originOf } from './origin.ts';
import type { SnapshotInfo } from './restic-output.ts';
import type { Repository, Restic, RunOptions } from './restic.ts';
import { readRepository, withBucketCheck } from './repository.ts';
import { listSnapshots } from './snapshots.ts';
import { holdsData } from '../util/fs.ts';

/** Which snapshots a person means: of one policy, of one cluster (name, id or id prefix; "-" for those without one). */
export interface SnapshotFilter {
  policy?: string;
  cluster?: string;
}

/** The snapshots `filter` selects, and the words that say so ("of policy "x" of cluster prod"). */
export function filterSnapshots(snapshots: SnapshotInfo[], filter: SnapshotFilter = {}): { selected: SnapshotInfo[]; scope: string } {
  const { policy, cluster } = filter;
  const selected = snapshots.filter((s) => (!policy || s.tags[0] === policy) && (!cluster || matchesCluster(s.tags, cluster)));
  const scope = `${policy ? ` of policy "${policy}"` : ''}${cluster ? ` of cluster ${cluster === '-' ? 'without identity' : cluster}` : ''}`;
  return { selected, scope };
}

/** The cluster and install a snapshot came from, as one key: "<cluster id>/<namespace>", or "-" without an origin. */
const originKey = (s: SnapshotInfo): string => {
  const o = originOf(s.tags);
  return o ? `${o.clusterId}/${o.namespace}` : '-';
};

/**
 * The snapshot a user means by `ref` ("latest", a full id or an id prefix), among `snapshots` (newest first) that
 * `filter` selects. "latest" across several policies, or across several clusters or installs sharing the bucket, is
 * ambiguous: restoring another policy's or another cluster's backup by accident is worse than asking.
 */
export function pickSnapshot(snapshots: SnapshotInfo[], ref: string, filter: SnapshotFilter = {}): SnapshotInfo {
  const { selected: candidates, scope } = filterSnapshots(snapshots, filter);
  if (ref === 'latest') {
    const newest = candidates[0];
    if (!newest) throw new EngineError('NotFound', `no snapshots${scope} in the repository`);
    const origins = new Map(candidates.map((s) => [originKey(s), s]));
    if (origins.size > 1) {
      const named = [...origins.values()].map((s) => {
        const o = originOf(s.tags);
        return o ? `${clusterLabel(s.tags)} in namespace ${o.namespace}` : '- (no cluster identity: taken before kubedr recorded one)';
      }).sort();
      throw new EngineError('InvalidInput', `"latest" is ambiguous: the bucket holds backups${scope} of several clusters or installs ` +
        `(${named.join('; ')}); choose one with --cluster NAME|ID (see kubedr snapshots)`);
    }
    const policies = new Set(candidates.map((s) => s.tags[0] ?? ''));
    if (!filter.policy && policies.size > 1) {
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
  return parseOutcome<RestoreOutcome>(message);
}

/** A `{ok: …}` outcome in a pod's termination message, or undefined when it is something else (a crash's log tail). */
export function parseOutcome<T extends { ok: boolean }>(message: string | undefined): T | undefined {
  if (!message?.startsWith('{')) return undefined;
  try {
    const o = JSON.parse(message) as T;
    return typeof o.ok === 'boolean' ? o : undefined;
  } catch {
    return undefined;
  }
}

/** Where the data a restore replaces waits, in the target, until the new data is in place. */
export const PREVIOUS_DATA_DIR = `${DATA_DIR}.before-restore`;

/** Default time limit of a whole restore: listing, download and verification. */
export const DEFAULT_RESTORE_TIMEOUT_MS = 60 * 60_000;

export interface RestoreRequest {
  repo: Repository;
  /** "latest", a snapshot id or a prefix of one. */
  snapshot: string;
  /** Only snapshots of this policy and cluster (needed for "latest" when several share the bucket). */
  filter?: SnapshotFilter;
  /** Directory that receives `data/etcd-snapshot.db` and `data/certificates/`. */
  target: string;
  /** Replace an existing `data/` in the target (after the new one verified). */
  overwrite?: boolean;
  /** SHA-256 the etcd snapshot must have (the backup record's etcdSnapshotSha256). */
  expectSha256?: string;
  /** Told each step as it starts, for progress output. */
  onStep?: (step: string) => void;
  /** Cancels the restore (SIGTERM): restic is stopped and the staged files removed. */
  signal?: AbortSignal;
  /** Read under restic's shared lock, so no prune repacks the data meanwhile (needs credentials that may write locks). */
  sharedLock?: boolean;
  /** Time limit of the whole restore (default DEFAULT_RESTORE_TIMEOUT_MS); past it, the restore is cancelled as above. */
  timeoutMs?: number;
  run?: RunOptions;
  /**
   * Told the chosen snapshot before anything is downloaded; throwing stops the restore there (e.g. a browse that cannot
   * serve the backup's Kubernetes version should not first fetch a backup of gigabytes).
   */
  onChosen?: (snapshot: SnapshotInfo) => void | Promise<void>;
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

export async function countFiles(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    files++;
    bytes += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return { files, bytes };
}

/**
 * Finishes a replacement of `data/` that a killed run left half done: the old data back in place when the new never
 * arrived, else the old data deleted. Returns what it did, or undefined when there was nothing to do.
 */
export async function recoverInterruptedReplace(target: string): Promise<string | undefined> {
  const dest = join(target, DATA_DIR);
  const previous = join(target, PREVIOUS_DATA_DIR);
  if (!existsSync(previous)) return undefined;
  // Each rename is atomic: with data/ present, the new data made it in and what waits aside is the old.
  if (existsSync(dest)) {
    await rm(previous, { recursive: true, force: true });
    return `removed ${previous}, the data an interrupted restore had replaced`;
  }
  await rename(previous, dest);
  return `put ${dest} back from ${previous}: an earlier restore was interrupted while replacing it`;
}

/** Moves the verified `staged` directory to `dest`, keeping the old data under PREVIOUS_DATA_DIR until the new is in. */
export async function replaceData(staged: string, target: string): Promise<void> {
  const dest = join(target, DATA_DIR);
  const previous = join(target, PREVIOUS_DATA_DIR);
  const hadData = existsSync(dest);
  if (hadData) await rename(dest, previous);
  await rename(staged, dest);
  if (hadData) await rm(previous, { recursive: true, force: true });
}

/** Staging directories inside the target: `.kubedr-restore-<random>`. */
const STAGE_PREFIX = '.kubedr-restore-';

/** Restores one backup into `req.target`; see the module comment for the guarantees. */
export async function restoreBackup(restic: Restic, req: RestoreRequest): Promise<RestoreResult> {
  const step = req.onStep ?? (() => {});
  const dest = join(req.target, DATA_DIR);
  const timeoutMs = req.timeoutMs ?? DEFAULT_RESTORE_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const timedOut = () => new EngineError('Timeout', `restore did not finish within ${Math.ceil(timeoutMs / 1000)} s; ${dest} was left as it was`);
  // Between steps, a cancel or the deadline stops the restore; each restic run gets what is left of the time limit.
  const goOn = (): void => {
    if (req.signal?.aborted) throw new EngineError('Cancelled', 'restore was cancelled');
    if (Date.now() >= deadline) throw timedOut();
  };
  const run = (): RunOptions => {
    goOn();
    return { ...req.run, signal: req.signal ?? req.run?.signal, timeoutMs: deadline - Date.now() };
  };
  const recovered = await recoverInterruptedReplace(req.target);
  if (recovered) step(recovered);
  for (const stale of await removeStaleStages(req.target, timeoutMs)) step(`removed ${stale}, left by a restore that was killed`);
  if (!req.overwrite && await holdsData(dest)) {
    throw new EngineError('Exists', `${dest} already exists and is not empty; choose another target, or allow replacing it (kubedr restore --force)`);
  }
  step('listing snapshots');
  const listed = await resticTimeLimit(withBucketCheck(req.repo, (signal) => listSnapshots(restic, req.repo, { ...run(), signal }, { readOnly: true }), run().signal), timedOut);
  const snapshot = pickSnapshot(listed, req.snapshot, req.filter);
  await req.onChosen?.(snapshot);

  await mkdir(req.target, { recursive: true });
  // Staged inside the target, so the final move is a rename on the same filesystem.
  const stage = await mkdtemp(join(req.target, STAGE_PREFIX));
  try {
    step(`restoring snapshot ${snapshot.shortId} (${snapshot.time}, host ${snapshot.hostname})`);
    // With `sharedLock`, under restic's shared lock (a verification); by default none (read-only keys can restore).
    await resticTimeLimit(readRepository(restic, req.repo, req.sharedLock,
      (lock) => restic.run(req.repo, ['restore', ...lock, snapshot.id, '--target', stage], run()),
      { signal: req.signal, onWait: (holder) => step(`waiting: ${holder}`) }), timedOut);
    // A streamed backup is one tar archive (engine/backup-archive.ts): its entries are taken out into the layout a
    // staged backup restores in, and the archive removed. The snapshot, its last entry, is the archive itself cut
    // down in place where the file system can (then the stage never holds the backup twice), else a copy.
    if (isArchiveSnapshot(snapshot.paths)) {
      step(`extracting ${ARCHIVE_FILE}`);
      const { inPlace } = extractTarFile(join(stage, ARCHIVE_FILE), stage);
      if (inPlace) step(`${inPlace}: the archive cut down to it in place`);
      await rm(join(stage, ARCHIVE_FILE), { force: true });
    }
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
    goOn();
    await replaceData(staged, req.target);
    const certificates = existsSync(join(dest, CERTS_DIR)) ? join(dest, CERTS_DIR) : undefined;
    return { snapshot, etcdSnapshot: join(dest, SNAPSHOT_FILE), sha256, etcdSnapshotSize, certificates, ...counted };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/**
 * Removes staging directories that a restore killed without a chance to clean up (SIGKILL, a node lost) left in the
 * target. Only those older than a restore's time limit: a restore still running cannot be older than its own limit,
 * and restores into one target use the same limit (the chart's, or the command's default).
 */
export async function removeStaleStages(target: string, olderThanMs: number, now = Date.now()): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(target);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names.filter((n) => n.startsWith(STAGE_PREFIX))) {
    const path = join(target, name);
    const st = await stat(path).catch(() => undefined);
    if (!st || now - st.mtimeMs <= olderThanMs) continue;
    await rm(path, { recursive: true, force: true });
    removed.push(path);
  }
  return removed;
}

/** restic's own timeout, which got only what was left of ours, reported as the whole restore's. */
async function resticTimeLimit<T>(work: Promise<T>, timedOut: () => EngineError): Promise<T> {
  try {
    return await work;
  } catch (err) {
    throw err instanceof EngineError && err.kind === 'Timeout' ? timedOut() : err;
  }
}
