/**
 * @module `npm run measure-continuous`: what continuous backup costs and what it saves, on the test node. A cluster of
 * its own (an etcd 3.5 with mTLS and a kube-apiserver on it) is backed up by the compiled controller (dist/kubedr,
 * continuous, flushInterval 30 s) to the node's S3, under load: a ConfigMap `clock` set every second and about 200
 * writes/s of other ConfigMaps through the API server.
 *
 * - RPO: the controller SIGKILLed at a random moment (series "controller killed"), and the cluster's etcd, API server
 *   and the controller frozen together, as a machine that vanished (series "machine lost", SIGSTOP; thawed afterwards
 *   for the next run): how far before the loss the newest stored change is, read from the repository. RUNS each.
 * - S3: bytes the repository grew by and objects written per hour of that load; the controller's memory.
 * - Replay: the etcd filled to BIG_MB (default 1200), a full backup, then CHANGES changes (default 720,000: one hour
 *   at 200 writes/s, written as fast as etcd takes them), and a restore of "latest" from S3 (full backup + every
 *   change): its time and replay rate, and the controller's memory while it recorded them.
 * - Soak (part "soak", SOAK_MIN minutes, default 60): the same load for that long; the controller's memory by ten minutes.
 * Not a test: record the figures in docs/performance.md. PARTS (default "rpo,big") chooses the parts. The controller proves
 * no chain meanwhile (VERIFY_INTERVAL, default 0): a proof replays the chain too, and would share the CPU with the replay measured.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BACKUP_POLICY } from '../src/api/group.ts';
import type { MetadataBackupPolicy } from '../src/api/types.ts';
import { listChain } from '../src/engine/continuous/change-store.ts';
import { restorePointInTime } from '../src/engine/continuous/replay.ts';
import { EtcdClient } from '../src/engine/etcd-client.ts';
import { parseSnapshots } from '../src/engine/restic-output.ts';
import { Restic } from '../src/engine/restic.ts';
import { KubeClient } from '../src/kube/client.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, loadEnv, startExtraApiserver, startExtraEtcd, stopExtra } from './cluster/node.ts';
import { memoryMb, prepareNamespace, sh } from './measure.ts';

const root = resolve(import.meta.dir, '..');
const PARTS = (process.env.PARTS ?? 'rpo,big').split(',');
const RUNS = Number(process.env.RUNS ?? 10);
const BIG_MB = Number(process.env.BIG_MB ?? 1200);
const CHANGES = Number(process.env.CHANGES ?? 720_000);
const env = loadEnv();
const work = mkdtempSync(join(tmpdir(), 'kubedr-continuous-'));
const password = 'continuous-password';
const ns = 'continuous';
const bucket = `continuous-${Date.now().toString(36)}`;
const kubectl = (args: string[], input?: string) => sh(['kubectl', '--kubeconfig', env.kubeconfig, ...args], {}, input);
const repo = { address: `s3:${env.s3Url}/${bucket}`, accessKey: S3_ACCESS_KEY, secretKey: S3_SECRET_KEY, password,
  caCert: readFileSync(join(env.pki, 'ca.crt'), 'utf8') };
const restic = new Restic({ timeoutMs: 60 * 60_000 });
const CONFIGMAPS = { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps' };
const etcdPem = { ca: readFileSync(join(env.pki, 'etcd/ca.crt'), 'utf8'), cert: readFileSync(join(env.pki, 'etcd/healthcheck-client.crt'), 'utf8'),
  key: readFileSync(join(env.pki, 'etcd/healthcheck-client.key'), 'utf8') };
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const seconds = (ms: number) => (ms / 1000).toFixed(1);
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
const extras: string[] = [];

let controller: ReturnType<typeof Bun.spawn> | undefined;
function startController(): void {
  controller = Bun.spawn([join(root, 'dist/kubedr'), 'controller', '--kubeconfig', env.kubeconfig, '--namespace', ns, '--http-port', '0',
    '--log-level', 'warn', '--leader-elect=false', '--continuous-verify-interval', process.env.VERIFY_INTERVAL ?? '0'], { stdout: 'ignore', stderr: 'inherit' });
}

async function policyStatus(name: string): Promise<MetadataBackupPolicy['status']> {
  return JSON.parse(kubectl(['-n', ns, 'get', 'mbp', name, '-o', 'json'])).status as MetadataBackupPolicy['status'];
}

async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(500);
  }
}

/** Change sets stored (restic snapshot time) before `at`: the newest change a restore could reach after a loss at `at`. */
async function newestStoredBefore(policy: string, at: number): Promise<number> {
  const { stdout } = await restic.run(repo, ['snapshots', '--json', '--no-lock']);
  let newest = 0;
  for (const s of parseSnapshots(stdout)) {
    if (s.tags[0] !== `kubedr-changes=${policy}` || Date.parse(s.time) > at) continue;
    const to = Number(s.tags.find((t) => t.startsWith('kubedr-changes-to='))?.split('=')[1]);
    newest = Math.max(newest, to);
  }
  return newest;
}

