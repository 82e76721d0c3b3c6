/**
 * Scratch directories and their owners. "This process" is played by an Owner passed in, so the case that matters in a
 * container (PID 1 again after a crash, with the same /tmp) is reached without being PID 1; other owners are real
 * processes: a sleeping child (alive) and one that has exited (dead).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import {
  type Owner, claimStableDir, ownerRuns, processStart, scratchDir, stableDirName, sweepStale,
} from '../../src/util/scratch.ts';

const onLinux = processStart('self') !== undefined;
let base: string;
let sleeper: ReturnType<typeof Bun.spawn>;
let dead: number;
beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'scratch-test-'));
  sleeper = Bun.spawn(['sleep', '60']);
  dead = Bun.spawnSync(['true']).pid;
});
afterAll(() => {
  sleeper.kill();
  rmSync(base, { recursive: true, force: true });
});

const dir = (name: string, owner?: string) => {
  mkdirSync(join(base, name));
  if (owner !== undefined) writeFileSync(join(base, name, 'owner'), owner);
  return name;
};

describe.skipIf(!onLinux)('the owner of a directory (Linux: pid, start time and boot)', () => {
  const boot = () => processStart('self')!.split('-')[1]!;

  test('PID 1 again: a directory of an earlier PID 1 is stale, this process\'s own is not', () => {
    const me: Owner = { pid: 1, start: `9000-${boot()}` };
    expect(ownerRuns({ pid: 1, start: `4500-${boot()}` }, me)).toBe(false);
    expect(ownerRuns({ pid: 1, start: `9000-${'0'.repeat(8)}` }, me)).toBe(false);
    expect(ownerRuns({ pid: 1 }, me)).toBe(false);
    expect(ownerRuns({ pid: 1, start: `9000-${boot()}` }, me)).toBe(true);
  });

  test('another pid runs while it is alive and started when the owner did', () => {
    const start = processStart(sleeper.pid)!;
    expect(ownerRuns({ pid: sleeper.pid, start })).toBe(true);
    expect(ownerRuns({ pid: sleeper.pid, start: `1-${boot()}` })).toBe(false);
    // Written by an earlier version, which recorded the pid only.
    expect(ownerRuns({ pid: sleeper.pid })).toBe(true);
    expect(ownerRuns({ pid: dead, start })).toBe(false);
  });

  test('the sweep removes what belongs to no running process, and leaves the rest', () => {
    const me: Owner = { pid: 1, start: `9000-${boot()}` };
    const alive = processStart(sleeper.pid)!;
    const gone = [
      dir(`kubedr-1-4500-${boot()}-aB3dE6`), // an earlier PID 1 of this container: the leak the issue is about
      dir('kubedr-1-oldVer'), // PID 1 of an earlier version (pid only)
      dir(`kubedr-${dead}-7-${boot()}-xYz123`),
      dir(`kubedr-${sleeper.pid}-1-${boot()}-reused`), // the pid lives on in another process
      dir('kubedr-stage-daily-0a1b2c3d', `1-4500-${boot()}`), // a stable directory of the crashed PID 1
      dir('kubedr-stage-weekly-0a1b2c3d'), // no owner file: never complete, nobody's
    ];
    const kept = [
      dir(`kubedr-1-9000-${boot()}-mine12`),
      dir(`kubedr-${sleeper.pid}-${alive}-live12`),
      dir(`kubedr-${sleeper.pid}-legacy`),
      dir('kubedr-stage-hourly-0a1b2c3d', `${sleeper.pid}-${alive}`),
      dir('kubedr-1-init'), // not a name of ours
      dir('other-dir'),
    ];
    expect(sweepStale(base, me).sort()).toEqual(gone.sort());
    for (const name of kept) expect(existsSync(join(base, name))).toBe(true);
    for (const name of gone) expect(existsSync(join(base, name))).toBe(false);
  });
});

describe('scratch directories', () => {
  test('live under one root per process, named with its pid and start', async () => {
    const a = await scratchDir('x');
    const b = await scratchDir('y');
    const owner = onLinux ? `${process.pid}-${processStart('self')}` : String(process.pid);
    expect(basename(join(a, '..'))).toMatch(new RegExp(`^kubedr-${owner}-[A-Za-z0-9]{6}$`));
    expect(join(a, '..')).toBe(join(b, '..'));
  });
});

describe('stable directories', () => {
  test('the same path for a name, a valid file name for any name, distinct per name', () => {
    expect(stableDirName('daily')).toBe(stableDirName('daily'));
    expect(stableDirName('daily')).toMatch(/^kubedr-stage-daily-[0-9a-f]{8}$/);
    expect(stableDirName('a_b')).not.toBe(stableDirName('a-b'));
    expect(stableDirName('../../etc')).toMatch(/^kubedr-stage-etc-[0-9a-f]{8}$/);
    expect(stableDirName('x'.repeat(253)).length).toBeLessThan(100);
  });

  test('one holder at a time; released, it is gone and can be claimed again', async () => {
    const first = await claimStableDir('policy-a', base);
    expect(first?.path).toBe(join(base, stableDirName('policy-a')));
    expect(readFileSync(join(first!.path, 'owner'), 'utf8')).toStartWith(`${process.pid}`);
    expect(await claimStableDir('policy-a', base)).toBeUndefined();
    // This process's claim survives its own sweep.
    expect(sweepStale(base)).not.toContain(stableDirName('policy-a'));
    await first!.release();
    expect(existsSync(first!.path)).toBe(false);
    const again = await claimStableDir('policy-a', base);
    expect(again?.path).toBe(first!.path);
    await again!.release();
  });

  test('one left by a process that no longer runs is taken over, emptied; a running holder keeps it', async () => {
    const left = dir(stableDirName('policy-b'), String(dead));
    writeFileSync(join(base, left, 'etcd-snapshot.db'), 'left by a crash');
    const claim = await claimStableDir('policy-b', base);
    expect(claim?.path).toBe(join(base, left));
    expect(existsSync(join(base, left, 'etcd-snapshot.db'))).toBe(false);
    await claim!.release();

    dir(stableDirName('policy-c'), `${sleeper.pid}${onLinux ? `-${processStart(sleeper.pid)}` : ''}`);
    expect(await claimStableDir('policy-c', base)).toBeUndefined();
  });
});
