/** @module What the benchmark scripts (bench.ts, measure-startup.ts) share: running a command, reading a process's memory. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Runs a command to completion and returns its stdout; throws with its stderr when it fails. */
export function sh(cmd: string[], env: Record<string, string> = {}, input?: string): string {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', input, env: { ...process.env, ...env }, maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** VmRSS (now) and VmHWM (peak) of a process in MB; zeros once it has exited. */
export function memoryMb(pid: number): { rss: number; hwm: number } {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return { rss: 0, hwm: 0 };
  }
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}
