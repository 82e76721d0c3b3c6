/**
 * `kubedr etcd-restore` as a process: what it asks etcd's tool to do (the revision bump, the member layout, the token)
 * and what it refuses or only prints. The tool is a stand-in that records its arguments and lays out a member
 * directory; ha-restore.test.ts runs the real etcdutl and etcd.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { kubeadmEtcd } from '../fixtures/kubeadm.ts';

const repoRoot = resolve(import.meta.dir, '../..');
let work: string;
let snapshot: string;
let sha256: string;
const three = 'cp-1=https://10.0.0.1:2380,cp-2=https://10.0.0.2:2380,cp-3=https://10.0.0.3:2380';

/** A stand-in for etcd's tool, named `name`: answers `snapshot status`, records the restore's argv, lays out the member. */
function tool(name: string): string {
  const dir = join(work, `bin-${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), `#!/bin/sh
[ "$2" = status ] && { echo '{"hash":1,"revision":42,"totalKey":7,"totalSize":4128}'; exit 0; }
echo "$@" > "${work}/${name}.argv"
prev=""; for a in "$@"; do [ "$prev" = "--data-dir" ] && dir="$a"; prev="$a"; done
mkdir -p "$dir/member/snap" && echo db > "$dir/member/snap/db"
`);
  chmodSync(join(dir, name), 0o755);
  return join(dir, name);
}

function kubedr(args: string[]) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), 'etcd-restore', '--snapshot', snapshot,
    '--etcd-manifest', join(work, 'none'), '--apiserver-manifest', join(work, 'none'), ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const argv = (name: string) => readFileSync(join(work, `${name}.argv`), 'utf8').trim();

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'etcd-restore-cli-'));
  const content = Buffer.alloc(4096, 3);
  const digest = createHash('sha256').update(content).digest();
  snapshot = join(work, 'etcd-snapshot.db');
  writeFileSync(snapshot, Buffer.concat([content, digest]));
  // The SHA-256 etcd writes as the snapshot's trailer, that of the content before it, identifies the snapshot.
  sha256 = digest.toString('hex');
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

test('etcdutl restores with the revision a billion ahead and older ones compacted, and a token derived from the snapshot', () => {
  const r = kubedr(['--etcdutl', tool('etcdutl'), '--data-dir', join(work, 'd1'), '--name', 'cp-1', '--initial-advertise-peer-urls', 'https://10.0.0.1:2380']);
  expect(r.stderr).not.toContain('warning');
  expect(r.code).toBe(0);
  expect(r.stderr).toContain('revision 42, 7 keys');
  expect(argv('etcdutl')).toContain('--bump-revision 1000000000 --mark-compacted');
  expect(argv('etcdutl')).toMatch(/--initial-cluster-token kubedr-restore-[0-9a-f]{16}/);
  expect(argv('etcdutl')).toContain('--initial-cluster cp-1=https://10.0.0.1:2380');
});

test('--no-bump-revision restores as is', () => {
  expect(kubedr(['--etcdutl', tool('etcdutl'), '--data-dir', join(work, 'd2'), '--name', 'cp-1', '--no-bump-revision']).code).toBe(0);
  expect(argv('etcdutl')).not.toContain('--bump-revision');
});

test('3.4\'s etcdctl cannot bump revisions: it says so, and what to do instead, and restores', () => {
  const r = kubedr(['--etcdutl', tool('etcdctl'), '--data-dir', join(work, 'd3'), '--name', 'cp-1']);
  expect(r.code).toBe(0);
  expect(r.stderr).toContain('warning: etcdctl cannot move the revision ahead');
  expect(r.stderr).toContain('restart every client of the API server');
  expect(argv('etcdctl')).not.toContain('--bump-revision');
});

test('with several members it restores this one and prints the same restore for the others', () => {
  const r = kubedr(['--etcdutl', tool('etcdutl'), '--data-dir', join(work, 'd4'), '--name', 'cp-2', '--initial-cluster', three]);
  expect(r.code).toBe(0);
  expect(argv('etcdutl')).toContain('--name cp-2');
  expect(argv('etcdutl')).toContain(`--initial-cluster ${three}`);
  expect(argv('etcdutl')).toContain('--initial-advertise-peer-urls https://10.0.0.2:2380');
  const others = r.stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('kubedr etcd-restore'));
  expect(others.map((c) => /--name (\S+)/.exec(c)?.[1])).toEqual(['cp-1', 'cp-3']);
  for (const c of others) expect(c).toContain(`--expect-sha256 ${sha256}`);
});

test('--print restores nothing and prints every member\'s command', () => {
  const r = kubedr(['--etcdutl', tool('etcdutl'), '--data-dir', join(work, 'd5'), '--name', 'cp-1', '--initial-cluster', three, '--print']);
  expect(r.code).toBe(0);
  expect(existsSync(join(work, 'd5'))).toBe(false);
  expect(r.stdout.match(/^kubedr etcd-restore /gm)).toHaveLength(3);
});

test('a peer URL that contradicts the member list, and a member not in it, are refused before anything is written', () => {
  const bad = kubedr(['--etcdutl', tool('etcdutl'), '--data-dir', join(work, 'd6'), '--name', 'cp-1', '--initial-cluster', three,
    '--initial-advertise-peer-urls', 'https://10.9.9.9:2380']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('is not member cp-1\'s URL in the cluster');
  const stranger = kubedr(['--etcdutl', tool('etcdutl'), '--data-dir', join(work, 'd6'), '--name', 'cp-9', '--initial-cluster', three]);
  expect(stranger.code).toBe(2);
  expect(stranger.stderr).toContain('member "cp-9" is not in --initial-cluster');
  expect(existsSync(join(work, 'd6'))).toBe(false);
});

test('a backup of a three-member cluster (its etcd-members.json) refuses a one-member restore, and names every member', () => {
  const dir = join(work, 'ha-backup');
  mkdirSync(dir, { recursive: true });
  const copy = join(dir, 'etcd-snapshot.db');
  writeFileSync(copy, readFileSync(snapshot));
  writeFileSync(join(dir, 'etcd-members.json'), JSON.stringify(three.split(',').map((m, i) => {
    const [name, url] = m.split('=');
    return { id: `${i + 1}`, name, peerUrls: [url], clientUrls: [], isLearner: false };
  })));
  const r = spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), 'etcd-restore', '--snapshot', copy, '--etcd-manifest', join(work, 'none'),
    '--apiserver-manifest', join(work, 'none'), '--etcdutl', tool('etcdutl'), '--data-dir', join(work, 'd7'), '--name', 'cp-1'],
  { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  expect(r.status).toBe(2);
  expect(r.stderr).toContain('this backup was taken from a cluster of 3 members (cp-1, cp-2, cp-3)');
  expect(r.stderr).toContain(`--initial-cluster ${three}`);
  expect(existsSync(join(work, 'd7'))).toBe(false);
});

test('the printed token cannot be reused with another snapshot, even without --expect-sha256', () => {
  const r = kubedr(['--etcdutl', tool('etcdutl'), '--data-dir', join(work, 'd8'), '--name', 'cp-2', '--initial-cluster', three,
    '--initial-cluster-token', 'kubedr-restore-0123456789abcdef']);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain('cluster token "kubedr-restore-0123456789abcdef" belongs to the snapshot whose SHA-256 begins 0123456789abcdef');
  expect(existsSync(join(work, 'd8'))).toBe(false);
});

test('a member of several whose tool cannot bump the revision refuses, unless every member is told --no-bump-revision', () => {
  const r = kubedr(['--etcdutl', tool('etcdctl'), '--data-dir', join(work, 'd9'), '--name', 'cp-2', '--initial-cluster', three]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain('the revision bump is decided once for all members');
  expect(existsSync(join(work, 'd9'))).toBe(false);
  const agreed = kubedr(['--etcdutl', tool('etcdctl'), '--data-dir', join(work, 'd9'), '--name', 'cp-2', '--initial-cluster', three, '--no-bump-revision']);
  expect(agreed.code).toBe(0);
  expect(agreed.stdout).toContain('--no-bump-revision');
});

test('without --data-dir, the data goes where the node\'s etcd reads it: the manifest\'s etcd-data hostPath, not the container\'s --data-dir', () => {
  // After an earlier --kubeadm restore the two differ: the container still says /var/lib/etcd, the host path moved.
  const hostPath = join(work, 'etcd-restored-earlier');
  const manifest = join(work, 'etcd.yaml');
  writeFileSync(manifest, kubeadmEtcd.replace('path: /var/lib/etcd\n', `path: ${hostPath}\n`));
  const r = spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), 'etcd-restore', '--snapshot', snapshot, '--etcd-manifest', manifest,
    '--apiserver-manifest', join(work, 'none'), '--etcdutl', tool('etcdutl')], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  expect(r.stderr).not.toContain('Error');
  expect(r.status).toBe(0);
  // Built beside it, then moved into place.
  expect(argv('etcdutl')).toContain(`--data-dir ${work}/.etcd-restored-earlier.kubedr-`);
  expect(existsSync(join(hostPath, 'member/snap/db'))).toBe(true);
});
