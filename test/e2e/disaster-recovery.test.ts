/**
 * A full disaster drill with the command line only: a control plane (its own etcd with TLS and its own kube-apiserver)
 * is backed up by the controller, changed, and lost (both stopped, etcd's data deleted). `kubedr snapshots`, `kubedr
 * restore` and `kubedr etcd-restore` then build a new etcd data directory from S3 alone; a new etcd and API server on
 * it must show what existed at backup time and nothing written after. The same location holds a second policy's
 * backups (of the test cluster's own etcd), so choosing among policies is exercised too. All parts are real.
 * The lost control plane runs etcd 3.4 (Debian 12's, as older clusters do) and is restored with 3.4's own etcdctl, which
 * cannot bump revisions; the HA drill (ha-restore.test.ts) covers etcd 3.5 and etcdutl.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verifySnapshotFile } from '../../src/engine/etcd-snapshot.ts';
import { extraEtcdDataDir, startExtraApiserver, startExtraEtcd, stopExtra } from '../../scripts/cluster/node.ts';
import { frozenPrune } from '../support/locks.ts';
import {
  ControllerProcess, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, etcdctl, eventually,
  freePort, getJson, kubectl, locationSecretYaml, locationYaml, policyYaml, repoRoot, resticAt, uniqueBucket, locationInit
} from '../support/e2e.ts';

/** Debian 12's etcd 3.4 and its etcdctl (with-node.sh puts Debian 13's 3.5 first on PATH). */
const ETCD_34 = '/usr/bin/etcd';
const ETCDCTL_34 = '/usr/bin/etcdctl';
let ns: string;
let work: string;
let controller: ControllerProcess | undefined;
let lostKubeconfig: string;
let credentialsFile: string;
const bucket = uniqueBucket('drill');
const password = `drill-pw-${crypto.randomUUID()}`;

/** kubectl against another API server than the test cluster's (the flag wins over the helper's KUBECONFIG). */
const kubectlAt = (kubeconfig: string, args: string[]) => kubectl(['--kubeconfig', kubeconfig, ...args]);

/** The kubedr command line as an operator runs it, with only PATH and the given variables in its environment. */
function kubedr(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), ...args], {
    encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env },
  });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const at = () => ['--url', cluster().s3Url, '--bucket', bucket, '--credentials', credentialsFile];

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('drill');
  work = mkdtempSync(join(tmpdir(), 'drill-'));
  const env = cluster();

  // The control plane that will be lost, with objects that exist at backup time.
  const etcd = await startExtraEtcd(env, 'drill-etcd', undefined, ETCD_34);
  lostKubeconfig = await startExtraApiserver(env, 'drill-apiserver', etcd);
  expect(kubectlAt(lostKubeconfig, ['create', 'namespace', 'before-backup']).code).toBe(0);
  expect(kubectlAt(lostKubeconfig, ['create', 'configmap', 'keep-me', '-n', 'before-backup', '--from-literal=answer=42']).code).toBe(0);

  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  apply(policyYaml(ns, 'drill', { etcdEndpoint: etcd }));
  apply(policyYaml(ns, 'other'));
  // The drill's backup is streamed, the other policy's staged (the default): one location holds both layouts.
  controller = await ControllerProcess.start(ns, ['--backup-layout', 'streamed']);
  await locationInit(ns, 'loc', 'Completed');
  expect((await backupNow(ns, 'drill')).status?.backupStatus).toBe('Completed');
  await controller.stop();
  controller = await ControllerProcess.start(ns);
  expect((await backupNow(ns, 'other')).status?.backupStatus).toBe('Completed');
  await controller.stop();
  controller = undefined;

  // The operator kept the location's Secret as `kubectl get secret -o yaml` saved it.
  credentialsFile = join(work, 's3-creds.yaml');
  writeFileSync(credentialsFile, kubectl(['get', 'secret', 's3-creds', '-n', ns, '-o', 'yaml']).stdout, { mode: 0o600 });

  // Written after the backup: must not come back.
  expect(kubectlAt(lostKubeconfig, ['create', 'namespace', 'after-backup']).code).toBe(0);
  expect(kubectlAt(lostKubeconfig, ['create', 'configmap', 'too-late', '-n', 'before-backup']).code).toBe(0);

  // The control plane is lost.
  await stopExtra(env, 'drill-apiserver');
  await stopExtra(env, 'drill-etcd');
  rmSync(extraEtcdDataDir(env, 'drill-etcd'), { recursive: true, force: true });
}, 240_000);

