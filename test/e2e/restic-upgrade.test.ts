/**
 * Upgrading restic under existing backups: a controller running Debian 12's restic 0.14 (what earlier images shipped)
 * writes a repository; the controller and command line with restic 0.18 (what the image ships now) must open it, list
 * and restore its old backups, and add new ones beside them.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ControllerProcess, apply, backupNow, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, kubectl, locationInit,
  locationSecretYaml, locationYaml, policyYaml, repoRoot, uniqueBucket, cluster,
} from '../support/e2e.ts';

const RESTIC_014 = '/usr/bin/restic';
let ns: string;
let work: string;
let credentials: string;
let oldSnapshot: string;
const bucket = uniqueBucket('upgrade');
const password = `upgrade-pw-${crypto.randomUUID()}`;

function kubedr(args: string[]) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
/** Short IDs, as status.snapshotId and record names carry them. */
const snapshotIds = () => (JSON.parse(kubedr(['snapshots', ...at(), '--json']).stdout) as { id: string }[]).map((s) => s.id.slice(0, 8));
const at = () => ['--url', cluster().s3Url, '--bucket', bucket, '--credentials', credentials];

beforeAll(async () => {
  expect(spawnSync(RESTIC_014, ['version'], { encoding: 'utf8' }).stdout).toMatch(/^restic 0\.14\./);
  expect(spawnSync('restic', ['version'], { encoding: 'utf8' }).stdout).toMatch(/^restic 0\.18\./);
  ensureCrds();
  ns = createNamespace('upgrade');
  work = mkdtempSync(join(tmpdir(), 'restic-upgrade-'));
  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  apply(policyYaml(ns, 'p'));
  credentials = join(work, 's3-creds.yaml');
  writeFileSync(credentials, kubectl(['get', 'secret', 's3-creds', '-n', ns, '-o', 'yaml']).stdout, { mode: 0o600 });

  // The old controller: restic 0.14 first on its PATH creates the repository and takes a backup.
  const old = await ControllerProcess.start(ns, [], { env: { ...process.env, PATH: `/usr/bin:${process.env.PATH}` } as Record<string, string> });
  await locationInit(ns, 'loc', 'Completed');
  const first = await backupNow(ns, 'p');
  expect(first.status?.backupStatus).toBe('Completed');
  oldSnapshot = first.status!.snapshotId!;
  await old.stop();
}, 180_000);

afterAll(() => {
  if (ns) deleteNamespace(ns);
  if (work) rmSync(work, { recursive: true, force: true });
});

test('restic 0.18 lists and restores a backup restic 0.14 wrote, its etcd snapshot verified', () => {
  expect(snapshotIds()).toContain(oldSnapshot);
  const target = join(work, 'old');
  const r = kubedr(['restore', oldSnapshot, '--target', target, ...at()]);
  expect(r.stderr).not.toContain('failed');
  expect(r.code).toBe(0);
  expect(existsSync(join(target, 'data/etcd-snapshot.db'))).toBe(true);
});

test('the controller with restic 0.18 opens that repository and adds a backup beside the old one', async () => {
  const current = await ControllerProcess.start(ns);
  try {
    const next = await backupNow(ns, 'p');
    expect(next.status?.backupStatus).toBe('Completed');
    expect(next.status?.snapshotId).not.toBe(oldSnapshot);
    const ids = snapshotIds();
    expect(ids).toContain(oldSnapshot);
    expect(ids).toContain(next.status!.snapshotId!);
  } finally {
    await current.stop();
  }
}, 120_000);
