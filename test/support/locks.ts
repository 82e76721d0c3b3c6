/**
 * @module A real restic prune holding a repository's exclusive lock, frozen (SIGSTOP) so the lock stays for as long as
 * a test needs it: a live prune of another writer as every other reader or writer of the bucket meets it. The lock seen
 * appearing may be another's (the controller's sync takes a shared one) or the prune's own, about to be removed again
 * because of that other lock; so the prune is frozen the moment a new lock file appears, and kept only once restic itself
 * shows its exclusive lock under `hostName`. Otherwise it runs on, and is started again if it ended.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { S3_ACCESS_KEY, S3_SECRET_KEY } from '../../scripts/cluster/node.ts';
import { cluster, eventually, resticAt } from './e2e.ts';
import { listKeys } from './s3.ts';

/** The repository's locks as restic shows them (`restic cat lock`): whose process, exclusive or not. */
export function repositoryLocks(bucket: string, password: string): { pid: number; exclusive: boolean; hostname: string }[] {
  return resticAt(bucket, password, ['list', 'locks', '--no-lock']).stdout.trim().split('\n').filter(Boolean).flatMap((id) => {
    const out = resticAt(bucket, password, ['cat', 'lock', id, '--no-lock']).stdout;
    return out ? [JSON.parse(out) as { pid: number; exclusive: boolean; hostname: string }] : [];
  });
}

/** The direct children of `parent` whose command line matches: `ps` as a person would read it. */
function children(parent: number, match: RegExp): number[] {
  const r = spawnSync('ps', ['-o', 'pid=,args=', '--ppid', String(parent)], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').map((l) => l.trim()).filter((l) => match.test(l)).map((l) => Number(l.split(/\s+/)[0]));
}

export interface FrozenChild {
  pid: number;
  thaw(): void;
}

/**
 * The controller's own restic run matching `match` (e.g. its prune, or a verification's restore), frozen (SIGSTOP)
 * while it holds its lock in the repository: work that is slow at exactly that point, as on a stalled S3, for as long
 * as the test needs. Frozen at once when seen, then kept only once restic lists a lock with its pid (exclusive if
 * asked); before that it is let run a few milliseconds more. Throws if the run ends or never locks within `timeoutMs`.
 */
export async function frozenChild(parent: number, match: RegExp, bucket: string, password: string,
  opts: { exclusive?: boolean; timeoutMs?: number } = {}): Promise<FrozenChild> {
  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  let pid: number | undefined;
  while (Date.now() < deadline) {
    pid ??= children(parent, match)[0];
    if (pid === undefined) {
      await Bun.sleep(10);
      continue;
    }
    try {
      process.kill(pid, 'SIGSTOP');
    } catch {
      pid = undefined; // it ended before it was caught: wait for the next one
      continue;
    }
    if (repositoryLocks(bucket, password).some((l) => l.pid === pid && (!opts.exclusive || l.exclusive))) {
      const frozen = pid;
      return { pid: frozen, thaw: () => { try { process.kill(frozen, 'SIGCONT'); } catch { /* ended */ } } };
    }
    process.kill(pid, 'SIGCONT');
    await Bun.sleep(15);
  }
  throw new Error(`no run of the controller matching ${match} held a lock in ${bucket} within ${opts.timeoutMs ?? 90_000} ms`);
}

export interface FrozenPrune {
  /** Kills it while it holds the lock: a crashed writer's lock is left behind. */
  kill(): Promise<void>;
  /** Lets it run on: it finishes and removes its lock. */
  thaw(): Promise<void>;
}

export async function frozenPrune(bucket: string, password: string, hostName: string): Promise<FrozenPrune> {
  const repo = `s3:${cluster().s3Url}/${bucket}`;
  const env = { ...process.env, AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY, RESTIC_PASSWORD: password };
  // First no lock at all (an earlier backup's, or the verification that follows it, goes away within seconds): the
  // lock watched for below is then the prune's. A verification's lock taken for the prune's once made the prune die
  // before it locked anything.
  await eventually(async () => { if ((await listKeys(bucket, 'locks/')).length) throw new Error('locks held'); }, 60_000, 100);
  const cmd = `hostname ${hostName} && exec restic --no-cache --cacert ${join(cluster().pki, 'ca.crt')} -r ${repo} prune`;
  // Watched through S3 listings (milliseconds each): a `restic list locks` per poll takes about as long as a prune of
  // a small repository with restic 0.18, so the prune could finish and remove its lock between two polls.
  const lockFiles = () => listKeys(bucket, 'locks/');
  const heldByPrune = () => repositoryLocks(bucket, password).some((l) => l.hostname === hostName && l.exclusive);
  for (let attempt = 1; attempt <= 5; attempt++) {
    const before = new Set(await lockFiles());
    // Its own UTS namespace: the host name restic writes into its lock is the one given, not this machine's.
    const prune: ChildProcess = spawn('unshare', ['--uts', 'sh', '-c', cmd], { env, stdio: 'ignore', detached: true });
    let exited = false;
    const exit = new Promise<void>((ok) => prune.once('exit', () => { exited = true; ok(); }));
    while (!exited) {
      const now = await lockFiles();
      if (now.some((f) => !before.has(f))) {
        // Frozen, so its lock cannot go while restic itself is asked whose it is.
        process.kill(-prune.pid!, 'SIGSTOP');
        if (heldByPrune()) {
          return {
            kill: async () => { process.kill(-prune.pid!, 'SIGKILL'); await exit; },
            thaw: async () => { process.kill(-prune.pid!, 'SIGCONT'); await exit; },
          };
        }
        now.forEach((f) => before.add(f));
        process.kill(-prune.pid!, 'SIGCONT');
      }
      await Bun.sleep(5);
    }
  }
  throw new Error(`no prune on ${hostName} held the exclusive lock in 5 attempts`);
}
