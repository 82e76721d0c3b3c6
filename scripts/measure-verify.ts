/**
 * @module `npm run measure-verify`: a verification after a backup (the default mode) with the chart installed with its
 * default values, for a ~120 MB and a ~1.2 GB etcd. The chart is rendered and applied as the tests and the demo do; the
 * only values set are the image (the one built here, imported into the node's containerd) and certsHostPaths (the
 * node's PKI is not at /etc/kubernetes/pki). For each size an etcd 3.5 (mTLS) on the node's loopback, which the
 * controller pod reaches through the host network, gets a kube-apiserver's objects (so it is a cluster's etcd, as
 * verification demands) and is filled up to the size; a policy backs it up once on demand and verifies after the
 * backup, in a verification pod. Every 250 ms the cgroups of the controller container and of the verification pod are
 * read (scripts/pod-memory.ts), and the verification pod's scratch space on the node's disk (du). Prints a table, memory
 * and disk in MiB (as the pods' limits are given). Not a test: record the figures in docs/performance.md. Sizes in MB:
 * VERIFY_SIZES (default "120,1200").
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pkg from '../package.json' with { type: 'json' };
import { BACKUP_POLICY, BACKUP_RECORD, POD } from '../src/api/group.ts';
import type { KubeEvent, MetadataBackupPolicy, MetadataBackupRecord, Pod } from '../src/api/types.ts';
import { KubeClient } from '../src/kube/client.ts';
import { extraEtcdDataDir, importImage, loadEnv, startExtraApiserver, startExtraEtcd, stopExtra } from './cluster/node.ts';
import { backedUpOnce, fillEtcdMb, prepareNamespace, sh } from './measure.ts';
import { type CgroupMemory, MemoryPeaks, containerCgroup, readCgroupMemory, resetPeak } from './pod-memory.ts';

const root = resolve(import.meta.dir, '..');
const SIZES = (process.env.VERIFY_SIZES ?? '120,1200').split(',').map(Number);
const env = loadEnv();
const ns = 'kubedr-system';
const password = 'verify-password';
const kubectl = (args: string[], input?: string) => sh(['kubectl', '--kubeconfig', env.kubeconfig, ...args], {}, input);
const extras: string[] = [];

/** What one size's run saw. */
interface Observed {
  controllerBackup: MemoryPeaks;
  controllerVerify: MemoryPeaks;
  verifyPod: MemoryPeaks;
  /** The verification pod as last seen (its spec's limits, its container's end). */
  lastVerifyPod?: Pod;
  verifyPodSeenAt?: number;
  scratchPeakMib: number;
  /** What the scratch space held at that peak (MiB by path, ≥ 10 MiB). */
  scratchAtPeak?: string;
  controllerRestarts: number;
  controllerLastEnd?: string;
}

/**
 * MiB used by a directory on the node's disk, and by each file and directory in it of 10 MiB or more down to the files
 * of a verification's work directory (`kubedr-…/verify-…/restore/data/etcd-snapshot.db`); 0 once it is gone.
 */
function du(dir: string): { mib: number; parts: string } {
  try {
    const lines = sh(['du', '-ak', '--max-depth=6', dir]).trim().split('\n').map((l) => l.split('\t') as [string, string]);
    const parts = lines.slice(0, -1).filter(([kb]) => Number(kb) >= 10 * 1024)
      .map(([kb, p]) => `${p.slice(dir.length + 1).replace(/^kubedr-[^/]+\/verify-[^/]+/, '…')} ${(Number(kb) / 1024).toFixed(0)}`);
    return { mib: Number(lines.at(-1)![0]) / 1024, parts: parts.join(', ') };
  } catch {
    return { mib: 0, parts: '' };
  }
}

