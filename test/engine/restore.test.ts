import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EngineError } from '../../src/engine/errors.ts';
import { originTags } from '../../src/engine/origin.ts';
import { PREVIOUS_DATA_DIR, parseRestoreOutcome, pickSnapshot, recoverInterruptedReplace, removeStaleStages, restoreBackup } from '../../src/engine/restore.ts';
import type { SnapshotInfo } from '../../src/engine/restic-output.ts';
import { type Repository, Restic, type RunOptions, type RunResult } from '../../src/engine/restic.ts';

const snap = (id: string, tag: string, time: string): SnapshotInfo =>
  ({ id, shortId: id.slice(0, 8), time, hostname: 'cp-1', tags: [tag], paths: ['/data'] });
// Newest first, as listSnapshots returns them.
const two = [
  snap('bbbb2222cccc', 'daily', '2026-11-25T03:00:00Z'),
  snap('aaaa1111dddd', 'daily', '2026-11-24T03:00:00Z'),
];
const mixed = [snap('cccc3333eeee', 'hourly', '2026-11-25T04:00:00Z'), ...two];

const kindOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err instanceof EngineError ? `${err.kind}: ${err.message}` : String(err);
  }
  return 'no error';
};

describe('pickSnapshot', () => {
  test('latest is the newest snapshot of the only policy', () => {
    expect(pickSnapshot(two, 'latest').id).toBe('bbbb2222cccc');
  });
  test('latest among several policies needs a policy, and names them', () => {
    expect(kindOf(() => pickSnapshot(mixed, 'latest'))).toBe(
      'InvalidInput: "latest" is ambiguous: the repository holds backups of several policies (daily, hourly); choose one with --policy');
    expect(pickSnapshot(mixed, 'latest', { policy: 'daily' }).id).toBe('bbbb2222cccc');
  });
  test('an id prefix picks its snapshot; an ambiguous or unknown one is an error', () => {
    expect(pickSnapshot(mixed, 'aaaa1111').id).toBe('aaaa1111dddd');
    expect(kindOf(() => pickSnapshot([...mixed, snap('aaaa1111ffff', 'x', '2026-01-01T00:00:00Z')], 'aaaa1111'))).toMatch(/^InvalidInput: .*ambiguous/);
    expect(kindOf(() => pickSnapshot(mixed, 'deadbeef'))).toBe('NotFound: no snapshot "deadbeef" in the repository');
  });
  test('an id of another policy is not found when a policy is given', () => {
    expect(kindOf(() => pickSnapshot(mixed, 'cccc3333', { policy: 'daily' }))).toBe('NotFound: no snapshot "cccc3333" of policy "daily" in the repository');
  });
  test('latest across clusters (or installs) sharing the bucket needs --cluster, and names them; an id needs none', () => {
    const prod = { clusterId: '4f1c0a9e-1111-4222-8333-944455556666', clusterName: 'prod', namespace: 'kubedr-system' };
    const staging = { clusterId: '0b9d2c7e-aaaa-4bbb-8ccc-dddddddddddd', clusterName: 'staging', namespace: 'kubedr-system' };
    const shared = [
      { ...snap('eeee5555aaaa', 'daily', '2026-11-25T05:00:00Z'), tags: ['daily', ...originTags(staging)] },
      { ...snap('ffff6666bbbb', 'daily', '2026-11-25T04:00:00Z'), tags: ['daily', ...originTags(prod)] },
      { ...snap('abab7777cccc', 'daily', '2026-11-25T03:00:00Z'), tags: ['daily', ...originTags({ ...prod, namespace: 'other' })] },
      snap('cdcd8888dddd', 'daily', '2026-11-20T03:00:00Z'),
    ];
    expect(kindOf(() => pickSnapshot(shared, 'latest', { policy: 'daily' }))).toBe('InvalidInput: "latest" is ambiguous: the bucket ' +
      'holds backups of policy "daily" of several clusters or installs (- (no cluster identity: taken before kubedr recorded one); ' +
      'prod (4f1c0a9e) in namespace kubedr-system; prod (4f1c0a9e) in namespace other; staging (0b9d2c7e) in namespace kubedr-system); ' +
      'choose one with --cluster NAME|ID (see kubedr snapshots)');
    expect(pickSnapshot(shared, 'latest', { cluster: 'staging' }).id).toBe('eeee5555aaaa');
    expect(pickSnapshot(shared, 'latest', { cluster: '4f1c0a9e/kubedr-system' }).id).toBe('ffff6666bbbb');
    expect(pickSnapshot(shared, 'latest', { cluster: 'prod/other' }).id).toBe('abab7777cccc');
    expect(pickSnapshot(shared, 'latest', { cluster: '-' }).id).toBe('cdcd8888dddd');
    expect(kindOf(() => pickSnapshot(shared, 'latest', { cluster: 'prod' }))).toMatch(/^InvalidInput: "latest" is ambiguous/);
    expect(pickSnapshot(shared, 'ffff6666').id).toBe('ffff6666bbbb');
    expect(kindOf(() => pickSnapshot(shared, 'latest', { cluster: 'nope' }))).toBe('NotFound: no snapshots of cluster nope in the repository');
  });
  test('no snapshots, or not an id', () => {
    expect(kindOf(() => pickSnapshot([], 'latest'))).toBe('NotFound: no snapshots in the repository');
    expect(kindOf(() => pickSnapshot(two, 'yesterday'))).toMatch(/^InvalidInput: "yesterday" is not a snapshot id/);
  });
});

