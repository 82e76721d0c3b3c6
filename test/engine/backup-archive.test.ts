/**
 * Streamed backups (engine/backup.ts with an archive command): restic 0.18 runs `kubedr backup-archive` from source and
 * stores its tar while the stand-in etcd sends, into a repository in a local directory. What is checked is what a user
 * relies on: the restore gives the same files as a staged backup's, a snapshot that fails etcd's check leaves nothing
 * in the repository, and both layouts restore from one repository.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type BackupProgress, runBackup } from '../../src/engine/backup.ts';
import { EngineError } from '../../src/engine/errors.ts';
import { restoreBackup } from '../../src/engine/restore.ts';
import { parseSnapshots } from '../../src/engine/restic-output.ts';
import { type Repository, Restic } from '../../src/engine/restic.ts';
import { issueCertificate } from '../fixtures/certificates.ts';
import { fakeEtcd } from '../fixtures/fake-etcd.ts';
import { localRepository, removeFixture } from '../fixtures/local-repository.ts';

const restic = new Restic();
const readsCommands = Bun.which('restic') !== null && await restic.readsCommands();
const archiveCommand = [process.execPath, resolve(import.meta.dir, '../../src/main.ts'), 'backup-archive'];

describe.skipIf(!readsCommands)('streamed backups (restic ≥ 0.17)', () => {
  let work: string;
  let pki: string;
  let enc: string;
  let soon: string;
  let etcd: Awaited<ReturnType<typeof fakeEtcd>>;
  let repo: Repository;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'backup-archive-test-'));
    pki = join(work, 'pki');
    mkdirSync(join(pki, 'etcd'), { recursive: true });
    soon = issueCertificate(join(pki, 'etcd'), 'server', 10);
    issueCertificate(pki, 'ca', 400);
    writeFileSync(join(pki, 'sa.key'), 'not a certificate');
    utimesSync(join(pki, 'sa.key'), new Date(1_700_000_000_000), new Date(1_700_000_000_000));
    enc = join(work, 'host/etc/kubernetes/enc');
    mkdirSync(enc, { recursive: true });
    writeFileSync(join(enc, 'enc.yaml'), 'kind: EncryptionConfiguration\n');
    etcd = await fakeEtcd({ contentBytes: 3_000_000 });
    repo = await localRepository(restic, work);
  }, 30_000);
  afterAll(() => removeFixture(etcd, work));

  const snapshots = async () => parseSnapshots((await restic.run(repo, ['snapshots', '--json'])).stdout);
  /** Every file under dir, path → content. */
  const tree = (dir: string) => Object.fromEntries(readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
    .map((e) => [join(e.parentPath, e.name).slice(dir.length + 1), readFileSync(join(e.parentPath, e.name)).toString('base64')]).sort());

  test('one archive is stored while etcd sends; it restores to the layout of a staged backup, byte for byte', async () => {
    const progress: BackupProgress[] = [];
    const streamed = await runBackup(restic, { etcd: { endpoint: etcd.endpoint }, certsDir: pki, extraPaths: [enc], repo, host: 'cp-1', tags: ['daily'],
      archiveCommand, onProgress: (p) => progress.push(p) });
    expect(streamed.timings.layout).toBe('streamed');
    expect(streamed.etcd.size).toBe(3_000_032);
    expect(streamed.etcd.members?.map((m) => m.name)).toEqual(['cp-1']);
    expect(streamed.earliestCertificateExpiry).toBe(soon);
    expect(streamed.certificates?.map((c) => c.file)).toEqual(['ca.crt', 'etcd/server.crt']);
    expect(progress.filter((p) => p.phase === 'Upload' && p.totalBytes === 3_000_032).length).toBeGreaterThan(0);
    const [stored] = await snapshots();
    expect(stored!.paths).toEqual(['/kubedr-backup.tar']);
    expect(stored!.tags).toContain('daily');

    const staged = await runBackup(restic, { etcd: { endpoint: etcd.endpoint }, certsDir: pki, extraPaths: [enc], repo, host: 'cp-1', tags: ['old'] });
    expect(staged.timings.layout).toBe('staged');

    const steps: string[] = [];
    const a = await restoreBackup(restic, { repo, snapshot: streamed.summary.snapshotId, target: join(work, 'from-archive'), expectSha256: streamed.etcd.sha256,
      onStep: (s) => steps.push(s) });
    // The snapshot's data is aligned in the archive, so on ext4 or XFS the archive is cut down to it, not copied.
    const fsType = Bun.spawnSync(['stat', '-f', '-c', '%T', work]).stdout.toString().trim();
    expect({ fsType, inPlace: steps.includes('data/etcd-snapshot.db: the archive cut down to it in place') })
      .toEqual({ fsType, inPlace: ['ext2/ext3', 'xfs'].includes(fsType) });
    const b = await restoreBackup(restic, { repo, snapshot: staged.summary.snapshotId, target: join(work, 'from-files'), expectSha256: staged.etcd.sha256 });
    expect(a.sha256).toBe(streamed.etcd.sha256);
    expect(a.etcdSnapshotSize).toBe(3_000_032);
    const fromArchive = tree(join(work, 'from-archive/data'));
    const fromFiles = tree(join(work, 'from-files/data'));
    expect(Object.keys(fromArchive)).toEqual(Object.keys(fromFiles));
    // Each etcd snapshot differs (the stand-in's content changes per call, as a live etcd's does); the rest is equal.
    const rest = (t: Record<string, string>) => Object.entries(t).filter(([k]) => k !== 'etcd-snapshot.db');
    expect(rest(fromArchive)).toEqual(rest(fromFiles));
    expect(a.files).toBe(b.files);
    // Mode and modification time as on the host.
    const key = statSync(join(work, 'from-archive/data/certificates/sa.key'));
    expect(key.mtimeMs).toBe(1_700_000_000_000);
    expect(key.mode & 0o777).toBe(statSync(join(pki, 'sa.key')).mode & 0o777);
  }, 60_000);

  test('a snapshot whose SHA-256 trailer does not match fails the backup with etcd\'s check, and restic saves nothing', async () => {
    const damaged = await fakeEtcd({ contentBytes: 1_000_000, badTrailer: true });
    try {
      const before = (await snapshots()).length;
      const err = await runBackup(restic, { etcd: { endpoint: damaged.endpoint }, certsDir: pki, repo, host: 'cp-1', tags: ['damaged'], archiveCommand })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).kind).toBe('IntegrityError');
      expect((err as EngineError).message).toBe('etcd snapshot failed its integrity check: the SHA-256 trailer does not match the content');
      expect((await snapshots()).length).toBe(before);
    } finally {
      damaged.stop();
    }
  }, 60_000);

  test('a missing extra path fails before etcd is asked, with the staged backup\'s words, and stores nothing', async () => {
    const before = (await snapshots()).length;
    const missing = join(work, 'host/etc/nothing-here');
    const err = await runBackup(restic, { etcd: { endpoint: 'http://127.0.0.1:1' }, certsDir: pki, extraPaths: [missing], repo, host: 'cp-1',
      tags: ['missing'], archiveCommand }).catch((e: unknown) => e);
    expect((err as EngineError).message).toBe(`extraPaths: ${missing} does not exist (with the Helm chart, mount the host ` +
      'directory holding it into the controller\'s pod: value certsHostPaths)');
    expect((await snapshots()).length).toBe(before);
  }, 30_000);

  test('an etcd that cannot be reached fails the backup saying so, and stores nothing', async () => {
    const before = (await snapshots()).length;
    const err = await runBackup(restic, { etcd: { endpoint: 'http://127.0.0.1:1' }, certsDir: pki, repo, host: 'cp-1', tags: ['unreachable'], archiveCommand })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).message).toContain('127.0.0.1:1');
    expect((await snapshots()).length).toBe(before);
  }, 60_000);
});