/** Samples the install's pods until `done()` says stop; see Observed. */
async function sample(client: KubeClient, done: () => boolean): Promise<Observed> {
  const o: Observed = { controllerBackup: new MemoryPeaks(), controllerVerify: new MemoryPeaks(), verifyPod: new MemoryPeaks(), scratchPeakMib: 0, controllerRestarts: 0 };
  while (!done()) {
    const pods = (await client.list<Pod>(POD, ns)).items;
    const component = (p: Pod) => p.metadata?.labels?.['app.kubernetes.io/component'];
    const controller = pods.find((p) => component(p) === 'controller' && !p.metadata?.deletionTimestamp);
    const verify = pods.find((p) => component(p) === 'verification');
    const status = controller?.status?.containerStatuses?.find((c) => c.name === 'controller');
    o.controllerRestarts = Math.max(o.controllerRestarts, status?.restartCount ?? 0);
    const ended = status?.lastState?.terminated;
    if (ended) o.controllerLastEnd = `${ended.reason} (exit ${ended.exitCode}) at ${ended.finishedAt}`;
    const controllerDir = controller && containerCgroup(env, controller, 'controller');
    if (verify) {
      const verifyDir = containerCgroup(env, verify, 'verify');
      if (o.verifyPodSeenAt === undefined && verifyDir) {
        // From here the controller's kernel peak covers the verification only (the backup's page cache is behind it).
        o.verifyPodSeenAt = performance.now();
        if (controllerDir) {
          o.controllerBackup.add(readCgroupMemory(controllerDir));
          resetPeak(controllerDir);
        }
      }
      if (verifyDir) o.verifyPod.add(readCgroupMemory(verifyDir));
      o.lastVerifyPod = verify;
      if (verify.metadata?.uid) {
        const used = du(join(env.dir, 'kubelet/pods', verify.metadata.uid, 'volumes/kubernetes.io~empty-dir/tmp'));
        if (used.mib > o.scratchPeakMib) Object.assign(o, { scratchPeakMib: used.mib, scratchAtPeak: used.parts });
      }
    }
    if (controllerDir) (o.verifyPodSeenAt === undefined ? o.controllerBackup : o.controllerVerify).add(readCgroupMemory(controllerDir));
    await Bun.sleep(250);
  }
  return o;
}

/** The record of the policy's last backup once its verification is written (15 minutes at most). */
async function verifiedRecord(client: KubeClient, policy: string): Promise<MetadataBackupRecord> {
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    const mbr = (await client.get<MetadataBackupPolicy>(BACKUP_POLICY, ns, policy)).status?.mbrName;
    const record = mbr ? await client.get<MetadataBackupRecord>(BACKUP_RECORD, ns, mbr) : undefined;
    if (record?.status?.verification) return record;
    if (Date.now() > deadline) throw new Error(`${policy}: no verification within 15 minutes`);
    await Bun.sleep(500);
  }
}

/** Events anywhere that tell of an out-of-memory kill or an eviction (the kubelet's SystemOOM, OOMKilling, Evicted). */
function oomEvents(): string[] {
  const events = JSON.parse(kubectl(['get', 'events', '-A', '-o', 'json'])) as { items: KubeEvent[] };
  return events.items.filter((e) => /oom|evict/i.test(`${e.reason} ${e.message}`))
    .map((e) => `${e.involvedObject?.kind}/${e.involvedObject?.name} ${e.reason}: ${e.message}`);
}

const mib = (x: number) => `${x.toFixed(0)} MiB`;
const memRow = (m: CgroupMemory) => `kernel peak ${mib(m.peak)}, working set ${mib(m.workingSet)}, resident ${mib(m.resident)}, largest process ${mib(m.processPeak)}`;

