/**
 * @module Processes of the test cluster: long-running ones started detached with their own log and stopped by PID, and
 * short commands run to completion.
 */
import { spawn, spawnSync } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { isAlive } from '../../src/util/process.ts';

export interface ProcState {
  pid: number;
  cmd: string[];
  log: string;
}

/** Starts `cmd` in its own session (so its children can be killed with it), output appended to logs/<name>.log. */
export function startProc(dir: string, name: string, cmd: string[]): ProcState {
  const log = join(dir, 'logs', `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawn(cmd[0]!, cmd.slice(1), { detached: true, stdio: ['ignore', fd, fd] });
  child.unref();
  if (!child.pid) throw new Error(`could not start ${name}: ${cmd[0]}`);
  return { pid: child.pid, cmd, log };
}

/**
 * True once `pid` has exited: gone, or a zombie not reaped yet (isAlive counts those as dead). The node's daemons
 * outlive the process that started them, so init is their parent, and it reaps only every 2 s or so: waiting for the
 * pid to vanish cost 2 s a process.
 */
export function exited(pid: number): boolean {
  return !isAlive(pid);
}

/**
 * Whether `p.pid` still runs the command recorded for it. A process of the node that died is replaced, by pid, by any
 * process the kernel starts next: once the stop of one node killed the S3 server another node had just started under
 * the pid its own dead one had had.
 */
export function stillOurs(p: ProcState): boolean {
  try {
    const args = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').replace(/\0$/, '').split('\0');
    // A wrapper (unshare, nsenter) execs the command at the end of the recorded line.
    const tail = p.cmd.slice(p.cmd.length - args.length);
    return tail.length === args.length && basename(tail[0] ?? '') === basename(args[0] ?? '') && tail.every((a, i) => i === 0 || args[i] === a);
  } catch {
    return false;
  }
}

/** Whether `p` still runs the command recorded for it (a pid reused by another process is not ours). */
export const runningOurs = (p: ProcState | undefined): p is ProcState => !!p && !exited(p.pid) && stillOurs(p);

/** SIGTERM to the process group, SIGKILL after `graceMs`; returns once the process has exited. Another's pid is left alone. */
export async function killProc(p: ProcState | undefined, graceMs = 5000): Promise<void> {
  if (!runningOurs(p)) return;
  const signal = (s: NodeJS.Signals) => {
    try { process.kill(-p.pid, s); } catch { try { process.kill(p.pid, s); } catch { /* gone */ } }
  };
  signal('SIGTERM');
  for (let i = 0; i < graceMs / 100 && !exited(p.pid); i++) await Bun.sleep(100);
  if (exited(p.pid)) return;
  signal('SIGKILL');
  for (let i = 0; i < 50 && !exited(p.pid); i++) await Bun.sleep(100);
}

export function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Polls `check` until true; fails early, with the log's tail, if the process exits. */
export async function waitFor(what: string, p: ProcState, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited(p.pid)) throw new Error(`${what} exited during start-up; last log lines:\n${tail(p.log)}`);
    if (await Promise.resolve().then(check).catch(() => false)) return;
    await Bun.sleep(250);
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms; last log lines:\n${tail(p.log)}`);
}

/** Runs a command to completion; throws with its output when it fails. Returns its stdout. */
export function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, env: opts.env ?? process.env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}
/** Runs a command to completion, whatever its exit status. */
export const tryRun = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' });
