import { afterAll, expect, test } from 'bun:test';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeScratchRoot, scratchDir, sweepStale } from '../../src/util/scratch.ts';

// bun test runs no exit handlers: remove this process's scratch root ourselves (it is recreated if needed again).
afterAll(removeScratchRoot);

test('directories of dead processes are swept; live ones and unrelated ones stay', () => {
  const base = mkdtempSync(join(tmpdir(), 'sweep-test-'));
  try {
    const dead = Bun.spawnSync(['true']).pid;
    for (const name of [`kubedr-${dead}-abc`, `kubedr-${process.pid}-mine`, 'kubedr-1-init', 'other-dir']) mkdirSync(join(base, name));
    expect(sweepStale(base)).toEqual([`kubedr-${dead}-abc`]);
    expect(existsSync(join(base, `kubedr-${process.pid}-mine`))).toBe(true);
    expect(existsSync(join(base, 'kubedr-1-init'))).toBe(true);
    expect(existsSync(join(base, 'other-dir'))).toBe(true);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('scratch directories live under one per-process root', async () => {
  const a = await scratchDir('x');
  const b = await scratchDir('y');
  expect(a).toContain(`kubedr-${process.pid}-`);
  expect(join(a, '..')).toBe(join(b, '..'));
});