describe('parseRestoreOutcome', () => {
  test('reads the JSON a restore run writes, and nothing else', () => {
    expect(parseRestoreOutcome('{"ok":false,"error":"wrong repository password","exitCode":3}'))
      .toEqual({ ok: false, error: 'wrong repository password', exitCode: 3 });
    expect(parseRestoreOutcome('panic: runtime error')).toBeUndefined();
    expect(parseRestoreOutcome('{"truncated')).toBeUndefined();
    expect(parseRestoreOutcome(undefined)).toBeUndefined();
  });
});

/** restic playing `snapshots` and `restore`; a restore writes a valid backup into its --target, or hangs until stopped. */
class PlayedRestic extends Restic {
  hang = false;
  restored = 0;
  /** Restores refused as locked before one goes through (a prune holding the repository). */
  lockedFor = 0;
  restores: string[][] = [];

  override async run(_repo: Repository, args: string[], run: RunOptions = {}): Promise<RunResult> {
    if (args[0] === 'unlock') return { stdout: '', stderr: '' };
    if (args[0] === 'restore') this.restores.push(args);
    if (args[0] === 'restore' && this.lockedFor-- > 0) throw new EngineError('Locked', 'repository is locked by PID 3 on cp-1 since 2026-12-04 18:00:00 (exclusive)');
    if (args[0] === 'snapshots') return { stdout: JSON.stringify([{ id: SNAPSHOT_ID, short_id: SNAPSHOT_ID.slice(0, 8), time: '2026-11-30T10:00:00Z', tags: ['daily'] }]), stderr: '' };
    if (args[0] !== 'restore') throw new Error(`unexpected restic ${args.join(' ')}`);
    const stage = args[args.indexOf('--target') + 1]!;
    mkdirSync(join(stage, 'data/certificates'), { recursive: true });
    writeFileSync(join(stage, 'data/etcd-snapshot.db'), etcdSnapshot(`backup ${++this.restored}`));
    writeFileSync(join(stage, 'data/certificates/ca.crt'), 'ca');
    if (this.hang) {
      const why = await new Promise<'cancel' | 'timeout'>((ok) => {
        run.signal?.addEventListener('abort', () => ok('cancel'), { once: true });
        setTimeout(() => ok('timeout'), run.timeoutMs ?? 60_000);
      });
      throw why === 'cancel' ? new EngineError('Cancelled', 'restic restore was cancelled') : new EngineError('Timeout', 'restic restore did not finish');
    }
    return { stdout: '', stderr: '' };
  }
}

const SNAPSHOT_ID = `0123abcd${'0'.repeat(56)}`;
/** An etcd snapshot file: content and its SHA-256 trailer. */
const etcdSnapshot = (content: string) => Buffer.concat([Buffer.from(content), createHash('sha256').update(content).digest()]);
const repo: Repository = { address: 's3:https://s3.example.com/b', password: 'p', accessKey: 'a', secretKey: 's' };

