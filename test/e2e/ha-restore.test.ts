/**
 * Disaster recovery of a three-member control plane (etcd 3.5, mutual TLS for clients and peers, as kubeadm runs it)
 * from one backup, with the command line only, on kubeadm's static layout: three nodes' manifests directories in this
 * test's own tree (cp-1, cp-2, cp-3; cp-3's etcd.yaml lists all three members, as `kubeadm join` writes it).
 * `kubedr etcd-restore --kubeadm` on cp-1 restores its member, moves its kube-apiserver manifest aside, repoints its
 * etcd-data hostPath and prints the command for each other member; those commands run as printed on cp-2 and cp-3.
 * The three etcds then start as the kubelet would start the repointed manifests. They must form one healthy cluster
 * with one cluster ID and the same data, and a kube-apiserver on them must hold exactly the objects of backup time.
 * Recovery times of this small etcd are printed (scripts/measure-recovery.ts measures a large one).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { etcdDataHostPath } from '../../src/engine/kubeadm-manifests.ts';
import { startExtraApiserver, startExtraEtcd, startExtraProcess, stopExtra } from '../../scripts/cluster/node.ts';
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

/** kubeadm's etcd.yaml for one node, with this node's PKI and loopback ports standing in for each node's address. */
function etcdManifest(node: string, initialCluster: string): string {
  const pki = cluster().pki;
  const p = ports[node]!;
  const flags = [`--name=${node}`, '--data-dir=/var/lib/etcd',
    `--listen-client-urls=https://127.0.0.1:${p.client}`, `--advertise-client-urls=https://127.0.0.1:${p.client}`,
    `--listen-peer-urls=https://127.0.0.1:${p.peer}`, `--initial-advertise-peer-urls=https://127.0.0.1:${p.peer}`,
    `--initial-cluster=${initialCluster}`, '--client-cert-auth=true', '--peer-client-cert-auth=true',
    `--cert-file=${pki}/etcd/server.crt`, `--key-file=${pki}/etcd/server.key`, `--trusted-ca-file=${pki}/etcd/ca.crt`,
    `--peer-cert-file=${pki}/etcd/peer.crt`, `--peer-key-file=${pki}/etcd/peer.key`, `--peer-trusted-ca-file=${pki}/etcd/ca.crt`,
    '--snapshot-count=10000'];
  return ['apiVersion: v1', 'kind: Pod', 'metadata:', '  name: etcd', '  namespace: kube-system', 'spec:', '  containers:', '  - command:',
    '    - etcd', ...flags.map((f) => `    - ${f}`), '    image: registry.k8s.io/etcd:3.5.16-0', '    name: etcd', '    volumeMounts:',
    '    - mountPath: /var/lib/etcd', '      name: etcd-data', '    - mountPath: /etc/kubernetes/pki/etcd', '      name: etcd-certs',
    '  hostNetwork: true', '  volumes:', '  - hostPath:', `      path: ${pki}/etcd`, '      type: DirectoryOrCreate', '    name: etcd-certs',
    '  - hostPath:', `      path: ${join(nodeDir(node), 'var-lib-etcd')}`, '      type: DirectoryOrCreate', '    name: etcd-data', 'status: {}', ''].join('\n');
}

/**
 * What the kubelet does with a static pod manifest, minus the container: the command with the container's paths mapped
 * to the volumes' host paths (here only etcd-data's mount differs from its host path).
 */