try {
  sh([join(root, 'scripts/build-image.sh')]);
  importImage(env, join(root, 'dist/kubedr-image.tar'));
  prepareNamespace(env, ns, password);
  // The chart's defaults but for the image (built here; the chart's tag, its appVersion, is this version) and the
  // directory of the node's PKI.
  const values = join(env.dir, 'measure-verify-values.yaml');
  writeFileSync(values, JSON.stringify({ image: { repository: 'localhost/kubedr' }, certsHostPaths: [env.pki] }));
  const renderer = sh([join(root, 'scripts/build-helm-render.sh')]).trim();
  kubectl(['apply', '-f', '-'], sh([renderer, '--name', 'kubedr', '--namespace', ns, '-f', values, join(root, 'helm/kubedr')]));
  kubectl(['-n', ns, 'rollout', 'status', 'deployment/kubedr', '--timeout=180s']);
  kubectl(['apply', '-f', '-'], `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: BackupLocation
metadata: { name: loc, namespace: ${ns} }
spec: { url: "${env.s3Url}", bucketName: measure-verify, credentials: s3-creds }
`);
  kubectl(['-n', ns, 'wait', '--for=condition=Ready', '--timeout=120s', 'backuplocation/loc']);
  const client = KubeClient.load({ kubeconfig: env.kubeconfig, fieldManager: 'measure-verify' });
  process.stderr.write(`chart installed with image localhost/kubedr:${pkg.version}\n`);

  const columns: { label: string; cells: string[] }[] = [];
  for (const size of SIZES) {
    const name = `verify${size}`;
    const etcd = await startExtraEtcd(env, `${name}-etcd`);
    extras.push(`${name}-etcd`);
    // A kube-apiserver writes a cluster's objects (kube-system among them, which verification looks for), then goes.
    const kc = await startExtraApiserver(env, `${name}-apiserver`, etcd);
    extras.push(`${name}-apiserver`);
    for (let i = 0; !sh(['kubectl', '--kubeconfig', kc, 'get', 'namespaces', '-o', 'name']).includes('namespace/kube-system'); i++) {
      if (i > 60) throw new Error('kube-system was not created');
      await Bun.sleep(1000);
    }
    await stopExtra(env, `${name}-apiserver`);
    process.stderr.write(`${name}: filling etcd with ${size} MB…\n`);
    fillEtcdMb(env, etcd, size);

    let finished = false;
    const sampling = sample(client, () => finished);
    const t0 = performance.now();
    await backedUpOnce(env, client, ns, name, etcd, { certsDir: env.pki, verification: { mode: 'AfterBackup' } });
    const backupS = (performance.now() - t0) / 1000;
    const record = await verifiedRecord(client, name);
    const answeredAt = performance.now();
    await Bun.sleep(2000); // the controller deletes the pod; the controller's cgroup keeps being read meanwhile
    finished = true;
    const o = await sampling;

    const v = record.status!.verification!;
    const spec = o.lastVerifyPod?.spec;
    const verifyLimit = spec?.containers[0]?.resources?.limits?.memory ?? '?';
    const scratchLimit = spec?.volumes?.find((x) => x.name === 'tmp')?.emptyDir?.sizeLimit ?? '?';
    const end = o.lastVerifyPod?.status?.containerStatuses?.[0]?.state?.terminated;
    const podS = o.verifyPodSeenAt === undefined ? NaN : (answeredAt - o.verifyPodSeenAt) / 1000;
    const events = oomEvents();
    const cells = [
      `${((record.status?.etcdSnapshotSize ?? 0) / 1e6).toFixed(0)} MB`,
      `${backupS.toFixed(1)} s`,
      `${v.result}: ${v.message}`,
      `${Number(v.durationSecs).toFixed(1)} s (pod seen → record written ${podS.toFixed(1)} s)`,
      end ? `${end.reason}, exit ${end.exitCode}` : 'not seen',
      `limit ${verifyLimit}; ${memRow(o.verifyPod.max)}; failcnt ${o.verifyPod.max.failcnt}, oom_kill ${o.verifyPod.max.oomKills} (${o.verifyPod.samples} samples)`,
      `${mib(o.scratchPeakMib)} of sizeLimit ${scratchLimit} (at the peak, MiB: ${o.scratchAtPeak ?? '?'})`,
      `limit ${mib(o.controllerVerify.max.limit)}; ${memRow(o.controllerVerify.max)}; oom_kill ${o.controllerVerify.max.oomKills}`,
      `${memRow(o.controllerBackup.max)}`,
      `${o.controllerRestarts}${o.controllerLastEnd ? ` (last: ${o.controllerLastEnd})` : ''}`,
      events.length ? events.join('; ') : 'none',
    ];
    columns.push({ label: name, cells });
    process.stderr.write(`${name}:\n${cells.map((c) => `  ${c}`).join('\n')}\n`);
    await stopExtra(env, `${name}-etcd`);
    rmSync(extraEtcdDataDir(env, `${name}-etcd`), { recursive: true, force: true });
  }
  const rows = ['etcd snapshot', 'backup (on demand → Completed)', 'verification', 'verification duration (kubedr verify)',
    'verification pod\'s end, as last seen', 'verification pod memory', 'verification pod scratch (/tmp emptyDir, peak du)',
    'controller container during verification', 'controller container during the backup', 'controller restarts', 'OOM or eviction events'];
  console.log(`| | ${columns.map((c) => c.label).join(' | ')} |`);
  console.log(`|---|${columns.map(() => '---').join('|')}|`);
  rows.forEach((r, i) => console.log(`| ${r} | ${columns.map((c) => c.cells[i]).join(' | ')} |`));
} finally {
  for (const x of extras) await stopExtra(env, x).catch(() => {});
}