/** About `perSecond` ConfigMap updates a second through the API server, and `clock` every second, until stopped. */
function load(client: KubeClient, perSecond: number): { stop: () => Promise<number> } {
  let running = true;
  let writes = 0;
  const started = Date.now();
  const loop = (async () => {
    for (let tick = 0; running; tick++) {
      const at = Date.now();
      const batch = Array.from({ length: perSecond / 10 }, (_, i) => client.patch(CONFIGMAPS, 'load', `cm-${(tick * 31 + i * 7) % 1000}`,
        { data: { v: `${at}-${i}` } }).then(() => writes++, () => undefined));
      if (tick % 10 === 0) batch.push(client.patch(CONFIGMAPS, 'load', 'clock', { data: { now: new Date(at).toISOString() } }).then(() => writes++, () => undefined));
      await Promise.all(batch);
      await Bun.sleep(Math.max(0, 100 - (Date.now() - at)));
    }
  })();
  return { stop: async () => {
    running = false;
    await loop;
    return writes / ((Date.now() - started) / 1000);
  } };
}

/**
 * A cluster of its own for a policy named `policy`: etcd and an API server holding 1,000 ConfigMaps and `clock` in
 * namespace `load`, and the policy recording it continuously (flushInterval 30 s) after its base backup.
 */
async function loadCluster(policy: string): Promise<{ api: KubeClient }> {
  const etcd = await startExtraEtcd(env, `${policy}-etcd`);
  extras.push(`${policy}-etcd`);
  const kubeconfig = await startExtraApiserver(env, `${policy}-apiserver`, etcd);
  extras.push(`${policy}-apiserver`);
  const api = KubeClient.load({ kubeconfig, fieldManager: 'measure-continuous' });
  sh(['kubectl', '--kubeconfig', kubeconfig, 'create', 'namespace', 'load']);
  for (let i = 0; i < 1000; i += 50) {
    await Promise.all(Array.from({ length: 50 }, (_, j) => api.create(CONFIGMAPS, 'load', { metadata: { name: `cm-${i + j}` }, data: { v: '0' } })));
  }
  await api.create(CONFIGMAPS, 'load', { metadata: { name: 'clock' }, data: { now: new Date().toISOString() } });
  kubectl(['apply', '-f', '-'], `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupPolicy
metadata: { name: ${policy}, namespace: ${ns} }
spec: { destination: loc, etcdEndpoint: "${etcd}", etcdCreds: etcd-creds, schedule: "0 0 1 1 *", verification: { mode: Never },
  continuous: { enabled: true, flushInterval: 30s } }
`);
  await waitFor('the base backup and recording', async () => (await policyStatus(policy))?.continuous?.state === 'Recording' &&
    (await policyStatus(policy))?.backupStatus === 'Completed');
  return { api };
}

async function repoStats(): Promise<{ bytes: number; objects: number }> {
  const { stdout } = await restic.run(repo, ['stats', '--json', '--no-lock', '--mode', 'raw-data']);
  const bytes = Number((JSON.parse(stdout) as { total_size: number }).total_size);
  let objects = 0;
  for (const kind of ['packs', 'index', 'snapshots']) objects += (await restic.run(repo, ['list', '--no-lock', kind])).stdout.split('\n').filter(Boolean).length;
  return { bytes, objects };
}

