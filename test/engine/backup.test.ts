/**
 * One backup, end to end inside the engine: a stand-in etcd (grpc-js serving Maintenance.Status and .Snapshot) and the
 * real restic with a repository in a local directory, so the facts checked are restic's own (which parent it picks,
 * what it counts as new or changed). No cluster and no S3 are needed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BackupProgress, runBackup } from '../../src/engine/backup.ts';
import { extraPathProblem } from '../../src/engine/backup-layout.ts';
import { stallMessage } from '../../src/engine/backup-upload.ts';
import { EngineError } from '../../src/engine/errors.ts';
import { restoreBackup } from '../../src/engine/restore.ts';
import { parseSnapshots } from '../../src/engine/restic-output.ts';
import { type Repository, Restic, type RunOptions, type RunResult } from '../../src/engine/restic.ts';
import { stableDirName } from '../../src/util/scratch.ts';
import { issueCertificate } from '../fixtures/certificates.ts';
import { fakeEtcd } from '../fixtures/fake-etcd.ts';
import { localRepository, removeFixture } from '../fixtures/local-repository.ts';

describe('stallMessage', () => {
  test('names the endpoint the upload stalled at, and restic\'s last complaint before we stopped it', () => {
    const line = 'Save(<data/0a1b2c3d>) returned error, retrying after 720ms: Put "https://s3.example.com:9000/b/data/0a": ' +
      'dial tcp 10.0.0.5:9000: connect: connection refused';
    expect(stallMessage(300_000, 's3:https://s3.example.com:9000/backups', line)).toBe(
      'upload made no progress for 300 s, stalled at the S3 endpoint https://s3.example.com:9000 (restic\'s last error: S3 endpoint unreachable: ' +
      'Save(<data/0a1b2c3d>) returned error, retrying after 720ms: https://s3.example.com:9000: dial tcp 10.0.0.5:9000: connect: connection refused)');
    expect(stallMessage(8_000, 's3:http://127.0.0.1:9000/b', '')).toBe('upload made no progress for 8 s, stalled at the S3 endpoint http://127.0.0.1:9000');
  });
});

describe('extraPathProblem', () => {
  test('absolute paths of files or directories are fine; relative paths, ".." and "/" are not', () => {
    expect(extraPathProblem('/etc/kubernetes/enc')).toBeUndefined();
    expect(extraPathProblem('/etc/kubernetes/enc/enc.yaml')).toBeUndefined();
    expect(extraPathProblem('etc/kubernetes/enc')).toBe('"etc/kubernetes/enc" is not an absolute path');
    expect(extraPathProblem('/etc/../root')).toBe('"/etc/../root" contains ".."');
    expect(extraPathProblem('/')).toBe('the root directory "/" cannot be backed up');
  });
});

const hasRestic = Bun.which('restic') !== null;

describe.skipIf(!hasRestic)('runBackup with restic', () => {
  let work: string;
  let etcd: Awaited<ReturnType<typeof fakeEtcd>>;
  let repo: Repository;
  const restic = new Restic();
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'backup-test-'));
    mkdirSync(join(work, 'pki/etcd'), { recursive: true });
    writeFileSync(join(work, 'pki/ca.crt'), 'ca');
    writeFileSync(join(work, 'pki/etcd/ca.crt'), 'etcd ca');
    etcd = await fakeEtcd();
    repo = await localRepository(restic, work);
  }, 30_000);
  afterAll(() => removeFixture(etcd, work));

  const backup = () => runBackup(restic, { etcd: { endpoint: etcd.endpoint }, certsDir: join(work, 'pki'), repo, host: 'cp-1', tags: ['daily'] });

  test('a policy backs up from the same path each time, so the next backup has a parent and counts only what changed', async () => {
    const first = await backup();
    // The etcd snapshot, its members file and two certificates.
    expect(first.summary).toMatchObject({ filesNew: 4, filesChanged: 0, filesUnmodified: 0 });
    expect(first.etcd.members).toEqual([{ id: '2a', name: 'cp-1', peerUrls: ['https://10.0.0.1:2380'], clientUrls: [], isLearner: false }]);
    const second = await backup();
    // The etcd snapshot is new content, and its members file is written anew (a tiny file); the certificates are as they were.
    expect(second.summary).toMatchObject({ filesNew: 0, filesChanged: 2, filesUnmodified: 2 });
    const { stdout } = await restic.run(repo, ['snapshots', '--json']);
    const paths = parseSnapshots(stdout).map((s) => s.paths);
    expect(paths).toEqual([[join(tmpdir(), stableDirName('daily'), 'data')], [join(tmpdir(), stableDirName('daily'), 'data')]]);
    // The staged files are gone.
    expect(existsSync(join(tmpdir(), stableDirName('daily')))).toBe(false);
  }, 30_000);

  test('restic compares against the parent it is given, and searches for one itself when that snapshot is gone', async () => {
    const older = await backup();
    // A certificate rewritten after `older`: unchanged since the newest backup, changed since `older`.
    utimesSync(join(work, 'pki/ca.crt'), new Date(), new Date(Date.now() - 60_000));
    await backup();
    const withOlder = await runBackup(restic, { etcd: { endpoint: etcd.endpoint }, certsDir: join(work, 'pki'), repo, host: 'cp-1', tags: ['daily'],
      parent: older.summary.snapshotId });
    expect(withOlder.summary).toMatchObject({ filesNew: 0, filesChanged: 3, filesUnmodified: 1 });
    const gone = await runBackup(restic, { etcd: { endpoint: etcd.endpoint }, certsDir: join(work, 'pki'), repo, host: 'cp-1', tags: ['daily'],
      parent: 'deadbeef' });
    expect(gone.summary).toMatchObject({ filesNew: 0, filesChanged: 2, filesUnmodified: 2 });
  }, 60_000);

  test('a backup that meets another writer\'s lock says so in its progress, then goes on once the lock is gone', async () => {
    class OnceLocked extends Restic {
      locked = 1;
      override async run(r: Repository, args: string[], opts?: RunOptions): Promise<RunResult> {
        if (args[0] === 'backup' && this.locked-- > 0) {
          throw new EngineError('Locked', 'repository is locked by PID 7 on other-node since 2026-12-04 18:00:00 (exclusive)');
        }
        return super.run(r, args, opts);
      }
    }
    const progress: BackupProgress[] = [];
    const r = await runBackup(new OnceLocked({ lockWaitMs: 10_000 }), {
      etcd: { endpoint: etcd.endpoint }, certsDir: join(work, 'pki'), repo, host: 'cp-1', tags: ['locked-once'], onProgress: (p) => progress.push(p),
    });
    expect(r.summary.snapshotId).toMatch(/^[0-9a-f]{8}$/);
    expect(progress.filter((p) => p.waitingFor).map((p) => [p.phase, p.waitingFor]))
      .toEqual([['Upload', 'repository is locked by PID 7 on other-node since 2026-12-04 18:00:00 (exclusive)']]);
  }, 30_000);

  test('the restored layout is data/etcd-snapshot.db and data/certificates/', async () => {
    const { stdout } = await restic.run(repo, ['snapshots', '--json']);
    const [latest] = parseSnapshots(stdout);
    const target = join(work, 'restored');
    await restic.run(repo, ['restore', latest!.id, '--target', target]);
    expect(readdirSync(join(target, 'data')).sort()).toEqual(['certificates', 'etcd-members.json', 'etcd-snapshot.db']);
    expect(readdirSync(join(target, 'data/certificates')).sort()).toEqual(['ca.crt', 'etcd']);
  }, 30_000);

  test('files that hold no PEM certificate give no expiries, and the backup goes on', async () => {
    const r = await backup();
    expect(r.certificates).toEqual([]);
    expect(r.earliestCertificateExpiry).toBeUndefined();
    const none = await runBackup(restic, { etcd: { endpoint: etcd.endpoint }, repo, host: 'cp-1', tags: ['no-certs'] });
    expect(none.certificates).toBeUndefined();
    expect(none.earliestCertificateExpiry).toBeUndefined();
  }, 30_000);

  describe('certificates and extra paths', () => {
    let pki: string;
    let enc: string;
    let single: string;
    let soon: string;
    let later: string;
    beforeAll(() => {
      pki = join(work, 'real-pki');
      mkdirSync(join(pki, 'etcd'), { recursive: true });
      soon = issueCertificate(join(pki, 'etcd'), 'server', 10);
      later = issueCertificate(pki, 'ca', 400);
      writeFileSync(join(pki, 'ca-bundle.crt'), readFileSync(join(pki, 'ca.crt'), 'utf8') + readFileSync(join(pki, 'etcd/server.crt'), 'utf8'));
      // The API server's encryption-at-rest config in a directory of its own, and a single file elsewhere.
      enc = join(work, 'host/etc/kubernetes/enc');
      mkdirSync(join(enc, 'keys'), { recursive: true });
      writeFileSync(join(enc, 'enc.yaml'), 'kind: EncryptionConfiguration\n');
      writeFileSync(join(enc, 'keys/old'), 'k1');
      single = join(work, 'host/etc/audit-policy.yaml');
      writeFileSync(single, 'kind: Policy\n');
    });

    const withExtras = (extraPaths: string[], tags = ['enc']) =>
      runBackup(restic, { etcd: { endpoint: etcd.endpoint }, certsDir: pki, extraPaths, repo, host: 'cp-1', tags });

    test('the result names each certificate file with its earliest expiry, and the earliest of all', async () => {
      const r = await withExtras([enc, single]);
      expect(r.certificates).toEqual([
        { file: 'ca-bundle.crt', notAfter: soon },
        { file: 'ca.crt', notAfter: later },
        { file: 'etcd/server.crt', notAfter: soon },
      ]);
      expect(r.earliestCertificateExpiry).toBe(soon);
      // Certificates, keys and the extra paths' files, the etcd snapshot and its members file.
      expect(r.summary.filesNew).toBe(10);
    }, 30_000);

    test('extra paths restore under data/extra/<path>, beside the certificates, through the usual restore', async () => {
      const target = join(work, 'restored-extra');
      const restored = await restoreBackup(restic, { repo, snapshot: 'latest', filter: { policy: 'enc' }, target });
      expect(restored.certificates).toBe(join(target, 'data/certificates'));
      const extra = join(target, 'data/extra');
      expect(readFileSync(join(extra, enc, 'enc.yaml'), 'utf8')).toBe('kind: EncryptionConfiguration\n');
      expect(readFileSync(join(extra, enc, 'keys/old'), 'utf8')).toBe('k1');
      expect(readFileSync(join(extra, single), 'utf8')).toBe('kind: Policy\n');
      expect(readdirSync(join(extra, work, 'host/etc')).sort()).toEqual(['audit-policy.yaml', 'kubernetes']);
      expect(readdirSync(join(target, 'data')).sort()).toEqual(['certificates', 'etcd-members.json', 'etcd-snapshot.db', 'extra']);
    }, 30_000);

    test('a missing or relative extra path fails the backup, saying which and why, and stores nothing', async () => {
      const missing = join(work, 'host/etc/nothing-here');
      const err = await withExtras([enc, missing], ['enc-missing']).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).kind).toBe('InvalidInput');
      expect((err as EngineError).message).toBe(`extraPaths: ${missing} does not exist (with the Helm chart, mount the host ` +
        'directory holding it into the controller\'s pod: value certsHostPaths)');
      const relative = await withExtras(['etc/kubernetes/enc'], ['enc-relative']).catch((e: unknown) => e);
      expect((relative as EngineError).message).toBe('extraPaths: "etc/kubernetes/enc" is not an absolute path');
      // Nothing of either reached the repository.
      const { stdout } = await restic.run(repo, ['snapshots', '--json']);
      expect(parseSnapshots(stdout).flatMap((s) => s.tags).filter((t) => t.startsWith('enc-'))).toEqual([]);
    }, 30_000);
  });
});
