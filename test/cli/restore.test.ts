import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { targetDeniedMessage } from '../../src/cli/restore.ts';
import { writeDenial } from '../../src/util/fs.ts';
import { type SilentEndpoint, silentEndpoint } from '../support/listener.ts';

const repoRoot = resolve(import.meta.dir, '../..');
const pod = { uid: 65532, gid: 65532 };
const rootOwned = { ownerUid: 0, ownerGid: 0, mode: 0o755, code: 'EACCES' };

/** The message for a restore pod whose hostPath or local volume is a root-owned 0755 directory. */
const hostPathMessage = (target: string) => `restore target ${target} is not writable by uid 65532 gid 65532 ` +
  '(it is owned by 0:0, mode 0755). Volumes of type hostPath and local ignore the pod\'s fsGroup: make the directory ' +
  'writable for uid or gid 65532 on the node (chown 65532:65532 DIR), or run restore pods as root ' +
  '(Helm value restore.runAsUser=0, flag --restore-run-as-user=0)';

describe('targetDeniedMessage', () => {
  test('names the directory, the user, the owner and mode, and both ways out', () => {
    expect(targetDeniedMessage('/restore', { dir: '/restore', ...rootOwned }, pod)).toBe(hostPathMessage('/restore'));
  });
  test('a target that does not exist yet names the directory it would be created in', () => {
    expect(targetDeniedMessage('/restore/a', { dir: '/restore', ...rootOwned }, pod))
      .toStartWith('restore target /restore/a cannot be created: /restore is not writable by uid 65532 gid 65532 (it is owned by 0:0, mode 0755).');
  });
  test('without owner write permission, running as the owner does not help: chmod too', () => {
    const m = targetDeniedMessage('/restore', { dir: '/restore', ...rootOwned, mode: 0o555 }, pod);
    expect(m).toEndWith('(it is owned by 0:0, mode 0555). Volumes of type hostPath and local ignore the pod\'s fsGroup: ' +
      'make the directory writable for uid or gid 65532 on the node (chown 65532:65532 DIR; chmod u+wx DIR)');
  });
  test('a directory of another user: run as that user', () => {
    expect(targetDeniedMessage('/restore', { dir: '/restore', ...rootOwned, ownerUid: 1000, ownerGid: 1000 }, { uid: 0, gid: 0 }))
      .toEndWith('(chown 0:0 DIR), or run restore pods as its owner, uid 1000 (Helm value restore.runAsUser=1000, flag --restore-run-as-user=1000)');
  });
  test('not a directory, a read-only filesystem, anything else', () => {
    expect(targetDeniedMessage('/restore', { dir: '/restore', ...rootOwned, code: 'ENOTDIR' }, pod)).toBe('restore target /restore is not a directory');
    expect(targetDeniedMessage('/restore', { dir: '/restore', ...rootOwned, code: 'EROFS' }, pod))
      .toBe('restore target /restore is on a read-only filesystem; mount the volume read-write');
    expect(targetDeniedMessage('/restore', { dir: '/restore', ...rootOwned, code: 'ENOSPC' }, pod))
      .toBe('restore target /restore: cannot create files there (ENOSPC)');
  });
});

describe('writeDenial, as the test\'s user', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'write-denial-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('a writable directory passes and keeps no probe behind', async () => {
    expect(await writeDenial(dir)).toBeUndefined();
    expect(readdirSync(dir)).toEqual([]);
  });
  test('a missing directory is checked where it would be created, and is not created', async () => {
    expect(await writeDenial(join(dir, 'a/b'))).toBeUndefined();
    expect(existsSync(join(dir, 'a'))).toBe(false);
  });
  test('a file is not a directory, nor a place to create one', async () => {
    const file = join(dir, 'file');
    writeFileSync(file, 'x');
    expect(await writeDenial(file)).toMatchObject({ dir: file, code: 'ENOTDIR' });
    expect(await writeDenial(join(file, 'sub'))).toMatchObject({ dir: file, code: 'ENOTDIR' });
  });
});