describe('restoreBackup into a target', () => {
  let target: string;
  beforeEach(() => {
    target = mkdtempSync(join(tmpdir(), 'restore-target-'));
  });
  afterEach(() => rmSync(target, { recursive: true, force: true }));

  const entries = () => readdirSync(target).sort();
  const oldData = () => {
    mkdirSync(join(target, 'data'));
    writeFileSync(join(target, 'data/etcd-snapshot.db'), 'old');
  };

  test('replaces data/ with the verified backup, leaving nothing else behind', async () => {
    oldData();
    const r = await restoreBackup(new PlayedRestic(), { repo, snapshot: 'latest', target, overwrite: true });
    expect(r.snapshot.id).toBe(SNAPSHOT_ID);
    expect(readFileSync(join(target, 'data/etcd-snapshot.db'))).toEqual(etcdSnapshot('backup 1'));
    expect(entries()).toEqual(['data']);
  });

  test('the chosen snapshot is told before anything is downloaded; a refusal there downloads nothing and leaves the target as it was', async () => {
    oldData();
    const restic = new PlayedRestic();
    const told: string[] = [];
    const refused = await restoreBackup(restic, { repo, snapshot: 'latest', target, overwrite: true, onChosen: (s) => {
      told.push(s.id);
      throw new EngineError('InvalidInput', 'not this one');
    } }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(EngineError);
    expect(told).toEqual([SNAPSHOT_ID]);
    expect(restic.restores).toEqual([]);
    expect(entries()).toEqual(['data']);
    expect(readFileSync(join(target, 'data/etcd-snapshot.db'), 'utf8')).toBe('old');
  });

  test('by default no lock (read-only S3 keys can restore); with sharedLock restic\'s shared lock, waiting out a prune', async () => {
    const plain = new PlayedRestic();
    await restoreBackup(plain, { repo, snapshot: 'latest', target: join(target, 'a') });
    expect(plain.restores[0]).toContain('--no-lock');
    const shared = new PlayedRestic({ lockWaitMs: 10_000 });
    shared.lockedFor = 1;
    const steps: string[] = [];
    await restoreBackup(shared, { repo, snapshot: 'latest', target: join(target, 'b'), sharedLock: true, onStep: (x) => steps.push(x) });
    expect(shared.restores.map((a) => a.includes('--no-lock'))).toEqual([false, false]);
    expect(steps).toContain('waiting: repository is locked by PID 3 on cp-1 since 2026-12-04 18:00:00 (exclusive)');
  });

  test('a run killed after moving the old data aside: the next run puts it back first', async () => {
    mkdirSync(join(target, PREVIOUS_DATA_DIR));
    writeFileSync(join(target, PREVIOUS_DATA_DIR, 'etcd-snapshot.db'), 'old');
    expect(await recoverInterruptedReplace(target)).toBe(`put ${join(target, 'data')} back from ${join(target, PREVIOUS_DATA_DIR)}: ` +
      'an earlier restore was interrupted while replacing it');
    expect(entries()).toEqual(['data']);
    expect(readFileSync(join(target, 'data/etcd-snapshot.db'), 'utf8')).toBe('old');
  });

  test('a run killed after moving the new data in: the next run deletes the old', async () => {
    mkdirSync(join(target, PREVIOUS_DATA_DIR));
    oldData();
    expect(await recoverInterruptedReplace(target)).toStartWith(`removed ${join(target, PREVIOUS_DATA_DIR)}`);
    expect(entries()).toEqual(['data']);
    expect(await recoverInterruptedReplace(target)).toBeUndefined();
  });

  test('without --force, the old data put back still refuses the restore', async () => {
    mkdirSync(join(target, PREVIOUS_DATA_DIR));
    writeFileSync(join(target, PREVIOUS_DATA_DIR, 'etcd-snapshot.db'), 'old');
    await expect(restoreBackup(new PlayedRestic(), { repo, snapshot: 'latest', target })).rejects.toThrow('already exists and is not empty');
    expect(readFileSync(join(target, 'data/etcd-snapshot.db'), 'utf8')).toBe('old');
  });

  test('cancelled (SIGTERM) mid-download: restic stopped, staged files removed, data/ untouched', async () => {
    oldData();
    const restic = new PlayedRestic();
    restic.hang = true;
    const abort = new AbortController();
    const done = restoreBackup(restic, { repo, snapshot: 'latest', target, overwrite: true, signal: abort.signal,
      onStep: (s) => s.startsWith('restoring') && setTimeout(() => abort.abort(), 20) });
    await expect(done).rejects.toMatchObject({ kind: 'Cancelled' });
    expect(entries()).toEqual(['data']);
    expect(readFileSync(join(target, 'data/etcd-snapshot.db'), 'utf8')).toBe('old');
  });

  test('past its time limit: restic stopped, staged files removed, data/ untouched, the whole limit named', async () => {
    oldData();
    const restic = new PlayedRestic();
    restic.hang = true;
    const err = await restoreBackup(restic, { repo, snapshot: 'latest', target, overwrite: true, timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err).toMatchObject({ kind: 'Timeout', message: `restore did not finish within 1 s; ${join(target, 'data')} was left as it was` });
    expect(entries()).toEqual(['data']);
  });
});

test('staging directories a killed restore left are removed once older than a restore\'s time limit, and only those', async () => {
  const target = mkdtempSync(join(tmpdir(), 'stale-stage-'));
  try {
    for (const name of ['.kubedr-restore-old', '.kubedr-restore-running', 'data']) mkdirSync(join(target, name, 'data'), { recursive: true });
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(join(target, '.kubedr-restore-old'), twoHoursAgo, twoHoursAgo);
    utimesSync(join(target, 'data'), twoHoursAgo, twoHoursAgo);
    expect(await removeStaleStages(target, 3_600_000)).toEqual([join(target, '.kubedr-restore-old')]);
    expect(readdirSync(target).sort()).toEqual(['.kubedr-restore-running', 'data']);
    expect(await removeStaleStages(join(target, 'missing'), 1)).toEqual([]);
  } finally {
    rmSync(target, { recursive: true, force: true });
  }
});
