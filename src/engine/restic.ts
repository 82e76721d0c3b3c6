/**
 * @module Runs restic against an S3 repository. The repository password (and a new one for `key add`) goes to restic
 * in a file only this user can read, in a private temporary directory removed on every path: an environment variable
 * would be readable in /proc/<pid>/environ for as long as restic runs and inherited by whatever it starts. The S3 keys
 * travel in the child's environment (restic reads them nowhere else), never in argv; a CA bundle goes to the same
 * private directory. Cancellation sends SIGINT (restic then
 * removes its lock) and SIGKILL after a grace period.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tcpProblem } from '../util/net.ts';
import { scratchDir } from '../util/scratch.ts';
import { EngineError } from './errors.ts';
import { classifyResticError, credentialsRefusal } from './restic-output.ts';

/** Where a repository is and what opens it. Plain values: the engine knows nothing about Kubernetes. */
export interface Repository {
  /** restic repository address, `s3:<url>/<bucket>`. */
  address: string;
  password: string;
  accessKey: string;
  secretKey: string;
  /** PEM CA bundle for an endpoint with a private CA. */
  caCert?: string;
}

export interface ResticOptions {
  binary?: string;
  /** restic's local cache; without one, `--no-cache`. */
  cacheDir?: string;
  /** Default time limit of one restic run. */
  timeoutMs?: number;
  /** How long a write waits for another writer's lock before it fails (repository.ts, withLockWait). */
  lockWaitMs?: number;
}

export interface RunOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Called with each stdout line as it arrives (restic --json progress). */
  onLine?: (line: string) => void;
  /** Working directory (relative backup paths are stored as given). */
  cwd?: string;
  /** Called with each stderr line as it arrives (restic reports retries there). */
  onStderrLine?: (line: string) => void;
  /** Exit codes besides 0 that are an answer, not a failure (`restic check` exits 1 when it finds damage). */
  answerCodes?: number[];
  /** A file restic reads as its standard input (`backup --stdin`). */
  stdinFile?: string;
  /** The password `key add` / `key passwd` sets: passed as `--new-password-file`, in a private file removed afterwards. */
  newPassword?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** restic's exit code: 0, or one of RunOptions.answerCodes. */
  code?: number;
}

const KILL_GRACE_MS = 5_000;

/**
 * Whether restic can read this password from a file: restic trims white space from what it reads there (0.18, measured:
 * a repository made with " pw " does not open with a file holding " pw "), so a password that begins or ends with
 * white space (a newline left by `kubectl create secret --from-file`) must still travel in RESTIC_PASSWORD, or an
 * existing repository would stop opening.
 */
export function passwordFitsFile(password: string): boolean {
  return password === password.trim();
}

/**
 * The environment restic sees: only what it needs, so stray AWS_* or RESTIC_* settings of the controller do not leak
 * in. The password is not among them unless it cannot go in a file (passwordFitsFile): restic reads `passwordFile`.
 */
function childEnv(repo: Repository, passwordFile: string | undefined): Record<string, string> {
  const env: Record<string, string> = {
    AWS_ACCESS_KEY_ID: repo.accessKey,
    AWS_SECRET_ACCESS_KEY: repo.secretKey,
    ...(passwordFile ? { RESTIC_PASSWORD_FILE: passwordFile } : { RESTIC_PASSWORD: repo.password }),
  };
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG']) {
    const v = process.env[k];
    if (v) env[k] = v;
  }
  return env;
}

async function collectLines(stream: ReadableStream<Uint8Array>, onLine?: (line: string) => void): Promise<string> {
  const decoder = new TextDecoder();
  let all = '';
  let pending = '';
  for await (const chunk of stream) {
    const s = decoder.decode(chunk, { stream: true });
    all += s;
    if (!onLine) continue;
    pending += s;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      onLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  }
  if (onLine && pending) onLine(pending);
  return all;
}

/** The endpoint of a repository address `s3:<url>/<bucket>`, e.g. https://s3.example.com:9000 (any other address as is). */
export function endpointOf(address: string): string {
  return /^s3:(https?:\/\/[^/]+)/.exec(address)?.[1] ?? address;
}

/**
 * restic >= 0.17 retries a failing backend for 15 minutes, whatever the cause and with no option to shorten it
 * (restic/restic#5517), so an S3 endpoint that is down would hold every command, and a backup slot, that long. One TCP
 * connect first turns "nothing listens there" into an immediate, plain failure; restic still retries a blip that
 * happens during a run, which is what its retries are for.
 */
