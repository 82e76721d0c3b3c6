/**
 * Disaster recovery of a three-member control plane (etcd 3.5, mutual TLS for clients and peers, as kubeadm runs it)
 * from one backup, with the command line only, on kubeadm's static layout: three nodes' manifests directories in this
 * test's own tree (cp-1, cp-2, cp-3), whose etcd.yaml files are written as kubeadm writes them (cp-1's lists only itself
 * in --initial-cluster; cp-2 and cp-3 joined in turn with `member add` and --initial-cluster-state=existing) and run by
 * a real kubelet: the test node's, whose manifests directory links to them (one kubelet running the three members).
 * The backup is taken from that running three-member cluster, so it records three members. On cp-1,
 * `kubedr etcd-restore --kubeadm` without the other members is refused while the kubelet keeps the members running;
 * `--single-member` lets it through, and the kubelet runs cp-1 as a one-member cluster. Then the real restore:
 * `--kubeadm` on cp-1 with every member's manifest restores its member, moves its kube-apiserver manifest aside,
 * repoints its etcd-data hostPath and prints the command for each other member; those commands run as printed on cp-2
 * and cp-3, and the kubelet restarts each etcd on its restored data. They must form one healthy cluster with one
 * cluster ID and the same data, and a kube-apiserver on them must hold exactly the objects of backup time.
 * Recovery times of this small etcd are printed (scripts/measure-recovery.ts measures a large one).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { etcdDataHostPath } from '../../src/engine/kubeadm-manifests.ts';
import { importImage, startExtraApiserver, stopExtra } from '../../scripts/cluster/node.ts';
import { controlPlaneImages } from '../../scripts/cluster/static-control-plane.ts';
import { ETCD_IMAGE } from '../../scripts/cluster/static-pods.ts';
import {
  ControllerProcess, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, etcdctl,
  eventually, freePort, kubectl, locationInit, locationSecretYaml, locationYaml, policyYaml, repoRoot, uniqueBucket,
} from '../support/e2e.ts';

const NODES = ['cp-1', 'cp-2', 'cp-3'] as const;
let ns: string;
let work: string;
let controller: ControllerProcess | undefined;
let lostKubeconfig: string;
let credentialsFile: string;
let objectsAtBackup: string[];
let restoredKubeconfig: string;
const ports: Record<string, { client: number; peer: number }> = {};
const bucket = uniqueBucket('ha');
const password = `ha-pw-${crypto.randomUUID()}`;
const timings: Record<string, number> = {};

const kubectlAt = (kubeconfig: string, args: string[]) => kubectl(['--kubeconfig', kubeconfig, ...args]);
const nodeDir = (node: string) => join(work, 'nodes', node);
const manifests = (node: string) => join(nodeDir(node), 'manifests');
const endpoint = (node: string) => `https://127.0.0.1:${ports[node]!.client}`;
const snapshot = () => join(work, 'restored/data/etcd-snapshot.db');

/** The kubedr command line as an operator runs it, with only PATH in its environment. */
function kubedr(args: string[]) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '', seconds: (performance.now() - t0) / 1000 };
}

/** Objects a user would compare: every namespace and ConfigMap, by name. */
function objectNames(kubeconfig: string): string[] {
  const r = kubectlAt(kubeconfig, ['get', 'namespaces,configmaps', '-A', '-o', 'jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}{"\\n"}{end}']);
  expect(r.code).toBe(0);
  return r.stdout.trim().split('\n').sort();
}

/**
 * kubeadm's etcd.yaml for one node, with loopback ports standing in for each node's address. Paths in the flags are the
 * container's (/etc/kubernetes/pki/etcd, /var/lib/etcd), mounted from this node's PKI and data directory. The pod is
 * named after the node: one kubelet runs all three (on kubeadm each is `etcd`, and each node's kubelet adds its name).
 */
