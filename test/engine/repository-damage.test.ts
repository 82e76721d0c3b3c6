/**
 * Damage found and repaired with the real restic (≥ 0.17: `repair packs`) on a local repository: a pack damaged as a bad
 * disk would, found by `check --read-data`, removed with its intact blobs salvaged, the snapshots that lost data named,
 * and the next backup of the same data heals them (content addressing). restic's own output, not a stand-in.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkRepository, findAndRepairDamage, damagedSnapshots, parseRepairSnapshotsDryRun } from '../../src/engine/repository-damage.ts';
import { type Repository, Restic } from '../../src/engine/restic.ts';
import { localRepository } from '../fixtures/local-repository.ts';

const resticVersion = spawnSync('restic', ['version'], { encoding: 'utf8' }).stdout ?? '';
const minor = Number(/restic 0\.(\d+)/.exec(resticVersion)?.[1] ?? 0);

let dir: string;
let repo: Repository;
const restic = new Restic();
const env = () => ({ ...process.env, RESTIC_PASSWORD: repo.password, RESTIC_REPOSITORY: repo.address });
/** A backup; exit 3 with "storing the file again" is restic ≥ 0.17 re-storing what a repair removed (see engine/backup.ts). */
const backup = (src: string) => {
  const r = spawnSync('restic', ['backup', '--json', '-q', src], { encoding: 'utf8', env: env() });
  if (r.status !== 0 && !(r.status === 3 && r.stderr.includes('storing the file again'))) throw new Error(r.stderr);
  return (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { snapshot_id: string }).snapshot_id.slice(0, 8);
};
const packs = () => readdirSync(join(repo.address, 'data')).flatMap((d) => readdirSync(join(repo.address, 'data', d)).map((f) => join(repo.address, 'data', d, f)));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kdr-damage-'));
  repo = await localRepository(restic, dir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(minor < 17)(`a damaged pack, with ${resticVersion.split(' ').slice(0, 2).join(' ')}`, () => {
  test('a sound repository: no errors, nothing repaired, no damaged snapshot', async () => {
    mkdirSrc('one', 2_000_000);
    backup(join(dir, 'one'));
    const r = await findAndRepairDamage(restic, repo);
    expect(r.check.errors).toBe(0);
    expect(r.removedPacks).toEqual([]);
    expect(r.damagedSnapshots).toEqual([]);
  });

  test('found, removed with its intact blobs salvaged, the snapshots that lost data named; a new backup of the data heals them', async () => {
    mkdirSrc('two', 3_000_000);
    const before = new Set(packs());
    const first = backup(join(dir, 'two'));
    const second = backup(join(dir, 'two'));
    // The biggest pack of these backups holds the file's data; flip bytes in its middle.
    const pack = packs().filter((p) => !before.has(p)).sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
    chmodSync(pack, 0o600);
    const fd = openSync(pack, 'r+');
    writeSync(fd, Buffer.alloc(16, 0xff), 0, 16, Math.floor(statSync(pack).size / 2));
    closeSync(fd);
    const id = pack.split('/').at(-1)!;

    const r = await findAndRepairDamage(restic, repo);
    expect(r.check.errors).toBeGreaterThan(0);
    expect(r.check.brokenPacks).toEqual([id]);
    expect(r.check.messages[0]).toContain('ciphertext verification failed');
    expect(r.removedPacks).toEqual([id]);
    expect(existsSync(pack)).toBe(false);
    expect(r.damagedSnapshots.sort()).toEqual([first, second].sort());
    // Read again: nothing broken is left.
    expect((await checkRepository(restic, repo)).brokenPacks).toEqual([]);

    // The data still exists at its source: the next backup stores fresh copies, and the old snapshots restore again.
    backup(join(dir, 'two'));
    expect(await damagedSnapshots(restic, repo)).toEqual([]);
    expect((await checkRepository(restic, repo)).errors).toBe(0);
  }, 60_000);
});

test('restic\'s dry-run text: a snapshot with lines under it is damaged, one without is not', () => {
  expect(parseRepairSnapshotsDryRun([
    '', 'snapshot 8b45c23d of [/tmp/src] at 2026-12-04 22:22:42 +0000 UTC by root@vm', '  file "/src/a": removed missing content',
    'would save new snapshot', '', 'snapshot 57a1ace3 of [/tmp/src] at 2026-12-04 22:22:39 +0000 UTC by root@vm', '',
    'snapshot ef219b52 of [/tmp/src] at 2026-12-04 22:22:40 +0000 UTC by root@vm', 'would save new snapshot', '', 'would modify 2 snapshots',
  ].join('\n'))).toEqual(['8b45c23d', 'ef219b52']);
  expect(parseRepairSnapshotsDryRun('\nsnapshot 8b45c23d of [/x] at t by h\n\nno snapshots would be modified\n')).toEqual([]);
});

function mkdirSrc(name: string, bytes: number): void {
  spawnSync('mkdir', ['-p', join(dir, name)]);
  writeFileSync(join(dir, name, 'data'), crypto.getRandomValues(new Uint8Array(Math.min(bytes, 65_536))).toString().repeat(Math.ceil(bytes / 200_000)));
}