try {
  prepareNamespace(env, ns, password);
  kubectl(['apply', '-f', '-'], `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: BackupLocation
metadata: { name: loc, namespace: ${ns} }
spec: { url: "${env.s3Url}", bucketName: ${bucket}, credentials: s3-creds }
`);
  startController();
  kubectl(['-n', ns, 'wait', '--for=condition=Ready', '--timeout=120s', 'backuplocation/loc']);
  const rows: string[] = [];

  if (PARTS.includes('soak')) {
    // Memory over a long run: does the recorder's footprint stay flat while the same load goes on for an hour?
    const { api } = await loadCluster('soak');
    const writer = load(api, 200);
    const minutes = Number(process.env.SOAK_MIN ?? 60);
    const samples: { min: number; rss: number }[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < minutes * 60_000) {
      await Bun.sleep(10_000);
      if (controller) samples.push({ min: (Date.now() - t0) / 60_000, rss: memoryMb(controller.pid).rss });
      if (samples.length % 60 === 0) log(`soak: ${samples.at(-1)?.min.toFixed(0)} min, RSS ${samples.at(-1)?.rss.toFixed(0)} MB`);
    }
    const rate = await writer.stop();
    const st = await policyStatus('soak');
    const buckets: string[] = [];
    for (let from = 0; from < minutes; from += 10) {
      const xs = samples.filter((x) => x.min >= from && x.min < from + 10).map((x) => x.rss);
      if (xs.length) buckets.push(`${from}–${from + 10} min: median ${pct(xs, 0.5).toFixed(0)}, max ${Math.max(...xs).toFixed(0)}`);
    }
    rows.push(`soak: ${minutes} min at ${rate.toFixed(0)} writes/s; controller RSS (MB) by 10 minutes: ${buckets.join('; ')}; ` +
      `gaps ${st?.continuous?.gaps ?? 0}, last stored revision ${st?.continuous?.lastStoredRevision}`);
  }

  if (PARTS.includes('rpo')) {
    const { api } = await loadCluster('rpo');
    const writer = load(api, 200);
    const before = await repoStats();
    const steadyFrom = Date.now();
    const memory: number[] = [];
    const sampler = setInterval(() => controller && memory.push(memoryMb(controller.pid).rss), 1000);
    const rpo: Record<string, number[]> = { 'controller killed': [], 'machine lost': [] };
    for (const series of Object.keys(rpo)) {
      for (let run = 0; run < RUNS; run++) {
        await Bun.sleep(35_000 + Math.random() * 30_000);
        const lostAt = Date.now();
        if (series === 'controller killed') {
          controller!.kill('SIGKILL');
          await controller!.exited;
        } else {
          // etcd, its API server and the controller stop at one instant; nothing more reaches S3 from them.
          for (const p of [env.extra?.['rpo-etcd']?.pid, env.extra?.['rpo-apiserver']?.pid, controller!.pid]) if (p) process.kill(p, 'SIGSTOP');
          await Bun.sleep(3000);
        }
        const newest = await newestStoredBefore('rpo', lostAt);
        rpo[series]!.push((lostAt - newest) / 1000);
        log(`${series} ${run + 1}/${RUNS}: newest stored change ${seconds(lostAt - newest)} s before the loss`);
        if (series === 'controller killed') startController();
        else for (const p of [env.extra?.['rpo-etcd']?.pid, env.extra?.['rpo-apiserver']?.pid, controller!.pid]) if (p) process.kill(p, 'SIGCONT');
      }
    }
    const rate = await writer.stop();
    clearInterval(sampler);
    await Bun.sleep(35_000);
    const after = await repoStats();
    const hours = (Date.now() - steadyFrom) / 3_600_000;
    for (const [series, xs] of Object.entries(rpo)) {
      rows.push(`RPO, ${series} (${xs.length} runs): min ${Math.min(...xs).toFixed(1)} s, median ${pct(xs, 0.5).toFixed(1)} s, ` +
        `p90 ${pct(xs, 0.9).toFixed(1)} s, max ${Math.max(...xs).toFixed(1)} s (flushInterval 30 s)`);
    }
    rows.push(`load: ${rate.toFixed(0)} writes/s through the API server for ${(hours * 60).toFixed(1)} min`);
    rows.push(`S3 per hour of that load: ${((after.bytes - before.bytes) / hours / 2 ** 20).toFixed(1)} MiB stored, ` +
      `${((after.objects - before.objects) / hours).toFixed(0)} objects written (packs, indexes, snapshots; plus a lock written and removed per store)`);
    rows.push(`controller memory (RSS) under that load: median ${pct(memory, 0.5).toFixed(0)} MB, max ${Math.max(...memory).toFixed(0)} MB`);
    const { sets } = await listChain(restic, repo, 'rpo', undefined);
    rows.push(`change sets stored: ${sets.length}`);
  }

  if (PARTS.includes('big')) {
    const etcd = await startExtraEtcd(env, 'big-etcd');
    extras.push('big-etcd');
    log(`filling etcd with ${BIG_MB} MB…`);
    const client = await EtcdClient.connect({ endpoint: etcd, ...etcdPem });
    for (let i = 0; i < BIG_MB; i += 8) {
      await Promise.all(Array.from({ length: 8 }, (_, j) => client.apply([{ type: 'put', key: Buffer.from(`/fill/${i + j}`),
        value: Buffer.from(Buffer.from(crypto.getRandomValues(new Uint8Array(768 * 1024))).toString('base64')), revision: 0 }])));
    }
    kubectl(['apply', '-f', '-'], `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupPolicy
metadata: { name: big, namespace: ${ns} }
spec: { destination: loc, etcdEndpoint: "${etcd}", etcdCreds: etcd-creds, schedule: "0 0 1 1 *", verification: { mode: Never },
  continuous: { enabled: true, flushInterval: 30s } }
`);
    await waitFor('the base backup and recording', async () => (await policyStatus('big'))?.continuous?.state === 'Recording' &&
      (await policyStatus('big'))?.backupStatus === 'Completed', 1_200_000);
    log(`writing ${CHANGES} changes…`);
    const memory: number[] = [];
    const sampler = setInterval(() => controller && memory.push(memoryMb(controller.pid).rss), 1000);
    const value = () => Buffer.from(`k8s\u0000${crypto.randomUUID().repeat(10)}`);
    const t0 = Date.now();
    let done = 0;
    while (done < CHANGES) {
      const n = Math.min(64, CHANGES - done);
      await Promise.all(Array.from({ length: n }, (_, j) => client.apply([{ type: 'put', key: Buffer.from(`/registry/configmaps/load/cm-${(done + j) % 5000}`), value: value(), revision: 0 }])));
      done += n;
    }
    const lastRevision = await client.revision();
    const writeSecs = (Date.now() - t0) / 1000;
    await waitFor('every change stored', async () => ((await policyStatus('big'))?.continuous?.lastStoredRevision ?? 0) >= lastRevision, 1_800_000);
    clearInterval(sampler);
    const storedSecs = (Date.now() - t0) / 1000;
    client.close();
    rows.push(`${CHANGES} changes written in ${writeSecs.toFixed(0)} s (${(CHANGES / writeSecs).toFixed(0)}/s), all stored ${storedSecs.toFixed(0)} s after the first; ` +
      `controller memory (RSS) meanwhile: median ${pct(memory, 0.5).toFixed(0)} MB, max ${Math.max(...memory).toFixed(0)} MB`);
    const r = await restorePointInTime(restic, { repo, policy: 'big', target: 'latest', dir: join(work, 'big'), onStep: (s) => log(s) });
    rows.push(`restore of latest (${BIG_MB} MB full backup + ${r.changesApplied} changes in ${r.changeSetsRead} change sets): ${r.durationSecs.toFixed(0)} s, ` +
      `of which replay ${r.replaySecs.toFixed(0)} s (${(r.changesApplied / r.replaySecs).toFixed(0)} changes/s); snapshot ${(r.size / 2 ** 20).toFixed(0)} MiB at revision ${r.revision}`);
  }
  console.log(`\n${rows.join('\n')}`);
} finally {
  controller?.kill();
  for (const name of extras.reverse()) await stopExtra(env, name).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