function etcdManifest(node: string, initialCluster: string, state: 'new' | 'existing'): string {
  const certs = '/etc/kubernetes/pki/etcd';
  const p = ports[node]!;
  const flags = [`--name=${node}`, '--data-dir=/var/lib/etcd',
    `--listen-client-urls=https://127.0.0.1:${p.client}`, `--advertise-client-urls=https://127.0.0.1:${p.client}`,
    `--listen-peer-urls=https://127.0.0.1:${p.peer}`, `--initial-advertise-peer-urls=https://127.0.0.1:${p.peer}`,
    `--initial-cluster=${initialCluster}`, ...(state === 'existing' ? ['--initial-cluster-state=existing'] : []),
    '--client-cert-auth=true', '--peer-client-cert-auth=true',
    `--cert-file=${certs}/server.crt`, `--key-file=${certs}/server.key`, `--trusted-ca-file=${certs}/ca.crt`,
    `--peer-cert-file=${certs}/peer.crt`, `--peer-key-file=${certs}/peer.key`, `--peer-trusted-ca-file=${certs}/ca.crt`,
    '--snapshot-count=10000'];
  return ['apiVersion: v1', 'kind: Pod', 'metadata:', `  name: etcd-${node}`, '  namespace: kube-system', 'spec:', '  containers:', '  - command:',
    '    - etcd', ...flags.map((f) => `    - ${f}`), `    image: ${ETCD_IMAGE}`, '    imagePullPolicy: Never', '    name: etcd', '    volumeMounts:',
    '    - mountPath: /var/lib/etcd', '      name: etcd-data', `    - mountPath: ${certs}`, '      name: etcd-certs',
    '  hostNetwork: true', '  volumes:', '  - hostPath:', `      path: ${cluster().pki}/etcd`, '      type: DirectoryOrCreate', '    name: etcd-certs',
    '  - hostPath:', `      path: ${join(nodeDir(node), 'var-lib-etcd')}`, '      type: DirectoryOrCreate', '    name: etcd-data', 'status: {}', ''].join('\n');
}

/** The test node's kubelet runs each member: a link in its manifests directory to that node's etcd.yaml. */
const kubeletLink = (node: string) => join(cluster().dir, 'manifests', `${linkPrefix}${node}-etcd.yaml`);
const linkPrefix = `ha-restore-${process.pid}-`;
/** Members of the cluster as the member at `at` sees it. */
const memberNames = (at: string) => (JSON.parse(etcdctl(['member', 'list', '-w', 'json'], at).stdout) as { members: { name: string }[] })
  .members.map((m) => m.name).sort();

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('ha');
  work = mkdtempSync(join(tmpdir(), 'ha-restore-'));
  const env = cluster();

  for (const archive of controlPlaneImages(undefined).archives) importImage(env, archive);

  // The control plane that will be lost: three members as kubeadm leaves them, cp-1 made the cluster, cp-2 and cp-3
  // joined it in turn (`etcdctl member add`, then the joining node's manifest), each run by the kubelet.
  for (const node of NODES) ports[node] = { client: await freePort(), peer: await freePort() };
  const url = (node: string) => `${node}=https://127.0.0.1:${ports[node]!.peer}`;
  for (const [i, node] of NODES.entries()) {
    mkdirSync(manifests(node), { recursive: true });
    mkdirSync(join(nodeDir(node), 'var-lib-etcd'), { recursive: true });
    // etcd refuses a member while its members have been connected for less than 5 s ("unhealthy cluster"): retried.
    if (i > 0) {
      await eventually(() => expect(etcdctl(['member', 'add', node, `--peer-urls=https://127.0.0.1:${ports[node]!.peer}`], endpoint('cp-1')))
        .toMatchObject({ code: 0 }), 60_000, 1000);
    }
    writeFileSync(join(manifests(node), 'etcd.yaml'), etcdManifest(node, NODES.slice(0, i + 1).map(url).join(','), i === 0 ? 'new' : 'existing'));
    writeFileSync(join(manifests(node), 'kube-apiserver.yaml'), `apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver-${node}}\n`);
    symlinkSync(join(manifests(node), 'etcd.yaml'), kubeletLink(node));
    // Started, the member has a name in the list (an added one has none until it runs) and answers.
    await eventually(() => {
      expect(memberNames(endpoint('cp-1'))).toEqual(NODES.slice(0, i + 1));
      expect(etcdctl(['endpoint', 'health', '--cluster'], endpoint('cp-1')).code).toBe(0);
    }, 120_000, 1000);
  }
  const etcd = NODES.map(endpoint).join(',');
  lostKubeconfig = await startExtraApiserver(env, 'ha-lost-apiserver', etcd);
  expect(kubectlAt(lostKubeconfig, ['create', 'namespace', 'before-backup']).code).toBe(0);
  expect(kubectlAt(lostKubeconfig, ['create', 'configmap', 'keep-me', '-n', 'before-backup', '--from-literal=answer=42']).code).toBe(0);

  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  apply(policyYaml(ns, 'cp', { etcdEndpoint: endpoint('cp-1') }));
  controller = await ControllerProcess.start(ns);
  await locationInit(ns, 'loc', 'Completed');
  objectsAtBackup = objectNames(lostKubeconfig);
  expect((await backupNow(ns, 'cp')).status?.backupStatus).toBe('Completed');
  expect(kubectlAt(lostKubeconfig, ['create', 'configmap', 'too-late', '-n', 'before-backup']).code).toBe(0);
  await controller.stop();
  controller = undefined;
  await stopExtra(env, 'ha-lost-apiserver');

  // The operator kept the location's Secret, as `kubectl get secret -o yaml` saves it.
  credentialsFile = join(work, 's3-creds.yaml');
  writeFileSync(credentialsFile, kubectl(['get', 'secret', 's3-creds', '-n', ns, '-o', 'yaml']).stdout, { mode: 0o600 });

  for (const node of NODES) writeFileSync(join(nodeDir(node), 'var-lib-etcd', 'old-data'), 'the lost member\'s data: must stay');
}, 420_000);