async function failFastIfUnreachable(address: string): Promise<void> {
  if (!address.startsWith('s3:http')) return;
  const endpoint = endpointOf(address);
  const problem = await tcpProblem(endpoint);
  if (problem) throw new EngineError('Unreachable', `S3 endpoint unreachable: ${endpoint}: ${problem}`);
}

/**
 * The restic processes of this process, whichever Restic started them: none may outlive it. A shutdown that reaches
 * its time limit exits before a cancelled restic's SIGKILL is due, and a restic that hangs or is stopped would keep
 * its repository lock, live by restic's own rule (its pid runs), for 30 minutes.
 */
const everyChild = new Set<number>();
let reaper = false;
function trackChild(pid: number, exited: Promise<unknown>): void {
  if (!reaper) {
    reaper = true;
    process.on('exit', () => {
      for (const p of everyChild) {
        try {
          process.kill(p, 'SIGKILL');
        } catch { /* already gone */ }
      }
    });
  }
  everyChild.add(pid);
  void exited.then(() => everyChild.delete(pid));
}

export class Restic {
  private readonly binary: string;
  private readonly tails = new Map<string, Promise<unknown>>();
  private readonly children = new Set<number>();
  /** Maintenance queued or running per repository address, oldest first (see maintenanceDone). */
  private readonly maintenance = new Map<string, { what: string; done: Promise<unknown> }[]>();
  private commandSource?: Promise<boolean>;

  /** How long a write waits for another writer's lock before it fails. */
  readonly lockWaitMs: number;

  constructor(private readonly opts: ResticOptions = {}) {
    this.binary = opts.binary ?? 'restic';
    this.lockWaitMs = opts.lockWaitMs ?? 2 * 60_000;
  }

