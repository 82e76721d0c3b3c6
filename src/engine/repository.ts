/** @module S3 repository addresses and "open or create" of a restic repository. */
import { EngineError } from './errors.ts';
import { isAlreadyInitialized } from './restic-output.ts';
import type { Repository, Restic, RunOptions } from './restic.ts';

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
 * Runs `fn`; if the repository is locked, removes every lock and tries once more.
 *
 * Why removing every lock is safe: a kubedr repository has one writer, the controller that holds the leader lease, and
 * this process runs its writes one at a time (`Restic.exclusive`); everything read-only (sync, `kubedr snapshots`,
 * `kubedr restore`, restore pods) takes no lock. So a lock met here belongs to a writer that is gone: a controller
 * killed during a backup or prune, or a former leader that was fenced and stopped. `restic unlock` alone removes only
 * locks of dead processes on this host, or older than 30 minutes, so a predecessor on another node (another host name)
 * would block every backup for up to 30 minutes. Other tools must not write to a kubedr repository (README).
 */
export async function withStaleLockRetry<T>(restic: Restic, repo: Repository, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof EngineError) || err.kind !== 'Locked') throw err;
    await restic.run(repo, ['unlock', '--remove-all']);
    return fn();
  }
}