afterAll(async () => {
  await controller?.stop();
  for (const name of ['ha-apiserver', 'ha-lost-apiserver']) await stopExtra(cluster(), name).catch(() => {});
  // The kubelet stops the members once their links leave its manifests directory.
  for (const node of NODES) rmSync(kubeletLink(node), { force: true });
  if (ports['cp-1']) {
    await eventually(() => { for (const n of NODES) expect(etcdctl(['endpoint', 'health', '--command-timeout=1s'], endpoint(n)).code).not.toBe(0); }, 90_000, 1000)
      .catch((err) => console.error(`the kubelet did not stop the members: ${err}`));
  }
  if (ns) deleteNamespace(ns);
  if (work) rmSync(work, { recursive: true, force: true });
  if (Object.keys(timings).length > 0) console.log(`recovery of a small etcd (s): ${JSON.stringify(timings)}`);
});

describe('three members restored from one backup', () => {
  const printed: string[] = [];

  test('kubedr restore brings the backup back from S3, verified', () => {
    const r = kubedr(['restore', 'latest', '--policy', 'cp', '--target', join(work, 'restored'), '--url', cluster().s3Url, '--bucket', bucket, '--credentials', credentialsFile]);
    expect(r.stderr).not.toContain('failed');
    expect(r.code).toBe(0);
    expect(existsSync(snapshot())).toBe(true);
    timings['kubedr restore'] = r.seconds;
  });

  test('on cp-1, whose manifest lists only itself, a one-member restore of the three-member backup is refused: the members run on', () => {
    const before = readFileSync(join(manifests('cp-1'), 'etcd.yaml'), 'utf8');
    const r = kubedr(['etcd-restore', '--snapshot', snapshot(), '--etcd-manifest', join(manifests('cp-1'), 'etcd.yaml'), '--kubeadm']);
    expect(r.code).toBe(2);
    // The members as the backup recorded them (etcd lists them by ID).
    const listed = /this backup was taken from a cluster of 3 members \(([^)]*)\)/.exec(r.stderr)?.[1];
    expect(listed?.split(', ').sort()).toEqual([...NODES]);
    expect(r.stderr).toContain('--single-member');
    // The exact command for every member, from this snapshot (checked by its SHA-256) and with the backup's member list.
    const commands = r.stderr.split('\n').filter((l) => l.trim().startsWith('kubedr etcd-restore '));
    expect(commands.map((c) => /--name (\S+)/.exec(c)?.[1]).sort()).toEqual([...NODES]);
    for (const c of commands) expect(c).toContain(`--snapshot ${snapshot()} --expect-sha256 `);
    // Nothing changed on the node: no data directory, both manifests where the kubelet reads them, the cluster whole.
    expect(readdirSync(nodeDir('cp-1')).sort()).toEqual(['manifests', 'var-lib-etcd']);
    expect(readFileSync(join(manifests('cp-1'), 'etcd.yaml'), 'utf8')).toBe(before);
    expect(readdirSync(manifests('cp-1')).sort()).toEqual(['etcd.yaml', 'kube-apiserver.yaml']);
    expect(etcdctl(['endpoint', 'health', '--cluster'], endpoint('cp-1')).code).toBe(0);
    expect(memberNames(endpoint('cp-1'))).toEqual([...NODES]);
  });

  test('--single-member lets it through: the kubelet runs cp-1 as a cluster of its own', async () => {
    const r = kubedr(['etcd-restore', '--snapshot', snapshot(), '--etcd-manifest', join(manifests('cp-1'), 'etcd.yaml'), '--kubeadm', '--single-member']);
    expect(r.stderr).not.toContain('failed');
    expect(r.code).toBe(0);
    // The kubelet read the repointed manifest and restarted cp-1 on the restored data: one member, the backup's data.
    await eventually(() => expect(memberNames(endpoint('cp-1'))).toEqual(['cp-1']), 90_000, 1000);
    expect(etcdctl(['get', '/registry/configmaps/before-backup/keep-me', '--keys-only'], endpoint('cp-1')).stdout).toContain('keep-me');
    // The split the refusal warns of: cp-2 and cp-3 still form the old cluster, which lists all three.
    expect(memberNames(endpoint('cp-2'))).toEqual([...NODES]);
  }, 120_000);

  test('a one-member restore on cp-3, whose manifest lists three members, is refused', () => {
    const r = kubedr(['etcd-restore', '--snapshot', snapshot(), '--etcd-manifest', join(manifests('cp-3'), 'etcd.yaml'), '--kubeadm']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('lists 3 members (cp-1, cp-2, cp-3)');
    expect(readdirSync(nodeDir('cp-3')).sort()).toEqual(['manifests', 'var-lib-etcd']);
  });

  test('--kubeadm on cp-1: a new data directory, the API server manifest aside, etcd-data repointed, commands for the others', () => {
    const memberManifests = NODES.map((n) => join(manifests(n), 'etcd.yaml')).join(',');
    const r = kubedr(['etcd-restore', '--snapshot', snapshot(), '--member-manifests', memberManifests, '--etcd-manifest', join(manifests('cp-1'), 'etcd.yaml'), '--kubeadm']);
    expect(r.code).toBe(0);
    timings['kubedr etcd-restore (cp-1)'] = r.seconds;
    expect(r.stderr).toMatch(/revision \d+, \d+ keys/);
    expect(r.stderr).not.toContain('warning');
    // Its etcd-data already points at the --single-member restore; this restore goes beside it.
    const oldData = join(nodeDir('cp-1'), 'var-lib-etcd');
    const etcdYaml = readFileSync(join(manifests('cp-1'), 'etcd.yaml'), 'utf8');
    const newData = etcdDataHostPath(etcdYaml);
    expect(newData).toStartWith(`${oldData}-restored-`);
    expect(existsSync(join(newData, 'member/snap/db'))).toBe(true);
    expect(readFileSync(join(oldData, 'old-data'), 'utf8')).toContain('must stay');
    expect(existsSync(join(manifests('cp-1'), 'kube-apiserver.yaml'))).toBe(false);
    expect(readdirSync(manifests('cp-1'))).toEqual(['etcd.yaml']);
    // A copy of the manifest before each restore: the first names the lost member's data.
    const copies = readdirSync(nodeDir('cp-1')).filter((f) => f.startsWith('etcd.yaml.before-restore-')).sort();
    expect(copies).toHaveLength(2);
    expect(etcdDataHostPath(readFileSync(join(nodeDir('cp-1'), copies[0]!), 'utf8'))).toBe(oldData);
    printed.push(...r.stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('kubedr etcd-restore --snapshot')));
    expect(printed.map((c) => / --name (\S+)/.exec(c)?.[1])).toEqual(['cp-2', 'cp-3']);
    expect(r.stdout).toContain('kubedr etcd-restore --stop-apiserver');
    expect(r.stdout).toContain('kubedr etcd-restore --start-apiserver');
  });

  test('a different snapshot under a member\'s printed command is refused by its SHA-256', () => {
    const other = join(work, 'other.db');
    etcdctl(['snapshot', 'save', other]);
    const command = printed[0]!.split(' ').slice(1).map((a) => (a === snapshot() ? other : a));
    const r = kubedr([...command, '--etcd-manifest', join(manifests('cp-2'), 'etcd.yaml')]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('not the snapshot the other members were restored from');
    // Without --expect-sha256, the printed cluster token still names the snapshot: refused, and the member untouched.
    const bare = command.filter((a, i) => a !== '--expect-sha256' && command[i - 1] !== '--expect-sha256');
    expect(bare).toContain('--initial-cluster-token');
    const manifestBefore = readFileSync(join(manifests('cp-2'), 'etcd.yaml'), 'utf8');
    const tokenOnly = kubedr([...bare, '--etcd-manifest', join(manifests('cp-2'), 'etcd.yaml')]);
    expect(tokenOnly.code).toBe(2);
    expect(tokenOnly.stderr).toMatch(/cluster token .* belongs to the snapshot whose SHA-256 begins/);
    expect(readFileSync(join(manifests('cp-2'), 'etcd.yaml'), 'utf8')).toBe(manifestBefore);
  });

  test('a member\'s printed command on a node without etcdutl (etcdctl cannot move the revision) is refused, unless every member skips the bump', () => {
    const manifestBefore = readFileSync(join(manifests('cp-2'), 'etcd.yaml'), 'utf8');
    const etcdctlOnly = Bun.which('etcdctl')!;
    const r = kubedr([...printed[0]!.split(' ').slice(1), '--etcdutl', etcdctlOnly, '--etcd-manifest', join(manifests('cp-2'), 'etcd.yaml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('the revision bump is decided once for all members');
    expect(r.stderr).toContain('--no-bump-revision');
    expect(readFileSync(join(manifests('cp-2'), 'etcd.yaml'), 'utf8')).toBe(manifestBefore);
    expect(readdirSync(nodeDir('cp-2')).sort()).toEqual(['manifests', 'var-lib-etcd']);
  });

  test('the printed commands, run on cp-2 and cp-3 as printed, restore their members', () => {
    for (const [i, node] of ['cp-2', 'cp-3'].entries()) {
      expect(kubedr(['etcd-restore', '--stop-apiserver', '--etcd-manifest', join(manifests(node), 'etcd.yaml')]).code).toBe(0);
      const r = kubedr([...printed[i]!.split(' ').slice(1), '--etcd-manifest', join(manifests(node), 'etcd.yaml')]);
      expect(r.stderr).not.toContain('failed');
      expect(r.code).toBe(0);
      timings[`kubedr etcd-restore (${node})`] = r.seconds;
    }
  });

  test('the kubelet restarts the three etcds from the repointed manifests: one healthy cluster with the same data', async () => {
    const t0 = performance.now();
    const all = NODES.map(endpoint).join(',');
    await eventually(() => {
      expect(etcdctl(['endpoint', 'health', '--cluster'], all).code).toBe(0);
      for (const n of NODES) expect(memberNames(endpoint(n))).toEqual([...NODES]);
      const ids = JSON.parse(etcdctl(['endpoint', 'status', '-w', 'json'], all).stdout) as { Status: { header: { cluster_id: number } } }[];
      expect(new Set(ids.map((x) => x.Status.header.cluster_id)).size).toBe(1);
    }, 120_000, 1000);
    timings['etcd quorum'] = (performance.now() - t0) / 1000;
    const status = JSON.parse(etcdctl(['endpoint', 'status', '-w', 'json'], all).stdout) as { Status: { header: { cluster_id: number; revision: number } } }[];
    expect(status).toHaveLength(3);
    expect(new Set(status.map((s) => s.Status.header.cluster_id)).size).toBe(1);
    // The revision moved a billion ahead (etcdutl --bump-revision): clients holding older resource versions relist.
    for (const s of status) expect(s.Status.header.revision).toBeGreaterThan(1_000_000_000);
    // The bump was decided once, for all: the printed commands carried it, and every member is at the same revision.
    expect(new Set(status.map((s) => s.Status.header.revision)).size).toBe(1);
    const members = JSON.parse(etcdctl(['member', 'list', '-w', 'json'], endpoint('cp-1')).stdout) as { members: { name: string }[] };
    expect(members.members.map((m) => m.name).sort()).toEqual([...NODES]);
    // Read at one revision on each member: the backup holds keys bound to leases (the API server's masterleases),
    // which the restored cluster's leader revokes once they expire, between one member's read and the next's.
    const rev = status[0]!.Status.header.revision;
    const keys = NODES.map((n) => etcdctl(['get', '', '--prefix', '--keys-only', `--rev=${rev}`], endpoint(n)).stdout);
    expect(keys[0]).toContain('/registry/configmaps/before-backup/keep-me');
    expect(keys[1]).toBe(keys[0]!);
    expect(keys[2]).toBe(keys[0]!);
  });

  test('a kube-apiserver on the three members holds exactly the objects of backup time', async () => {
    const t0 = performance.now();
    restoredKubeconfig = await startExtraApiserver(cluster(), 'ha-apiserver', NODES.map(endpoint).join(','));
    timings['kube-apiserver /readyz'] = (performance.now() - t0) / 1000;
    expect(objectNames(restoredKubeconfig)).toEqual(objectsAtBackup);
    const cm = kubectlAt(restoredKubeconfig, ['get', 'configmap', 'keep-me', '-n', 'before-backup', '-o', 'jsonpath={.data.answer}']);
    expect(cm.stdout).toBe('42');
    expect(kubectlAt(restoredKubeconfig, ['get', 'configmap', 'too-late', '-n', 'before-backup']).code).not.toBe(0);
  });

  test('--start-apiserver puts each node\'s kube-apiserver manifest back', () => {
    for (const node of NODES) {
      expect(kubedr(['etcd-restore', '--start-apiserver', '--etcd-manifest', join(manifests(node), 'etcd.yaml')]).code).toBe(0);
      expect(readFileSync(join(manifests(node), 'kube-apiserver.yaml'), 'utf8')).toContain(`kube-apiserver-${node}`);
    }
    timings.total = Object.values(timings).reduce((a, b) => a + b, 0);
  });

  test('without --kubeadm, the default data directory is where the manifest\'s etcd-data points now (the restored one), not the container\'s --data-dir', () => {
    const etcdYaml = join(manifests('cp-1'), 'etcd.yaml');
    const live = etcdDataHostPath(readFileSync(etcdYaml, 'utf8'));
    expect(live).toContain('-restored-');
    const r = kubedr(['etcd-restore', '--snapshot', snapshot(), '--etcd-manifest', etcdYaml, '--member-manifests',
      NODES.map((n) => join(manifests(n), 'etcd.yaml')).join(',')]);
    // That directory holds the running member's data: refused, naming it, and left as it is.
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${live} is not empty; it may hold a member's data`);
    expect(existsSync(join(live, 'member/snap/db'))).toBe(true);
  });
});