  /** Runs `restic -r <repo> <args>`; resolves with its output or throws an EngineError naming the cause. */
  async run(repo: Repository, args: string[], run: RunOptions = {}): Promise<RunResult> {
    await failFastIfUnreachable(repo.address);
    const tmp = await scratchDir('restic');
    try {
      const argv = [this.binary, '-r', repo.address];
      argv.push(...(this.opts.cacheDir ? ['--cache-dir', this.opts.cacheDir] : ['--no-cache']));
      if (repo.caCert) {
        const caFile = join(tmp, 'ca.crt');
        await writeFile(caFile, repo.caCert, { mode: 0o600 });
        argv.push('--cacert', caFile);
      }
      const passwordFile = passwordFitsFile(repo.password) ? join(tmp, 'password') : undefined;
      if (passwordFile) await writeFile(passwordFile, repo.password, { mode: 0o600 });
      argv.push(...args);
      if (run.newPassword !== undefined) {
        // The caller refuses a new password that a file would change (keyRotationProblem): restic would set the
        // trimmed one, and the Secret's value would never open the repository.
        if (!passwordFitsFile(run.newPassword)) throw new EngineError('InvalidInput', 'the new repository password begins or ends with white space');
        const newFile = join(tmp, 'new-password');
        await writeFile(newFile, run.newPassword, { mode: 0o600 });
        argv.push('--new-password-file', newFile);
      }
      return await this.spawn(argv, childEnv(repo, passwordFile), run, args[0] ?? '');
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  private async spawn(argv: string[], env: Record<string, string>, run: RunOptions, command: string): Promise<RunResult> {
    const timeoutMs = run.timeoutMs ?? this.opts.timeoutMs ?? 10 * 60_000;
    let proc: ReturnType<typeof Bun.spawn<'ignore' | Bun.BunFile, 'pipe', 'pipe'>>;
    try {
      proc = Bun.spawn(argv, { env, cwd: run.cwd, stdin: run.stdinFile ? Bun.file(run.stdinFile) : 'ignore', stdout: 'pipe', stderr: 'pipe' });
    } catch (err) {
      throw new EngineError('Failed', `cannot start restic (${this.binary}): ${(err as Error).message}`, { cause: err });
    }
    this.children.add(proc.pid);
    void proc.exited.then(() => this.children.delete(proc.pid));
    trackChild(proc.pid, proc.exited);
    let stopped: 'timeout' | 'cancel' | 'refused' | undefined;
    let refusal = '';
    const stop = (why: 'timeout' | 'cancel' | 'refused') => {
      if (stopped) return;
      stopped = why;
      proc.kill('SIGINT');
      setTimeout(() => proc.kill('SIGKILL'), KILL_GRACE_MS).unref();
    };
    const timer = setTimeout(() => stop('timeout'), timeoutMs);
    const onAbort = () => stop('cancel');
    run.signal?.addEventListener('abort', onAbort);
    if (run.signal?.aborted) onAbort();
    try {
      const onStderrLine = (line: string) => {
        const refused = credentialsRefusal(line);
        if (refused && !stopped) {
          refusal = refused;
          stop('refused');
        }
        run.onStderrLine?.(line);
      };
      const [stdout, stderr, code] = await Promise.all([
        collectLines(proc.stdout, run.onLine), collectLines(proc.stderr, onStderrLine), proc.exited,
      ]);
      if (stopped === 'refused') throw new EngineError('AccessDenied', refusal);
      if (stopped === 'timeout') throw new EngineError('Timeout', `restic ${command} did not finish within ${Math.round(timeoutMs / 1000)} s`);
      if (stopped === 'cancel') throw new EngineError('Cancelled', `restic ${command} was cancelled`);
      if (code !== 0 && !run.answerCodes?.includes(code)) {
        const c = classifyResticError(stderr);
        throw new EngineError(c.kind, c.message);
      }
      return { stdout, stderr, code };
    } finally {
      clearTimeout(timer);
      run.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Runs `fn` when no other serialised operation on the same repository is running in this process, so our own runs
   * never meet on restic's repository lock (KubeDR's parallel forget pods did).
   */
  async exclusive<T>(repo: Repository, fn: () => Promise<T>, maintenance?: string): Promise<T> {
    const before = this.tails.get(repo.address) ?? Promise.resolve();
    const mine = before.catch(() => undefined).then(fn);
    const tail = mine.catch(() => undefined);
    this.tails.set(repo.address, tail);
    const entry = maintenance ? { what: maintenance, done: tail } : undefined;
    if (entry) this.maintenance.set(repo.address, [...(this.maintenance.get(repo.address) ?? []), entry]);
    try {
      return await mine;
    } finally {
      if (this.tails.get(repo.address) === tail) this.tails.delete(repo.address);
      if (entry) {
        const left = (this.maintenance.get(repo.address) ?? []).filter((m) => m !== entry);
        if (left.length) this.maintenance.set(repo.address, left);
        else this.maintenance.delete(repo.address);
      }
    }
  }

  /**
   * Resolves once no maintenance (a prune, a forget: `exclusive` with a `maintenance` label) is queued or running on the
   * repository in this process; `onWait` is told what it waits for. A backup waits here before it takes a backup slot,
   * so a long prune of one location never holds up backups to the others.
   */
  async maintenanceDone(repo: Repository, signal: AbortSignal, onWait?: (what: string) => void): Promise<void> {
    for (let m = this.maintenance.get(repo.address); m?.length; m = this.maintenance.get(repo.address)) {
      onWait?.(m[0]!.what);
      await Promise.race([Promise.allSettled(m.map((x) => x.done)), new Promise((ok) => signal.addEventListener('abort', ok, { once: true }))]);
      if (signal.aborted) throw new EngineError('Cancelled', 'cancelled while waiting for the repository\'s maintenance');
    }
  }

  /** Process ids of the restic commands this object runs right now: a lock with one of them (on this host) is ours. */
  livePids(): ReadonlySet<number> {
    return this.children;
  }

  /**
   * Whether this restic can store what a command writes (`backup --stdin-from-command`, restic ≥ 0.17), saving no
   * snapshot when the command fails. Asked once per object.
   */
  readsCommands(): Promise<boolean> {
    this.commandSource ??= this.version().then((v) => {
      const m = /restic (\d+)\.(\d+)/.exec(v);
      return !!m && (Number(m[1]) > 0 || Number(m[2]) >= 17);
    }, () => false);
    return this.commandSource;
  }

  /** `restic version`, e.g. "restic 0.14.0 compiled with go1.19.8 on linux/amd64". */
  async version(): Promise<string> {
    const proc = Bun.spawn([this.binary, 'version'], { stdout: 'pipe', stderr: 'pipe' });
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    return out.trim();
  }
}
