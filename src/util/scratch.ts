/**
 * @module Temporary files of this process live under one directory, `<tmp>/kubedr-<pid>-XXXX`, removed when the process
 * exits. A process that was killed cannot clean up, so the next one removes directories whose pid is no longer alive.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAlive } from './process.ts';

let root: string | undefined;

/** Removes scratch directories left by processes that no longer run. */
export function sweepStale(base = tmpdir()): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(base)) {
    const m = /^kubedr-(\d+)-/.exec(name);
    if (!m || Number(m[1]) === process.pid || isAlive(Number(m[1]))) continue;
    rmSync(join(base, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

function processRoot(): string {
  if (root && existsSync(root)) return root;
  if (!root) {
    sweepStale();
    process.on('exit', removeScratchRoot);
  }
  root = mkdtempSync(join(tmpdir(), `kubedr-${process.pid}-`));
  return root;
}

/** Removes this process's scratch root (on exit; and by tests, whose runner does not run exit handlers). */
export function removeScratchRoot(): void {
  if (root) rmSync(root, { recursive: true, force: true });
}

/** A new private (0700) directory for one operation; the caller removes it, and process exit removes what is left. */
export function scratchDir(prefix: string): Promise<string> {
  return mkdtemp(join(processRoot(), `${prefix}-`));
}
