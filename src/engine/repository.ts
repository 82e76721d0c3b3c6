/** @module S3 repository addresses and "open or create" of a restic repository. */
import { EngineError } from './errors.ts';
import { isAlreadyInitialized } from './restic-output.ts';
import type { Repository, Restic, RunOptions } from './restic.ts';
import { sleep } from '../util/sleep.ts';

/**
 * Checks a bucket name against S3's rules: 3-63 characters of lowercase letters, digits, dots and hyphens, beginning
 * and ending with a letter or digit, not shaped like an IP address. Returns the problem, or undefined when valid.
 */
export function bucketNameProblem(name: string): string | undefined {
  if (name.length < 3 || name.length > 63) return `must be 3 to 63 characters long (has ${name.length})`;
  if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name)) {
    return 'may contain only lowercase letters, digits, dots and hyphens, and must begin and end with a letter or digit';
  }
  if (name.includes('..')) return 'must not contain two adjacent dots';
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) return 'must not be formatted as an IP address';
  return undefined;
}

/** Validates an S3 endpoint URL and bucket and returns restic's repository address `s3:<url>/<bucket>`. */
export function repositoryAddress(url: string, bucket: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new EngineError('InvalidInput', `invalid S3 URL "${url}": expected e.g. https://s3.example.com:9000`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new EngineError('InvalidInput', `invalid S3 URL "${url}": scheme must be http or https, not ${u.protocol.replace(':', '')}`);
  }
  if (u.username || u.password) {
    throw new EngineError('InvalidInput', 'invalid S3 URL: credentials belong in the credentials Secret, not in the URL');
  }
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
    throw new EngineError('InvalidInput', `invalid S3 URL "${url}": give the endpoint only; the bucket goes in bucketName`);
  }
  const problem = bucketNameProblem(bucket);
  if (problem) throw new EngineError('InvalidInput', `invalid bucket name "${bucket}": ${problem}`);
  return `s3:${u.protocol}//${u.host}/${bucket}`;
}

export interface OpenResult {
  /** True when this call created the repository; false when an existing one opened with the password. */
  created: boolean;
}

/**
 * Opens the repository, creating it (and the bucket) when there is none. An existing repository that opens with the
 * password is success, not failure (KubeDR reported it as Failed).
 *
 * `init` comes first because it is the one question every restic answers at once: restic 0.18 retries `cat config`
 * against a bucket that does not exist until it is killed (0.14 failed at once), and `init` refuses an existing
 * repository ("config file already exists") before it writes anything. The password is then checked by `cat config`.
 */
export async function openOrInit(restic: Restic, repo: Repository, run: RunOptions = {}): Promise<OpenResult> {
  try {
    await restic.run(repo, ['init'], run);
    return { created: true };
  } catch (err) {
    if (!(err instanceof EngineError && isAlreadyInitialized(err.message))) throw err;
  }
  await restic.run(repo, ['cat', 'config'], run);
  return { created: false };
}

/**
 * Runs `fn`; while the repository is locked by another writer, removes only the locks restic itself calls stale and
 * tries again, until `waitMs` has passed. Then it fails, naming the holder ("locked by PID 12 on node-1 since …").
 *
 * Why never `unlock --remove-all`: a bucket may be shared by other clusters or installs, and a live lock of theirs
 * protects a backup or prune in progress; deleting it lets a prune remove data that backup is about to reference.
 * restic's own rule (`restic unlock`) removes a lock only when it was written on this host by a process that no longer
 * runs, or has not been refreshed for 30 minutes (restic ≥ 0.17 refreshes its locks every 5 minutes while it runs).
 * That covers the common leftover: this controller's own restic, killed with its pod on this node. A writer that died
 * on another host blocks writes until its lock is 30 minutes old; the operation then fails and is retried later, and
 * says whose lock it is waiting for.
 */
export async function withLockWait<T>(restic: Restic, repo: Repository, fn: () => Promise<T>,
  opts: { waitMs?: number; signal?: AbortSignal; onWait?: (holder: string) => void } = {}): Promise<T> {
  const waitMs = opts.waitMs ?? restic.lockWaitMs;
  const started = Date.now();
  let delayMs = 1_000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof EngineError) || err.kind !== 'Locked') throw err;
      // A failing unlock (endpoint blip) only means no stale lock went: the next attempt says what holds.
      await removeStaleLocks(restic, repo, { signal: opts.signal });
      const waited = Date.now() - started;
      if (waited + delayMs > waitMs) {
        throw new EngineError('Locked', `${err.message}; waited ${Math.round(waited / 1000)} s for it to be released ` +
          '(a lock is removed only when restic calls it stale: its process is gone from this host, or it is 30 minutes old)', { cause: err });
      }
      opts.onWait?.(err.message);
      await sleep(delayMs, opts.signal);
      if (opts.signal?.aborted) throw new EngineError('Cancelled', 'cancelled while waiting for the repository lock');
      delayMs = Math.min(delayMs * 2, 15_000);
    }
  }
}