// Permission checks pass for root, so the denial itself is exercised by running the command as the restore pod's user.
const canSwitchUser = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;

describe.skipIf(!canSwitchUser)('kubedr restore as uid 65532 (a restore pod\'s user)', () => {
  let work: string;
  let home: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'restore-target-'));
    chmodSync(work, 0o755);
    home = join(work, 'home');
    mkdirSync(home, { mode: 0o777 });
    chmodSync(home, 0o777);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  /** Runs `kubedr restore` the way the restore pod does, against an S3 address where nothing listens. */
  const restore = (target: string) => {
    const log = join(work, `termination-log-${Math.random().toString(16).slice(2)}`);
    writeFileSync(log, '');
    chownSync(log, pod.uid, pod.gid);
    const r = spawnSync('setpriv', ['--reuid', String(pod.uid), '--regid', String(pod.gid), '--clear-groups', '--',
      process.execPath, join(repoRoot, 'src/main.ts'), 'restore', 'latest', '--target', target, '--force',
      '--url', 'http://127.0.0.1:9', '--bucket', 'kubedr-test', '--termination-log', log], {
      cwd: repoRoot, encoding: 'utf8', timeout: 60_000,
      env: { PATH: process.env.PATH, HOME: home, TMPDIR: home, AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's', RESTIC_PASSWORD: 'p' },
    });
    return { code: r.status, stderr: r.stderr, outcome: readFileSync(log, 'utf8') };
  };

  test('a root-owned 0755 directory (a hostPath or local volume) fails at once, before S3, with the fix in the message', () => {
    const target = join(work, 'hostpath');
    mkdirSync(target, { mode: 0o755 });
    const r = restore(target);
    expect(r.stderr).toBe(`kubedr restore: ${hostPathMessage(target)}\n`);
    expect(r.code).toBe(EXIT.usage);
    // What the MetadataRestore's status shows: the controller reads it from the termination log.
    expect(JSON.parse(r.outcome)).toEqual({ ok: false, error: hostPathMessage(target), exitCode: EXIT.usage });
    expect(readdirSync(target)).toEqual([]);
  });

  test('a read-only 0555 directory: the message asks for chmod as well', () => {
    const target = join(work, 'readonly');
    mkdirSync(target);
    chmodSync(target, 0o555);
    const r = restore(target);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain(`restore target ${target} is not writable by uid 65532 gid 65532 (it is owned by 0:0, mode 0555)`);
    expect(JSON.parse(r.outcome).error).toEndWith('(chown 65532:65532 DIR; chmod u+wx DIR)');
  });

  test('once the directory is the user\'s, the restore goes on to S3', () => {
    const target = join(work, 'owned');
    mkdirSync(target, { mode: 0o755 });
    chownSync(target, pod.uid, pod.gid);
    const r = restore(target);
    expect(r.stderr).toContain('kubedr restore: listing snapshots');
    expect(r.stderr).not.toContain('not writable');
  });
});

