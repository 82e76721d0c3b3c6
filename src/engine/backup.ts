/**
 * @module One backup: the certificates, any extra host paths and an etcd snapshot (integrity-checked), stored as one
 * restic snapshot holding `data/etcd-snapshot.db`, `data/certificates/…` and `data/extra/<host path>`. Two layouts:
 *
 * - **streamed** (restic ≥ 0.17 and an archive command given, as the controller gives its own `backup-archive`):
 *   restic runs the command and stores what it writes, one tar archive of those paths, while etcd sends it
 *   (engine/backup-archive.ts). The backup takes about as long as etcd's stream, and the node keeps no copy of the
 *   snapshot. A snapshot that fails its check makes the command fail, and restic then saves nothing.
 * - **staged** (older restic, or no command): the files are copied to a staging directory, the snapshot streamed to a
 *   file there, and restic backs up the directory once it is complete. The directory stays the same for a policy (its
 *   tags), across backups and controller restarts: restic picks the parent snapshot by host and path, and only with a
 *   parent do `filesNew`, `filesChanged` and `filesUnmodified` mean anything.
 *
 * Restores read both (engine/restore.ts). Temporary files are removed on every path.
 */
import { cp, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { claimStableDir, scratchDir } from '../util/scratch.ts';
import { type ArchiveResult, checkArchiveSources, parseArchiveMessage } from './backup-archive.ts';
import { ARCHIVE_FILE, CERTS_DIR, DATA_DIR, EXTRA_PATH_HINT, MEMBERS_FILE, SNAPSHOT_FILE, extraPathIn, extraPathProblem, sourceProblem } from './backup-layout.ts';
import { upload } from './backup-upload.ts';
import { type CertificateExpiry, earliestExpiry, readCertificateExpiries } from './certificates.ts';
import { EngineError, type EngineErrorKind } from './errors.ts';
import { type EtcdConnection, type SnapshotResult, type SnapshotTimings, etcdRevision, saveSnapshot } from './etcd-snapshot.ts';
import type { BackupSummary } from './restic-output.ts';
import type { Repository, Restic } from './restic.ts';
import { REVISION_TAG } from './origin.ts';

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
   * The command that writes the backup as one archive to its standard output (this program's `backup-archive`),
   * followed by `--request FILE`. Without it, or with a restic older than 0.17, the backup is staged.
   */
  archiveCommand?: string[];
  /**
   * Fail the upload when restic's bytes done have not grown for this long. restic 0.14 retries a vanished S3
   * endpoint for many minutes, so without this a backup would hang instead of failing. Default 5 minutes.
   */
  stallTimeoutMs?: number;
}

/** Where the time of a backup went, milliseconds (monotonic clock); for logs and the benchmark. */
export interface BackupTimings {
  /** How it was stored: streamed (etcd's stream and the upload at once) or staged (one after the other). */
  layout: 'streamed' | 'staged';
  /** Staging directory made; certificates and extra paths copied, their expiries read (streamed: the request written). */
  stageMs: number;
  etcd: SnapshotTimings;
  /** Waiting for this process's other restic operations on the repository to finish. */
  repoWaitMs: number;
  /** `restic backup`, from spawn to exit (a stale-lock retry included; streamed: etcd's stream too). */
  uploadMs: number;
  /** CPU this process used meanwhile (user + system): what it takes from restic on a small machine. */
  uploadOwnCpuMs: number;
  /** Staging directory removed. */
  cleanupMs: number;
  /** Streamed: the capacity of the pipe to restic (1 MiB when enlarged; 64 KiB made it twice as slow). */
  pipeBytes?: number;
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
    throw new EngineError('InvalidInput', `certsDir ${certsDir} ${sourceProblem(err)}`);
  }
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
      throw new EngineError('InvalidInput', `extraPaths: ${path} ${sourceProblem(err, EXTRA_PATH_HINT)}`);
    }
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
  if (req.archiveCommand && await restic.readsCommands()) return streamedBackup(restic, req, req.archiveCommand);
  return stagedBackup(restic, req);
}

/** The tags of a backup: the policy's, and the revision, so a point-in-time restore finds where a chain of change sets starts from the repository's listing alone (engine/continuous). */
const withRevision = (tags: string[], revision: number) => [...tags, `${REVISION_TAG}${revision}`];

/** The time spent in `fn`, and this process's CPU meanwhile (what it takes from restic on a small machine). */
async function timedUpload<T>(restic: Restic, repo: Repository, fn: () => Promise<T>): Promise<{ value: T; repoWaitMs: number; uploadMs: number; ownCpuMs: number }> {
  const queued = performance.now();
  let started = queued;
  let cpu: NodeJS.CpuUsage | undefined;
  const value = await restic.exclusive(repo, () => {
    started = performance.now();
    cpu = process.cpuUsage();
    return fn();
  });
  const own = process.cpuUsage(cpu);
  return { value, repoWaitMs: started - queued, uploadMs: performance.now() - started, ownCpuMs: (own.user + own.system) / 1000 };
}