/**
 * A read of the repository (restore, dump): with `shared`, under restic's shared lock, so a prune (exclusive) cannot
 * repack the data being read, which failed verifications for no fault of the backup; backups share the lock and go
 * on, and a prune holding the repository is waited out (withLockWait). Without it, no lock: read-only S3 keys can
 * read. `read` gets the lock flags to put in its restic arguments.
 */
export function readRepository<T>(restic: Restic, repo: Repository, shared: boolean | undefined, read: (lockFlags: string[]) => Promise<T>,
  opts: { signal?: AbortSignal; onWait?: (holder: string) => void } = {}): Promise<T> {
  return shared ? withLockWait(restic, repo, () => read([]), opts) : read(['--no-lock']);
}

/**
 * Removes the locks restic itself calls stale (see withLockWait): a killed backup's lock does not block backups, which
 * share the repository, but it blocks the next forget or prune, so it goes after each backup. A live lock of another
 * writer is never touched. Best effort: a failure here changes nothing that the next write would not meet anyway.
 */
export async function removeStaleLocks(restic: Restic, repo: Repository, run: RunOptions = {}): Promise<void> {
  // Bounded: restic ≥ 0.17 retries an endpoint that dies during a run for up to 15 minutes, and this housekeeping must
  // never hold up what comes after it.
  await restic.run(repo, ['unlock'], { timeoutMs: STALE_LOCKS_TIMEOUT_MS, ...run }).catch(() => undefined);
}

/** How long removing stale locks may take: one listing and a few deletes. */
const STALE_LOCKS_TIMEOUT_MS = 30_000;

/** One lock file in the repository, as restic wrote it. */
export interface LockInfo {
  id: string;
  time: string;
  exclusive: boolean;
  hostname: string;
  pid: number;
}

/**
 * The repository's locks, read without taking one. Each is a restic run of its own (restic prints no lock contents
 * in a listing), so this is for rare decisions, not for every backup.
 */
export async function listLocks(restic: Restic, repo: Repository, run: RunOptions = {}): Promise<LockInfo[]> {
  const { stdout } = await restic.run(repo, ['list', 'locks', '--no-lock'], { timeoutMs: STALE_LOCKS_TIMEOUT_MS, ...run });
  const locks: LockInfo[] = [];
  for (const id of stdout.split('\n').map((l) => l.trim()).filter((l) => /^[0-9a-f]{64}$/.test(l))) {
    try {
      const raw = JSON.parse((await restic.run(repo, ['cat', 'lock', id, '--no-lock'], { timeoutMs: STALE_LOCKS_TIMEOUT_MS, ...run })).stdout) as Record<string, unknown>;
      locks.push({ id, time: String(raw.time ?? ''), exclusive: raw.exclusive === true, hostname: String(raw.hostname ?? ''), pid: Number(raw.pid ?? 0) });
    } catch (err) {
      // Removed between the listing and the read: its writer finished.
      if (err instanceof EngineError && (err.kind === 'NotFound' || /not exist|no such file|NoSuchKey/i.test(err.message))) continue;
      throw err;
    }
  }
  return locks;
}

/**
 * Runs `work` (a restic command that reads the repository) while asking, beside it and without credentials, whether
 * the bucket exists at all, and fails at once with NotFound if it does not. restic ≥ 0.17 takes a missing bucket for a
 * passing fault and retries it for minutes before giving up. S3 servers (AWS, Ceph RGW, MinIO, s3rver) answer an
 * anonymous request for a bucket that does not exist with 404 `NoSuchBucket`, and one that exists with 403 or 200.
 * Any other answer, or none, decides nothing, and costs nothing: `work` goes on and says what it finds.
 */
export async function withBucketCheck<T>(repo: Repository, work: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
  const stop = new AbortController();
  const both = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  const missing = bucketMissing(repo, both).then((problem) => {
    if (!problem) return new Promise<never>(() => undefined);
    // The work is stopped in `finally`, after this error has won the race.
    throw new EngineError('NotFound', problem);
  });
  try {
    return await Promise.race([work(both), missing]);
  } finally {
    stop.abort();
  }
}

/** Why the repository's bucket is missing ("no bucket …"), or undefined when it exists or cannot be told. */
async function bucketMissing(repo: Repository, signal: AbortSignal): Promise<string | undefined> {
  const m = /^s3:(https?:\/\/[^/]+)\/([^/]+)/.exec(repo.address);
  if (!m) return undefined;
  const [, endpoint, bucket] = m as unknown as [string, string, string];
  try {
    const res = await fetch(`${endpoint}/${bucket}?max-keys=0`, { signal, ...(repo.caCert ? { tls: { ca: repo.caCert } } : {}) });
    const body = await res.text();
    if (res.status === 404 && body.includes('NoSuchBucket')) {
      return `no bucket "${bucket}" at the S3 endpoint ${endpoint}: check --bucket (the BackupLocation's spec.bucketName) and --url`;
    }
  } catch {
    // Unreachable, untrusted, cancelled: restic says so.
  }
  return undefined;
}
