/**
 * @module One backup: copy the certificates and any extra host paths, stream an etcd snapshot (integrity-checked), and
 * store them as one restic snapshot laid out as `data/etcd-snapshot.db`, `data/certificates/…` and
 * `data/extra/<host path>`. Temporary files are removed on every path.
 *
 * The files are staged at a path that stays the same for a policy (its tags), across backups and controller restarts:
 * restic picks the parent snapshot by host and path, and only with a parent do `filesNew`, `filesChanged` and
 * `filesUnmodified` mean anything (with a new path each time, every file of every backup counted as new).
 */
import { cp, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { claimStableDir, scratchDir } from '../util/scratch.ts';
import { plainText } from '../util/text.ts';
import { type CertificateExpiry, earliestExpiry, readCertificateExpiries } from './certificates.ts';
import { EngineError } from './errors.ts';
import { type EtcdConnection, type SnapshotResult, type SnapshotTimings, saveSnapshot } from './etcd-snapshot.ts';
import { type BackupSummary, classifyResticError, parseBackupLine } from './restic-output.ts';
import { endpointOf, type Repository, type Restic } from './restic.ts';
import { REVISION_TAG } from './origin.ts';
import { withLockWait } from './repository.ts';

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

/** Where a host path of extraPaths is stored, relative to `data/`: `extra/<path without its leading slash>`. */
export function extraPathIn(hostPath: string): string {
  return join(EXTRA_DIR, normalize(hostPath).replace(/^\/+/, ''));
}

export type BackupPhase = 'Snapshot' | 'Upload';

export interface BackupProgress {
  phase: BackupPhase;
  bytesDone: number;
  totalBytes?: number;
  /** 0..100, during the upload. */
  percent?: number;
  /** What the backup waits for now, e.g. another writer's repository lock ("repository is locked by PID 7 on cp-2 …"). */
  waitingFor?: string;
}

export interface BackupRequest {
  etcd: EtcdConnection;
  /** Directory of certificates to include, or undefined. */
  certsDir?: string;
  /**
   * More host paths (absolute; files or directories) to store with the snapshot, e.g. the directory of the API server's
   * EncryptionConfiguration, without which a snapshot of encrypted Secrets cannot be read.
   */
  extraPaths?: readonly string[];
  repo: Repository;
  /** restic --host: names the source of the backup in `restic snapshots`. */
  host: string;
  /** restic --tag, naming the policy (the first is its name); they also name the stable staging path. */
  tags: string[];
  /**
   * The policy's previous snapshot, when known. Given as `--parent`, it spares restic its search for one, which loads
   * every snapshot in the repository (thousands at a shared location, each a GET without a cache).
   */
  parent?: string;
  signal?: AbortSignal;
  onProgress?: (p: BackupProgress) => void;
  /**
   * Fail the upload when restic's bytes done have not grown for this long. restic 0.14 retries a vanished S3
   * endpoint for many minutes, so without this a backup would hang instead of failing. Default 5 minutes.
   */
  stallTimeoutMs?: number;
}

/** Where the time of a backup went, milliseconds (monotonic clock); for logs and the benchmark. */
export interface BackupTimings {
  /** Staging directory made; certificates and extra paths copied, their expiries read. */
  stageMs: number;
  etcd: SnapshotTimings;
  /** Waiting for this process's other restic operations on the repository to finish. */
  repoWaitMs: number;
  /** `restic backup`, from spawn to exit (a stale-lock retry included). */
  uploadMs: number;
  /** CPU this process used meanwhile (user + system): what it takes from restic on a small machine. */
  uploadOwnCpuMs: number;
  /** Staging directory removed. */
  cleanupMs: number;
}

export interface BackupResult {
  summary: BackupSummary;
  etcd: SnapshotResult;
  /** Wall time of the whole backup, seconds. */
  durationSecs: number;
  timings: BackupTimings;
  /** Per certificate file stored (path relative to certsDir), its earliest expiry; undefined without certsDir. */
  certificates?: CertificateExpiry[];
  /** The earliest of those expiries, RFC 3339; undefined when the backup holds no certificate. */
  earliestCertificateExpiry?: string;
}

async function copyCertificates(certsDir: string, into: string): Promise<void> {
  try {
    await readdir(certsDir);
    // Timestamps kept: restic then sees an unchanged certificate as unmodified.
    await cp(certsDir, into, { recursive: true, dereference: true, errorOnExist: false, preserveTimestamps: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a directory' : code === 'EACCES' ? 'cannot be read (permission denied)' : (err as Error).message;
    throw new EngineError('InvalidInput', `certsDir ${certsDir} ${why}`);
  }
}

/** Why a path of extraPaths cannot be used, or undefined when it can (absolute, not `/`, no `..`). */
export function extraPathProblem(path: string): string | undefined {
  if (!isAbsolute(path)) return `"${path}" is not an absolute path`;
  if (path.split('/').includes('..')) return `"${path}" contains ".."`;
  if (normalize(path) === '/') return 'the root directory "/" cannot be backed up';
  return undefined;
}

/**
 * Copies each extra host path to `data/extra/<path>`. A path that is missing fails the backup: the snapshot would
 * otherwise lack what the user asked to keep with it, which they would find only on the day they restore.
 */
async function copyExtraPaths(paths: readonly string[], data: string): Promise<void> {
  for (const path of paths) {
    const problem = extraPathProblem(path);
    if (problem) throw new EngineError('InvalidInput', `extraPaths: ${problem}`);
  }
  for (const path of paths) {
    const into = join(data, extraPathIn(path));
    try {
      const isDir = (await stat(path)).isDirectory();
      await mkdir(isDir ? into : dirname(into), { recursive: true, mode: 0o700 });
      // Timestamps kept, as for the certificates: restic then sees an unchanged file as unmodified.
      await cp(path, into, { recursive: true, dereference: true, errorOnExist: false, preserveTimestamps: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'does not exist (with the Helm chart, mount the host directory holding it into the controller\'s pod: value certsHostPaths)'
        : code === 'EACCES' ? 'cannot be read (permission denied)' : (err as Error).message;
      throw new EngineError('InvalidInput', `extraPaths: ${path} ${why}`);
    }
  }
}

/** restic's error for a parent snapshot whose trees a repair removed. */
const PARENT_DAMAGED = /tree [0-9a-f]+ is not known; the repository could be damaged/;

/** restic ≥ 0.17's error for a file it stores again because the index lost parts of it (after a repair). */
const RESTORED_AGAIN = /not found in the repository index; storing the file again/;

/** restic's own lines that follow our SIGINT: what we did to it, not what went wrong. */
const OUR_INTERRUPT = /signal interrupt received|context canceled|cleaning up/i;

/** Why a stalled upload stalled: the endpoint it was sending to, and restic's last complaint before we stopped it. */
export function stallMessage(stallMs: number, address: string, lastError: string): string {
  const detail = lastError ? classifyResticError(lastError) : undefined;
  return `upload made no progress for ${Math.round(stallMs / 1000)} s, stalled at the S3 endpoint ${endpointOf(address)}` +
    (detail ? ` (restic's last error: ${detail.message})` : '');
}

async function resticBackup(restic: Restic, req: BackupRequest, cwd: string, total: number, parent: string | undefined): Promise<BackupSummary> {
  // 'none': no parent, not even the one restic would pick (it reads every file again).
  const parentArgs = parent === 'none' ? ['--force'] : parent ? ['--parent', parent] : [];
  let summary: BackupSummary | undefined;
  let lastError = '';
  let bytesDone = -1;
  const stallMs = req.stallTimeoutMs ?? 5 * 60_000;
  const stalled = new AbortController();
  let watchdog = setTimeout(() => stalled.abort(), stallMs);
  const progressed = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => stalled.abort(), stallMs);
  };
  const signal = req.signal ? AbortSignal.any([req.signal, stalled.signal]) : stalled.signal;
  // The staged files are new copies each time: their inode and ctime always differ from the parent's, so only size and
  // mtime (kept by the copy) tell a changed file.
  const args = ['backup', '--json', '--ignore-inode', '--ignore-ctime', '--host', req.host, ...req.tags.flatMap((t) => ['--tag', t]),
    ...parentArgs, DATA_DIR];
  try {
    const { code, stderr } = await restic.run(req.repo, args, {
      cwd,
      signal,
      timeoutMs: 6 * 60 * 60_000,
      answerCodes: [3],
      onStderrLine: (line) => {
        // Once we have stopped restic, what it says is about being stopped.
        const text = plainText(line).trim();
        if (text && !signal.aborted && !OUR_INTERRUPT.test(text)) lastError = text;
      },
      onLine: (line) => {
        const m = parseBackupLine(line);
        if (m?.type === 'summary') summary = m.summary;
        if (m?.type !== 'status') return;
        if (m.bytesDone > bytesDone) {
          bytesDone = m.bytesDone;
          progressed();
        }
        req.onProgress?.({ phase: 'Upload', bytesDone: m.bytesDone, totalBytes: m.totalBytes || total, percent: Math.round(m.percentDone * 1000) / 10 });
      },
    });
    // Exit 3 is "a source file could not be read". After a repair removed damaged packs, restic 0.18 also says so for a
    // file it stored again because parts of it were no longer in the index: that backup is whole. Anything else is not.
    if (code === 3) {
      const errors = stderr.split('\n').filter((l) => l.includes('"message_type":"error"'));
      const problems = errors.filter((l) => !RESTORED_AGAIN.test(l));
      if (errors.length === 0 || problems.length > 0 || !summary) {
        const c = classifyResticError(problems.join('\n') || stderr);
        throw new EngineError(c.kind, c.message);
      }
    }
  } catch (err) {
    if (stalled.signal.aborted && !req.signal?.aborted) {
      const kind = lastError ? classifyResticError(lastError).kind : 'Failed';
      throw new EngineError(kind === 'Failed' ? 'Unreachable' : kind, stallMessage(stallMs, req.repo.address, lastError));
    }
    throw err;
  } finally {
    clearTimeout(watchdog);
  }
  if (!summary) throw new EngineError('Failed', 'restic backup finished without a summary');
  return summary;
}

/**
 * restic backup with the request's parent, or without one when the repository no longer holds that snapshot; and with no
 * parent at all (`--force`: restic would pick the latest snapshot itself) when a parent's trees were lost to a repair.
 */
async function upload(restic: Restic, req: BackupRequest, cwd: string, total: number): Promise<BackupSummary> {
  const attempt = (parent?: string | 'none') => withLockWait(restic, req.repo, () => resticBackup(restic, req, cwd, total, parent), {
    signal: req.signal, onWait: (holder) => req.onProgress?.({ phase: 'Upload', bytesDone: 0, totalBytes: total, waitingFor: holder }),
  });
  const parentDamaged = (err: unknown) => err instanceof EngineError && PARENT_DAMAGED.test(err.message);
  try {
    if (!req.parent) return await attempt();
    try {
      return await attempt(req.parent);
    } catch (err) {
      // Forgotten meanwhile (by hand, or its record outlived it): restic then searches for a parent itself.
      if (err instanceof EngineError && err.kind === 'NotFound') return await attempt();
      throw err;
    }
  } catch (err) {
    // Damaged: a repair removed data of its trees ("tree … is not known"); this backup must store fresh copies.
    if (parentDamaged(err)) return attempt('none');
    throw err;
  }
}

/**
 * Where a backup stages its files: the policy's stable directory, or a private one when that is held (a backup of the
 * same policy still running in another process); such a backup only has no parent.
 */
async function stagingDir(tags: string[]): Promise<{ path: string; release: () => Promise<void> }> {
  const stable = await claimStableDir(tags.join(','));
  if (stable) return stable;
  const path = await scratchDir('backup');
  return { path, release: () => rm(path, { recursive: true, force: true }) };
}

/** Takes one backup. Throws EngineError naming the cause; a failure leaves nothing behind. */
export async function runBackup(restic: Restic, req: BackupRequest): Promise<BackupResult> {
  const started = performance.now();
  const staging = await stagingDir(req.tags);
  const stage = staging.path;
  let stored: Omit<BackupResult, 'durationSecs' | 'timings'> & { timings: Omit<BackupTimings, 'cleanupMs'> };
  let cleanupMs = 0;
  try {
    const data = join(stage, DATA_DIR);
    await mkdir(data, { mode: 0o700 });
    // Certificates and extra paths first: a missing one fails before etcd is asked for anything.
    let certificates: CertificateExpiry[] | undefined;
    if (req.certsDir) {
      await copyCertificates(req.certsDir, join(data, CERTS_DIR));
      // Read from the copy: the expiries recorded are those of the certificates stored.
      certificates = await readCertificateExpiries(join(data, CERTS_DIR));
    }
    if (req.extraPaths?.length) await copyExtraPaths(req.extraPaths, data);
    const staged = performance.now();
    const etcd = await saveSnapshot(req.etcd, join(data, SNAPSHOT_FILE), {
      signal: req.signal,
      onProgress: (bytes) => req.onProgress?.({ phase: 'Snapshot', bytesDone: bytes }),
    });
    if (etcd.members) await writeFile(join(data, MEMBERS_FILE), `${JSON.stringify(etcd.members, null, 2)}\n`, { mode: 0o600 });
    const queued = performance.now();
    let uploadStarted = queued;
    let cpu: NodeJS.CpuUsage | undefined;
    const summary = await restic.exclusive(req.repo, () => {
      uploadStarted = performance.now();
      cpu = process.cpuUsage();
      // The revision travels as a tag, so a point-in-time restore finds where a chain of change sets starts from the
      // repository's listing alone (engine/continuous).
      return upload(restic, { ...req, tags: [...req.tags, `${REVISION_TAG}${etcd.revision}`] }, stage, etcd.size);
    });
    const uploaded = performance.now();
    const ownCpu = process.cpuUsage(cpu);
    stored = {
      summary, etcd, certificates, earliestCertificateExpiry: certificates && earliestExpiry(certificates),
      timings: { stageMs: staged - started, etcd: etcd.timings, repoWaitMs: uploadStarted - queued, uploadMs: uploaded - uploadStarted,
        uploadOwnCpuMs: (ownCpu.user + ownCpu.system) / 1000 },
    };
  } finally {
    const releasing = performance.now();
    await staging.release();
    cleanupMs = performance.now() - releasing;
  }
  return { ...stored, durationSecs: (performance.now() - started) / 1000, timings: { ...stored.timings, cleanupMs } };
}