/** A backup restic stores while the archive command writes it; see the module comment. */
async function streamedBackup(restic: Restic, req: BackupRequest, command: string[]): Promise<BackupResult> {
  const started = performance.now();
  // A missing certificate directory fails before etcd is asked for anything, as a staged backup does.
  checkArchiveSources(req);
  const dir = await scratchDir('backup');
  try {
    // The etcd client key travels in a file only this user reads, never in argv or restic's environment.
    const requestFile = join(dir, 'request.json');
    await writeFile(requestFile, JSON.stringify({ etcd: req.etcd, certsDir: req.certsDir, extraPaths: req.extraPaths }), { mode: 0o600 });
    const revision = await etcdRevision(req.etcd);
    const staged = performance.now();
    let size: number | undefined;
    let done: ArchiveResult | undefined;
    let failed: { kind: string; message: string } | undefined;
    const upload$ = () => upload(restic, {
      repo: req.repo, host: req.host, tags: withRevision(req.tags, revision), signal: req.signal, stallTimeoutMs: req.stallTimeoutMs,
      source: ['--stdin-from-command', '--stdin-filename', ARCHIVE_FILE, '--', ...command, '--request', requestFile],
      onWait: (holder) => req.onProgress?.({ phase: 'Upload', bytesDone: 0, waitingFor: holder }),
      // restic's first lines, before the command has written anything, say nothing a reader of the status can use.
      onProgress: (bytesDone) => bytesDone > 0 && req.onProgress?.(size === undefined ? { phase: 'Snapshot', bytesDone }
        : { phase: 'Upload', bytesDone, totalBytes: size, percent: Math.min(100, Math.round((bytesDone / size) * 1000) / 10) }),
      onCommandLine: (line) => {
        const m = parseArchiveMessage(line);
        if (m?.kubedrArchive === 'size') size = m.bytes;
        else if (m?.kubedrArchive === 'done') done = m.result;
        else if (m?.kubedrArchive === 'error') failed = m;
        return !!m || line.startsWith('subprocess ');
      },
    });
    let uploaded: Awaited<ReturnType<typeof timedUpload<BackupSummary>>>;
    try {
      uploaded = await timedUpload(restic, req.repo, upload$);
    } catch (err) {
      // The command's own words say why it failed better than restic's "command failed: exit status 1".
      if (failed && !req.signal?.aborted) throw new EngineError(failed.kind as EngineErrorKind, failed.message, { cause: err });
      throw err;
    }
    if (!done) throw new EngineError('Failed', `restic stored snapshot ${uploaded.value.snapshotId.slice(0, 8)}, but the archive command reported no result`);
    const { etcd, certificates } = done;
    return {
      summary: uploaded.value, etcd, certificates, earliestCertificateExpiry: certificates && earliestExpiry(certificates),
      durationSecs: (performance.now() - started) / 1000,
      timings: { layout: 'streamed', stageMs: staged - started, etcd: etcd.timings, repoWaitMs: uploaded.repoWaitMs, uploadMs: uploaded.uploadMs,
        uploadOwnCpuMs: uploaded.ownCpuMs, cleanupMs: 0, pipeBytes: done.pipeBytes },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A backup staged as files, then stored; see the module comment. */
async function stagedBackup(restic: Restic, req: BackupRequest): Promise<BackupResult> {
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
    const total = etcd.size;
    const uploaded = await timedUpload(restic, req.repo, () => upload(restic, {
      repo: req.repo, host: req.host, tags: withRevision(req.tags, etcd.revision), parent: req.parent, source: [DATA_DIR], cwd: stage,
      signal: req.signal, stallTimeoutMs: req.stallTimeoutMs,
      onWait: (holder) => req.onProgress?.({ phase: 'Upload', bytesDone: 0, totalBytes: total, waitingFor: holder }),
      onProgress: (bytesDone, totalBytes, percent) => req.onProgress?.({ phase: 'Upload', bytesDone, totalBytes: totalBytes || total, percent }),
    }));
    stored = {
      summary: uploaded.value, etcd, certificates, earliestCertificateExpiry: certificates && earliestExpiry(certificates),
      timings: { layout: 'staged', stageMs: staged - started, etcd: etcd.timings, repoWaitMs: uploaded.repoWaitMs, uploadMs: uploaded.uploadMs,
        uploadOwnCpuMs: uploaded.ownCpuMs },
    };
  } finally {
    const releasing = performance.now();
    await staging.release();
    cleanupMs = performance.now() - releasing;
  }
  return { ...stored, durationSecs: (performance.now() - started) / 1000, timings: { ...stored.timings, cleanupMs } };
}
