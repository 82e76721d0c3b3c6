/**
 * @module `npm run measure-recovery`: recovery time (RTO) of a lost control plane, for a small etcd and the bench's
 * ~1.2 GB one. For each size an etcd 3.5 (mTLS) with its own kube-apiserver is filled, backed up by the controller
 * (the compiled dist/kubedr) to S3, and lost; then, as an operator would with the command line: `kubedr restore`
 * (S3 → verified snapshot), `kubedr etcd-restore` (new data directory, revision bumped), etcd started on it, and a
 * kube-apiserver on that etcd until its first /readyz. Prints each step and the total. Not a test: record the figures
 * in docs/performance.md. Sizes in MB: RECOVERY_SIZES (default "5,1000").
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KubeClient } from '../src/kube/client.ts';
import { freePort } from '../src/util/net.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, extraEtcdDataDir, loadEnv, startExtraApiserver, startExtraEtcd, stopExtra } from './cluster/node.ts';
import { backedUpOnce, eachLine, fillEtcdMb, prepareNamespace, sh } from './measure.ts';

const root = resolve(import.meta.dir, '..');
const SIZES = (process.env.RECOVERY_SIZES ?? '5,1000').split(',').map(Number);
const kubedrBin = join(root, 'dist/kubedr');
const env = loadEnv();
const work = mkdtempSync(join(tmpdir(), 'kubedr-recovery-'));
const password = 'recovery-password';
const kubectl = (args: string[], input?: string) => sh(['kubectl', '--kubeconfig', env.kubeconfig, ...args], {}, input);
const extras: string[] = [];

/** Seconds `fn` takes. */
async function timed(fn: () => unknown): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/**
 * Runs a kubedr command, passing on each line it prints to stderr (its steps) with the seconds since it started: where
 * a restore's time goes (the download, the extraction, the checksum).
 */
async function withSteps(cmd: string[], extraEnv: Record<string, string>): Promise<void> {
  const t0 = performance.now();
  const p = Bun.spawn(cmd, { env: { ...process.env, ...extraEnv }, stdout: 'ignore', stderr: 'pipe' });
  let err = '';
  await eachLine(p.stderr, (l) => {
    err += `${l}\n`;
    process.stderr.write(`  ${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s  ${l}\n`);
  });
  if ((await p.exited) !== 0) throw new Error(`${cmd.join(' ')}: ${err}`);
}

let controller: ReturnType<typeof Bun.spawn> | undefined;
try {
  prepareNamespace(env, 'recovery', password);
  kubectl(['apply', '-f', '-'], `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: BackupLocation
metadata: { name: loc, namespace: recovery }
spec: { url: "${env.s3Url}", bucketName: recovery, credentials: s3-creds }
`);
  controller = Bun.spawn([kubedrBin, 'controller', '--kubeconfig', env.kubeconfig, '--namespace', 'recovery', '--http-port', '0', '--log-level', 'warn'],
    { stdout: 'ignore', stderr: 'inherit' });
  kubectl(['-n', 'recovery', 'wait', '--for=condition=Ready', '--timeout=120s', 'backuplocation/loc']);
  const client = KubeClient.load({ kubeconfig: env.kubeconfig, fieldManager: 'measure-recovery' });
  const operatorEnv = { PATH: process.env.PATH ?? '', AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY, RESTIC_PASSWORD: password,
    KUBEDR_S3_CA_CERT: readFileSync(join(env.pki, 'ca.crt'), 'utf8') };

  const rows: string[] = [];
  for (const mb of SIZES) {
    const name = `rec${mb}`;
    // The control plane that will be lost: etcd with objects a Kubernetes cluster has, filled up to the size.
    const etcd = await startExtraEtcd(env, `${name}-etcd`);
    extras.push(`${name}-etcd`);
    await startExtraApiserver(env, `${name}-apiserver`, etcd);
    extras.push(`${name}-apiserver`);
    process.stderr.write(`${name}: filling etcd with ${mb} MB…\n`);
    fillEtcdMb(env, etcd, mb);
    await backedUpOnce(env, client, 'recovery', name, etcd);
    // Lost.
    await stopExtra(env, `${name}-apiserver`);
    await stopExtra(env, `${name}-etcd`);

    const target = join(work, name);
    const snapshotSize = () => Bun.file(join(target, 'data/etcd-snapshot.db')).size / 1e6;
    const restore = await timed(() => withSteps([kubedrBin, 'restore', 'latest', '--policy', name, '--target', target, '--url', env.s3Url, '--bucket', 'recovery'], operatorEnv));
    const peer = await freePort();
    const restoredName = `${name}-restored`;
    const etcdRestore = await timed(() => sh([kubedrBin, 'etcd-restore', '--snapshot', join(target, 'data/etcd-snapshot.db'),
      '--data-dir', extraEtcdDataDir(env, restoredName), '--name', restoredName, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--etcd-manifest', join(work, 'none')], operatorEnv));
    let restoredEtcd = '';
    const etcdUp = await timed(async () => { restoredEtcd = await startExtraEtcd(env, restoredName, { client: await freePort(), peer }); });
    extras.push(restoredName);
    const apiserverUp = await timed(() => startExtraApiserver(env, `${restoredName}-apiserver`, restoredEtcd));
    extras.push(`${restoredName}-apiserver`);
    const total = restore + etcdRestore + etcdUp + apiserverUp;
    rows.push(`| ${snapshotSize().toFixed(0)} MB | ${restore.toFixed(1)} s | ${etcdRestore.toFixed(1)} s | ${etcdUp.toFixed(1)} s | ${apiserverUp.toFixed(1)} s | ${total.toFixed(1)} s |`);
    process.stderr.write(`${rows.at(-1)}\n`);
    for (const x of [`${restoredName}-apiserver`, restoredName]) await stopExtra(env, x);
    rmSync(target, { recursive: true, force: true });
    rmSync(extraEtcdDataDir(env, restoredName), { recursive: true, force: true });
    rmSync(extraEtcdDataDir(env, `${name}-etcd`), { recursive: true, force: true });
  }
  console.log('| etcd snapshot | kubedr restore (S3 → verified snapshot) | kubedr etcd-restore | etcd up | kube-apiserver first /readyz | total |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
} finally {
  controller?.kill();
  await controller?.exited;
  for (const x of extras) await stopExtra(env, x).catch(() => {});
  rmSync(work, { recursive: true, force: true });
}