describe('kubedr restore stopped by a signal or its time limit', () => {
  let work: string;
  let bin: string;
  let s3: SilentEndpoint;
  beforeAll(async () => {
    s3 = await silentEndpoint();
    work = mkdtempSync(join(tmpdir(), 'restore-stop-'));
    bin = join(work, 'bin');
    mkdirSync(bin);
    // restic that lists one snapshot and, asked to restore it, starts writing and never finishes.
    writeFileSync(join(bin, 'restic'), `#!/bin/sh
case "$*" in
  *snapshots*) echo '[{"id":"${'ab'.repeat(32)}","short_id":"abababab","time":"2026-11-30T10:00:00Z","tags":["daily"]}]'; exit 0;;
esac
prev=""; for a in "$@"; do [ "$prev" = "--target" ] && target="$a"; prev="$a"; done
mkdir -p "$target/data" && echo partial > "$target/data/etcd-snapshot.db"
exec sleep 30
`);
    chmodSync(join(bin, 'restic'), 0o755);
  });
  afterAll(() => {
    s3.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** Runs the command as a restore pod does; `whileStaged` runs once the download has begun. */
  async function restore(name: string, extra: string[], whileStaged?: (pid: number) => void) {
    const target = join(work, name);
    mkdirSync(join(target, 'data'), { recursive: true });
    writeFileSync(join(target, 'data/etcd-snapshot.db'), 'old');
    const log = join(work, `${name}.log`);
    const proc = Bun.spawn([process.execPath, join(repoRoot, 'src/main.ts'), 'restore', 'latest', '--target', target, '--force',
      '--url', `https://127.0.0.1:${s3.port}`, '--bucket', 'kubedr-test', '--termination-log', log, ...extra], {
      cwd: repoRoot, stdout: 'pipe', stderr: 'pipe',
      env: { PATH: `${bin}:${process.env.PATH}`, HOME: work, TMPDIR: work, AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's', RESTIC_PASSWORD: 'p' },
    });
    if (whileStaged) {
      const staged = () => readdirSync(target).some((e) => e.startsWith('.kubedr-restore-') && existsSync(join(target, e, 'data/etcd-snapshot.db')));
      for (let i = 0; i < 300 && !staged(); i++) await Bun.sleep(20);
      expect(staged()).toBe(true);
      whileStaged(proc.pid);
    }
    const code = await proc.exited;
    return { code, target, outcome: JSON.parse(readFileSync(log, 'utf8')) as { ok: boolean; error: string; exitCode: number }, left: readdirSync(target) };
  }

  test.each(['SIGTERM', 'SIGINT'] as const)('%s: restic stopped, staged files removed, data/ left as it was, the outcome written', async (sig) => {
    const r = await restore(sig.toLowerCase(), [], (pid) => process.kill(pid, sig));
    expect(r.code).toBe(EXIT.failed);
    expect(r.outcome).toEqual({ ok: false, exitCode: EXIT.failed,
      error: `restore stopped by ${sig}; the staged files were removed and ${r.target}/data was left as it was` });
    expect(r.left).toEqual(['data']);
    expect(readFileSync(join(r.target, 'data/etcd-snapshot.db'), 'utf8')).toBe('old');
  }, 20_000);

  test('--timeout: stopped before a pod\'s deadline would kill it, with the outcome written', async () => {
    const r = await restore('timeout', ['--timeout', '2s']);
    expect(r.code).toBe(EXIT.unreachable);
    expect(r.outcome).toEqual({ ok: false, exitCode: EXIT.unreachable,
      error: `restore did not finish within 2 s; ${r.target}/data was left as it was; allow more time with --timeout ` +
        '(for a MetadataRestore: the controller\'s --restore-timeout)' });
    expect(r.left).toEqual(['data']);
  }, 20_000);
});

describe('kubedr restore --at: refused before S3', () => {
  const run = (args: string[]) => spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), 'restore', ...args],
    { encoding: 'utf8', env: { ...process.env, KUBEDR_S3_URL: '', KUBEDR_S3_BUCKET: '' } });

  test.each([
    [['--at', '2026-12-04T14:03:27', '--policy', 'etcd', '--target', '/nonexistent'], 'RFC 3339 with a zone'],
    [['--at', 'latest', '--revision', '5', '--policy', 'etcd', '--target', '/nonexistent'], 'give one'],
    [['abcd1234', '--at', 'latest', '--policy', 'etcd', '--target', '/nonexistent'], 'the chain picks its full backup'],
    [['--at', 'latest', '--policy', 'etcd', '--expect-sha256', 'ab', '--target', '/nonexistent'], 'whose SHA-256 is printed at the end'],
  ])('%j: exit 2 (usage), saying why', (args, why) => {
    const r = run(args);
    expect(r.stderr).toContain(why);
    expect(r.status).toBe(EXIT.usage);
  });
});