function commandOf(manifestFile: string): string[] {
  const text = readFileSync(manifestFile, 'utf8');
  const hostData = etcdDataHostPath(text, manifestFile);
  const flags = [...text.matchAll(/^ {4}- (--\S+)$/gm)].map((m) => m[1]!);
  return ['etcd', ...flags.map((f) => (f === '--data-dir=/var/lib/etcd' ? `--data-dir=${hostData}` : f))];
}

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('ha');
  work = mkdtempSync(join(tmpdir(), 'ha-restore-'));
  const env = cluster();

  // The control plane that will be lost (a one-member etcd 3.5 with its own API server), with objects at backup time.
  const etcd = await startExtraEtcd(env, 'ha-lost-etcd');
  lostKubeconfig = await startExtraApiserver(env, 'ha-lost-apiserver', etcd);
  expect(kubectlAt(lostKubeconfig, ['create', 'namespace', 'before-backup']).code).toBe(0);
  expect(kubectlAt(lostKubeconfig, ['create', 'configmap', 'keep-me', '-n', 'before-backup', '--from-literal=answer=42']).code).toBe(0);

  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  apply(policyYaml(ns, 'cp', { etcdEndpoint: etcd }));
  controller = await ControllerProcess.start(ns);
  await locationInit(ns, 'loc', 'Completed');
  objectsAtBackup = objectNames(lostKubeconfig);
  expect((await backupNow(ns, 'cp')).status?.backupStatus).toBe('Completed');
  expect(kubectlAt(lostKubeconfig, ['create', 'configmap', 'too-late', '-n', 'before-backup']).code).toBe(0);
  await controller.stop();
  controller = undefined;
  await stopExtra(env, 'ha-lost-apiserver');
  await stopExtra(env, 'ha-lost-etcd');

  // The operator kept the location's Secret, as `kubectl get secret -o yaml` saves it.
  credentialsFile = join(work, 's3-creds.yaml');
  writeFileSync(credentialsFile, kubectl(['get', 'secret', 's3-creds', '-n', ns, '-o', 'yaml']).stdout, { mode: 0o600 });

  // Three control-plane nodes as kubeadm leaves them: cp-1 made the cluster, cp-2 and cp-3 joined it in turn.
  for (const node of NODES) ports[node] = { client: await freePort(), peer: await freePort() };
  const url = (node: string) => `${node}=https://127.0.0.1:${ports[node]!.peer}`;
  NODES.forEach((node, i) => {
    mkdirSync(manifests(node), { recursive: true });
    writeFileSync(join(manifests(node), 'etcd.yaml'), etcdManifest(node, NODES.slice(0, i + 1).map(url).join(',')));
    writeFileSync(join(manifests(node), 'kube-apiserver.yaml'), `apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver-${node}}\n`);
    mkdirSync(join(nodeDir(node), 'var-lib-etcd'), { recursive: true });
    writeFileSync(join(nodeDir(node), 'var-lib-etcd', 'old-data'), 'the lost member\'s data: must stay');
  });
}, 240_000);

afterAll(async () => {
  await controller?.stop();
  for (const name of ['ha-apiserver', ...NODES.map((n) => `ha-${n}`)]) await stopExtra(cluster(), name).catch(() => {});
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
    const oldData = join(nodeDir('cp-1'), 'var-lib-etcd');
    const etcdYaml = readFileSync(join(manifests('cp-1'), 'etcd.yaml'), 'utf8');
    const newData = etcdDataHostPath(etcdYaml);
    expect(newData).toStartWith(`${oldData}-restored-`);
    expect(existsSync(join(newData, 'member/snap/db'))).toBe(true);
    expect(readFileSync(join(oldData, 'old-data'), 'utf8')).toContain('must stay');
    expect(existsSync(join(manifests('cp-1'), 'kube-apiserver.yaml'))).toBe(false);
    expect(readdirSync(manifests('cp-1'))).toEqual(['etcd.yaml']);
    const copy = readdirSync(nodeDir('cp-1')).find((f) => f.startsWith('etcd.yaml.before-restore-'));
    expect(copy).toBeDefined();
    expect(etcdDataHostPath(readFileSync(join(nodeDir('cp-1'), copy!), 'utf8'))).toBe(oldData);
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

  test('the three etcds, started from the repointed manifests, form one healthy cluster with the same data', async () => {
    const t0 = performance.now();
    for (const node of NODES) startExtraProcess(cluster(), `ha-${node}`, commandOf(join(manifests(node), 'etcd.yaml')), endpoint(node));
    const all = NODES.map(endpoint).join(',');
    await eventually(() => expect(etcdctl(['endpoint', 'health', '--cluster'], all).code).toBe(0), 60_000, 500);
    timings['etcd quorum'] = (performance.now() - t0) / 1000;
    const status = JSON.parse(etcdctl(['endpoint', 'status', '-w', 'json'], all).stdout) as { Status: { header: { cluster_id: number; revision: number } } }[];
    expect(status).toHaveLength(3);
    expect(new Set(status.map((s) => s.Status.header.cluster_id)).size).toBe(1);
    // The revision moved a billion ahead (etcdutl --bump-revision): clients holding older resource versions relist.
    for (const s of status) expect(s.Status.header.revision).toBeGreaterThan(1_000_000_000);
    const members = JSON.parse(etcdctl(['member', 'list', '-w', 'json'], endpoint('cp-1')).stdout) as { members: { name: string }[] };
    expect(members.members.map((m) => m.name).sort()).toEqual([...NODES]);
    const keys = NODES.map((n) => etcdctl(['get', '', '--prefix', '--keys-only'], endpoint(n)).stdout);
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
});