afterAll(async () => {
  await controller?.stop();
  for (const name of ['drill-restored-apiserver', 'drill-restored']) await stopExtra(cluster(), name);
  deleteNamespace(ns);
  rmSync(work, { recursive: true, force: true });
});

describe('kubedr snapshots', () => {
  test('lists the backups of every policy at the location, newest first, with sizes', () => {
    const r = kubedr(['snapshots', ...at(), '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as { id: string; time: string; policy: string; host: string; size: number }[];
    expect(rows.map((x) => x.policy)).toEqual(['other', 'drill']);
    expect(Date.parse(rows[0]!.time)).toBeGreaterThan(Date.parse(rows[1]!.time));
    for (const row of rows) expect(row.size).toBeGreaterThan(10_000);

    const table = kubedr(['snapshots', ...at()]);
    expect(table.stdout.split('\n')[0]).toMatch(/^TIME\s+ID\s+POLICY\s+CLUSTER\s+NAMESPACE\s+HOST\s+SIZE$/);
    expect(table.stdout).toContain(rows[1]!.id.slice(0, 8));
  });

  test('a prune of another writer holding the exclusive lock does not stop it: the same backups and sizes, at once', async () => {
    const unlocked = JSON.parse(kubedr(['snapshots', ...at(), '--json']).stdout) as { id: string; size: number }[];
    const prune = await frozenPrune(bucket, password, 'maintenance-host');
    try {
      const started = performance.now();
      const r = kubedr(['snapshots', ...at(), '--json']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual(unlocked);
      // restic 0.18 would retry a lock for as long as --retry-lock says; a read that takes none does not wait at all.
      expect(performance.now() - started).toBeLessThan(10_000);
    } finally {
      await prune.thaw();
    }
  }, 120_000);

  test('--policy shows one policy\'s backups', () => {
    const rows = JSON.parse(kubedr(['snapshots', ...at(), '--json', '--no-size', '--policy', 'drill']).stdout) as { policy: string }[];
    expect(rows.map((x) => x.policy)).toEqual(['drill']);
  });

  test('a wrong password, an unreachable endpoint and missing credentials have their own exit codes and messages', () => {
    const wrong = kubedr(['snapshots', ...at()], { RESTIC_PASSWORD: 'not-the-repository-password' });
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain('wrong repository password');

    const unreachable = kubedr(['snapshots', '--url', 'https://127.0.0.1:1', '--bucket', bucket, '--credentials', credentialsFile]);
    expect(unreachable.code).toBe(5);
    expect(unreachable.stderr).toContain('S3 endpoint unreachable');

    const none = kubedr(['snapshots', '--url', cluster().s3Url, '--bucket', bucket]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('missing credentials: access_key');

    // restic 0.18 alone retries a bucket that does not exist for about 10 minutes, then exits 1.
    const started = performance.now();
    const noBucket = kubedr(['snapshots', '--url', cluster().s3Url, '--bucket', 'no-such-bucket-here', '--credentials', credentialsFile]);
    expect(noBucket.code).toBe(4);
    expect(noBucket.stderr).toContain('no bucket "no-such-bucket-here" at the S3 endpoint');
    expect(performance.now() - started).toBeLessThan(10_000);
    for (const r of [wrong, unreachable, none, noBucket]) expect(r.stderr + r.stdout).not.toContain(password);
  });
});

describe('kubedr verify', () => {
  test('"latest" of a policy is restored into a throwaway etcd and proven', () => {
    const r = kubedr(['verify', 'latest', '--policy', 'drill', ...at()]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Verified snapshot \w{8}: restores to an etcd at revision \d+ with \d+ keys/);
  }, 120_000);

  test('a wrong password exits 3 with words, not restic\'s JSON', () => {
    const r = kubedr(['verify', 'latest', '--policy', 'drill', ...at()], { RESTIC_PASSWORD: 'not-the-repository-password' });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('wrong repository password');
    expect(r.stderr + r.stdout).not.toContain('message_type');
    expect(r.stderr + r.stdout).not.toContain('{"');
  });
});

/** `kubedr restore latest` of a policy into `target`: it succeeds, verifies, and prints the SHA-256 the file has. */
async function restoreVerified(policy: string, target: string): Promise<void> {
  const r = kubedr(['restore', 'latest', '--policy', policy, '--target', target, ...at()]);
  expect(r.stderr).toContain('verifying data/etcd-snapshot.db');
  expect(r.code).toBe(0);
  const sha = await verifySnapshotFile(join(target, 'data/etcd-snapshot.db'));
  expect(r.stdout).toContain(`SHA-256 ${sha}: matches the snapshot's own trailer`);
}

describe('kubedr restore', () => {
  test('"latest" with several policies at the location asks for --policy', () => {
    const r = kubedr(['restore', 'latest', '--target', join(work, 'ambiguous'), ...at()]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('"latest" is ambiguous: the repository holds backups of several policies (drill, other); choose one with --policy');
    expect(existsSync(join(work, 'ambiguous', 'data'))).toBe(false);
  });

  test('an unknown snapshot id fails with exit code 4', () => {
    const r = kubedr(['restore', 'abcdef12', '--target', join(work, 'unknown'), ...at()]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('no snapshot "abcdef12" in the repository');
  });

  test('latest of a policy comes back verified, and a second restore over it is refused without --force', async () => {
    const target = join(work, 'restored');
    await restoreVerified('drill', target);
    expect(existsSync(join(target, 'data/certificates/etcd/ca.crt'))).toBe(true);

    const again = kubedr(['restore', 'latest', '--policy', 'drill', '--target', target, ...at()]);
    expect(again.code).toBe(7);
    expect(kubedr(['restore', 'latest', '--policy', 'drill', '--target', target, '--force', ...at()]).code).toBe(0);
  });
});

describe('a location holding both layouts', () => {
  test('the streamed backup is one archive, the staged one files; kubedr restore gives both the same layout, verified', async () => {
    const listed = JSON.parse(resticAt(bucket, password, ['snapshots', '--json']).stdout) as { paths: string[]; tags: string[] }[];
    const paths = Object.fromEntries(listed.map((x) => [x.tags[0], x.paths.map((p) => p.split('/').pop())]));
    expect(paths).toEqual({ drill: ['kubedr-backup.tar'], other: ['data'] });
    const target = join(work, 'staged');
    await restoreVerified('other', target);
    const streamed = join(work, 'restored');
    // The same entries under data/ (each policy's own etcd, so the snapshots themselves differ).
    expect(readdirSync(join(target, 'data')).sort()).toEqual(readdirSync(join(streamed, 'data')).sort());
    expect(readdirSync(join(target, 'data/certificates'), { recursive: true }).sort())
      .toEqual(readdirSync(join(streamed, 'data/certificates'), { recursive: true }).sort());
  });
});

describe('kubedr etcd-restore, then a new etcd and API server', () => {
  let peer: number;
  let dataDir: string;

  test('builds a data directory for a new member and prints the next steps', async () => {
    peer = await freePort();
    dataDir = extraEtcdDataDir(cluster(), 'drill-restored');
    const args = ['etcd-restore', '--snapshot', join(work, 'restored/data/etcd-snapshot.db'), '--data-dir', dataDir,
      '--name', 'drill-restored', '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`, '--etcd-manifest', join(work, 'no-manifest'),
      '--etcdutl', ETCDCTL_34];
    const r = kubedr(args);
    expect(r.stderr).not.toContain('failed');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('etcdctl cannot move the revision ahead');
    expect(r.stdout).toContain(`etcd data directory ready: ${dataDir} (member drill-restored, peer URL http://127.0.0.1:${peer})`);
    expect(r.stdout).toContain('Next steps on a kubeadm control-plane node');
    expect(r.stdout).toContain(`cp -a ${join(work, 'restored/data/certificates')}/. /etc/kubernetes/pki/`);
    expect(existsSync(join(dataDir, 'member/snap/db'))).toBe(true);

    const again = kubedr(args);
    expect(again.code).toBe(7);
    expect(again.stderr).toContain('is not empty');
  });

  test('the restored control plane has what existed at backup time, and nothing written later', async () => {
    const env = cluster();
    const etcd = await startExtraEtcd(env, 'drill-restored', { client: await freePort(), peer }, ETCD_34);
    expect(etcdctl(['endpoint', 'status', '-w', 'json'], etcd).stdout).toContain('"version":"3.4.');
    const kubeconfig = await startExtraApiserver(env, 'drill-restored-apiserver', etcd);
    const cm = kubectlAt(kubeconfig, ['get', 'configmap', 'keep-me', '-n', 'before-backup', '-o', 'jsonpath={.data.answer}']);
    expect(cm.stderr).toBe('');
    expect(cm.stdout).toBe('42');
    expect(kubectlAt(kubeconfig, ['get', 'namespace', 'after-backup']).stderr).toContain('NotFound');
    expect(kubectlAt(kubeconfig, ['get', 'configmap', 'too-late', '-n', 'before-backup']).stderr).toContain('NotFound');
  }, 120_000);
});
