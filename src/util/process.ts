/** @module Whether a process id names a running process, and in which state. */
import { readFileSync } from 'node:fs';

/** True for a running process; false for none, and for a zombie (dead, not yet reaped by its parent). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return processState(pid) !== 'Z';
}

/** The process's state letter from /proc (R, S, D, T stopped by a signal, Z zombie, …), or undefined when unreadable. */
export function processState(pid: number): string | undefined {
  try {
    // "<pid> (<comm>) <state> …": comm may hold spaces and parentheses, so the state follows the last ")".
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}
