/**
 * @module `npm run measure-browse`: time from `kubedr browse --from latest` to the first kubectl answer, and the memory
 * of what a browse runs, for a small etcd and a ~1.2 GB one. For each size an etcd 3.5 (mTLS) with its own kube-apiserver
 * holds 1,000 ConfigMaps and is filled up to the size, backed up by the controller (the compiled dist/kubedr) to S3;
 * then, as a person would: `kubedr browse --detach`, `kubectl get configmaps -A` through it, `kubedr browse --stop`.
 * Not a test: record the figures in docs/performance.md. Sizes in MB: BROWSE_SIZES (default "120,1200").
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KubeClient } from '../src/kube/client.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, extraEtcdDataDir, loadEnv, startExtraApiserver, startExtraEtcd, stopExtra } from './cluster/node.ts';
import { backedUpOnce, fillEtcdMb, memoryMb, prepareNamespace, sh } from './measure.ts';

const root = resolve(import.meta.dir, '..');
const SIZES = (process.env.BROWSE_SIZES ?? '120,1200').split(',').map(Number);
const kubedrBin = join(root, 'dist/kubedr');
const env = loadEnv();
const work = mkdtempSync(join(tmpdir(), 'kubedr-measure-browse-'));
const password = 'browse-password';
const kubectl = (args: string[], input?: string) => sh(['kubectl', '--kubeconfig', env.kubeconfig, ...args], {}, input);
const extras: string[] = [];

let controller: ReturnType<typeof Bun.spawn> | undefined;
try {
  prepareNamespace(env, 'browse-measure', password);
  kubectl(['apply', '-f', '-'], `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: BackupLocation
metadata: { name: loc, namespace: browse-measure }
spec: { url: "${env.s3Url}", bucketName: browse-measure, credentials: s3-creds }
`);
  controller = Bun.spawn([kubedrBin, 'controller', '--kubeconfig', env.kubeconfig, '--namespace', 'browse-measure', '--http-port', '0', '--log-level', 'warn'],
    { stdout: 'ignore', stderr: 'inherit' });
  kubectl(['-n', 'browse-measure', 'wait', '--for=condition=Ready', '--timeout=120s', 'backuplocation/loc']);
  const client = KubeClient.load({ kubeconfig: env.kubeconfig, fieldManager: 'measure-browse' });
  const operatorEnv = { PATH: process.env.PATH ?? '', AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY, RESTIC_PASSWORD: password,
    KUBEDR_S3_CA_CERT: readFileSync(join(env.pki, 'ca.crt'), 'utf8'), TMPDIR: work };

  const rows: string[] = [];
  for (const mb of SIZES) {
    const name = `browse${mb}`;
    const etcd = await startExtraEtcd(env, `${name}-etcd`);
    extras.push(`${name}-etcd`);
    const kc = await startExtraApiserver(env, `${name}-apiserver`, etcd);
    extras.push(`${name}-apiserver`);
    const cms = Array.from({ length: 1000 }, (_, i) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-${i}, namespace: default}\ndata: {k: "v${i}"}`);
    sh(['kubectl', '--kubeconfig', kc, 'apply', '-f', '-'], {}, cms.join('\n---\n'));
    process.stderr.write(`${name}: filling etcd with ${mb} MB…\n`);
    fillEtcdMb(env, etcd, mb);
    await backedUpOnce(env, client, 'browse-measure', name, etcd);
    for (const x of [`${name}-apiserver`, `${name}-etcd`]) await stopExtra(env, x);

    const t0 = performance.now();
    const browseKc = sh([kubedrBin, 'browse', '--from', 'latest', '--policy', name, '--url', env.s3Url, '--bucket', 'browse-measure',
      '--kube-apiserver', join(env.bin, 'kube-apiserver'), '--name', name, '--detach'], operatorEnv).trim();
    const ready = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const listed = JSON.parse(sh(['kubectl', '--kubeconfig', browseKc, 'get', 'configmaps', '-A', '-o', 'json'])) as { items: unknown[] };
    const list = (performance.now() - t1) / 1000;
    const dir = join(browseKc, '..');
    const [etcdPid, apiPid] = readFileSync(join(dir, 'children.pid'), 'utf8').trim().split('\n').map(Number);
    const owner = Number(readFileSync(join(dir, 'owner.pid'), 'utf8'));
    const mem = { kubedr: memoryMb(owner).hwm, etcd: memoryMb(etcdPid!).hwm, apiserver: memoryMb(apiPid!).hwm };
    const snapshotMb = Bun.file(join(`${dir}.backup`, 'data/etcd-snapshot.db')).size / 1e6;
    sh([kubedrBin, 'browse', '--stop', '--name', name], operatorEnv);
    rows.push(`| ${snapshotMb.toFixed(0)} MB | ${ready.toFixed(1)} s | ${listed.items.length} in ${list.toFixed(1)} s | ${mem.kubedr.toFixed(0)} MB | ` +
      `${mem.etcd.toFixed(0)} MB | ${mem.apiserver.toFixed(0)} MB |`);
    process.stderr.write(`${rows.at(-1)}\n`);
    rmSync(extraEtcdDataDir(env, `${name}-etcd`), { recursive: true, force: true });
  }
  console.log('| etcd snapshot | kubedr browse --from latest → first answer | kubectl get configmaps -A | kubedr (peak RSS) | etcd (peak) | kube-apiserver (peak) |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
} finally {
  controller?.kill();
  await controller?.exited;
  for (const x of extras) await stopExtra(env, x).catch(() => {});
  rmSync(work, { recursive: true, force: true });
}
