/**
 * @module `npm run bench:scale`: the controller at scale, on the test node. 50 policies share one BackupLocation and
 * have 120 records each (6,000), made as the controller makes them (`newRecord`, `writeRecord`), each standing for a
 * snapshot that is in the repository: the snapshots are written into a local repository (scripts/restic-fixture.ts)
 * and `restic copy`'d to S3, so the controller's start-up repository sync finds a consistent world (no record flagged
 * SnapshotMissing, nothing adopted). Then measures: start-up and the sync, memory after it, reconcile latency of a
 * policy spec change (one at a time, and all 50 at once), scraping /metrics, one real backup with its retention pass in
 * that repository, and `kubedr snapshots` on a repository of 1,000 snapshots. Prints a table for docs/performance.md.
 * Not a test: figures vary with the machine.
 *   SCALE_POLICIES (default 50), SCALE_RECORDS (per policy, default 120), SCALE_LISTING (default 1000)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BACKUP_LOCATION, BACKUP_NOW_ANNOTATION, BACKUP_POLICY } from '../src/api/group.ts';
import type { MetadataBackupPolicy } from '../src/api/types.ts';
import { newRecord, writeRecord } from '../src/controllers/records.ts';
import { parseSnapshots, type SnapshotInfo } from '../src/engine/restic-output.ts';
import { KubeClient } from '../src/kube/client.ts';
import { createLogger } from '../src/util/log.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, freePort, loadEnv } from './cluster/node.ts';
import { type LogLine, memoryMb, prepareNamespace, readLog, sh } from './measure.ts';
import { masterKey, readSnapshot, writeSnapshot } from './restic-fixture.ts';

const root = resolve(import.meta.dir, '..');
const POLICIES = Number(process.env.SCALE_POLICIES ?? 50);
const PER_POLICY = Number(process.env.SCALE_RECORDS ?? 120);
const LISTING = Number(process.env.SCALE_LISTING ?? 1000);
const NS = 'scale';
const HOST = 'scale-node';
const PASSWORD = 'scale-password';
const kubedr = join(root, 'dist/kubedr');

const env = loadEnv();
const ca = join(env.pki, 'ca.crt');
const resticEnv = { AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY, RESTIC_PASSWORD: PASSWORD, RESTIC_FROM_PASSWORD: PASSWORD };
const s3Restic = (bucket: string, args: string[]) => sh(['restic', '--no-cache', '--cacert', ca, '-r', `s3:${env.s3Url}/${bucket}`, ...args], resticEnv);
const kubectl = (args: string[], input?: string) => sh(['kubectl', '--kubeconfig', env.kubeconfig, ...args], {}, input);
const policyName = (i: number) => `policy-${String(i).padStart(2, '0')}`;

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Runs `fn` over `items` with at most `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/**
 * Fills the S3 repository `bucket` with `count(policy)` snapshots per policy, an hour apart, tagged and hosted as the
 * controller's: written into a local repository around the tree of one real backup, then copied in one restic run.
 * Returns the S3 repository's snapshots and how long the copy took.
 */
function fillRepository(bucket: string, policies: string[], perPolicy: number): { snapshots: SnapshotInfo[]; copyMs: number } {
  const local = mkdtempSync(join(tmpdir(), 'kubedr-scale-repo-'));
  try {
    // Debian 12's restic 0.14 for the local fixture: 0.18 refuses a --stdin-filename with a directory in it ("unable to
    // save snapshot: open /data: no such file or directory"), and the seed must have the controller's data/ layout.
    // The copy into S3 below runs the restic on PATH (0.18), as the controller does.
    const localRestic = (args: string[], input?: string) => sh(['/usr/bin/restic', '--no-cache', '-r', local, ...args], resticEnv, input);
    localRestic(['init']);
    localRestic(['backup', '--stdin', '--stdin-filename', 'data/etcd-snapshot.db', '--host', HOST, '--tag', 'seed'], 'a small etcd snapshot');
    const seed = parseSnapshots(localRestic(['snapshots', '--json']))[0]!;
    const key = masterKey(local, PASSWORD);
    const template = readSnapshot(local, key, seed.id);
    const now = Date.now();
    policies.forEach((policy, p) => {
      for (let i = 0; i < perPolicy; i++) {
        writeSnapshot(local, key, { ...template, time: new Date(now - (perPolicy - i) * 3600_000 - p * 1000).toISOString(), tags: [policy] });
      }
    });
    localRestic(['forget', seed.id]);
    s3Restic(bucket, ['init']);
    const t0 = performance.now();
    const copied = s3Restic(bucket, ['copy', '--from-repo', local]);
    const copyMs = performance.now() - t0;
    const snapshots = parseSnapshots(s3Restic(bucket, ['snapshots', '--json', '--no-lock']));
    if (snapshots.length !== policies.length * perPolicy) {
      throw new Error(`the repository holds ${snapshots.length} snapshots, not ${policies.length * perPolicy}; restic copy said:\n${copied.slice(-2000)}`);
    }
    return { snapshots, copyMs };
  } finally {
    rmSync(local, { recursive: true, force: true });
  }
}

/** A kubeadm control plane's certificate files, as a record lists them. */
const CERT_FILES = ['apiserver.crt', 'apiserver-etcd-client.crt', 'apiserver-kubelet-client.crt', 'ca.crt', 'etcd/ca.crt',
  'etcd/healthcheck-client.crt', 'etcd/peer.crt', 'etcd/server.crt', 'front-proxy-ca.crt', 'front-proxy-client.crt'];

/** The record the controller writes after a backup (backup-policy.ts createRecord), with plausible figures. */
function recordFor(s: SnapshotInfo, revision: number) {
  const notAfter = new Date(Date.parse(s.time) + 300 * 86_400_000).toISOString();
  return newRecord({
    namespace: NS, policy: s.tags[0]!, location: 'loc', snapshotId: s.shortId,
    status: {
      backupTime: new Date(s.time).toISOString(), etcdRevision: revision, etcdSnapshotSize: 125_042_720,
      etcdSnapshotSha256: Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex'), dataAdded: 3_145_728,
      totalBytesProcessed: 125_101_312, totalDurationSecs: '1.612345678',
      certificates: CERT_FILES.map((file) => ({ file, notAfter })), earliestCertificateExpiry: notAfter,
    },
  });
}

async function waitForLine(lines: LogLine[], match: (e: Record<string, unknown>) => boolean, timeoutMs: number): Promise<LogLine> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const found = lines.find((l) => match(l.entry));
    if (found) return found;
    if (performance.now() > deadline) throw new Error('timed out waiting for a controller log line');
    await Bun.sleep(20);
  }
}

const rows: [string, string][] = [];
const row = (what: string, figure: string) => {
  rows.push([what, figure]);
  process.stderr.write(`${what}: ${figure}\n`);
};

let controller: ReturnType<typeof Bun.spawn> | undefined;
try {
  const client = KubeClient.load({ kubeconfig: env.kubeconfig, fieldManager: 'bench-scale' });
  prepareNamespace(env, NS, PASSWORD);

  // 1. The world before the controller starts: snapshots, policies, the location and the records.
  const policies = Array.from({ length: POLICIES }, (_, i) => policyName(i));
  process.stderr.write(`writing ${POLICIES * PER_POLICY} snapshots…\n`);
  const { snapshots, copyMs } = fillRepository('scale', policies, PER_POLICY);
  row(`fixture: \`restic copy\` of ${snapshots.length} snapshots into the S3 repository`, secs(copyMs));
  for (const name of policies) {
    await client.create(BACKUP_POLICY, NS, {
      apiVersion: `${BACKUP_POLICY.group}/${BACKUP_POLICY.version}`, kind: BACKUP_POLICY.kind, metadata: { name, namespace: NS },
      spec: { destination: 'loc', etcdEndpoint: env.etcdEndpoint, schedule: '0 0 1 1 *', retainNumBackups: PER_POLICY, verification: { mode: 'Never' } },
    });
  }
  await client.create(BACKUP_LOCATION, NS, {
    apiVersion: `${BACKUP_LOCATION.group}/${BACKUP_LOCATION.version}`, kind: BACKUP_LOCATION.kind, metadata: { name: 'loc', namespace: NS },
    spec: { url: env.s3Url, bucketName: 'scale', credentials: 's3-creds' },
  });
  const log = createLogger({ level: 'warn' });
  const t0 = performance.now();
  await pool(snapshots.map((s, i) => recordFor(s, 1000 + i)), 16, (r) => writeRecord(client, r, log));
  row(`fixture: ${snapshots.length} records created (create + status, 16 at a time)`, secs(performance.now() - t0));

  // 2. Start-up. A first run initialises the location and stops; the measured one is a restart, as after an upgrade,
  // whose first repository sync covers the (now Ready) location: caches synced, then 6,000 records against the snapshots.
  const port = await freePort();
  const start = () => Bun.spawn([kubedr, 'controller', '--kubeconfig', env.kubeconfig, '--namespace', NS, '--http-address', '127.0.0.1',
    '--http-port', String(port), '--backup-host', HOST, '--log-level', 'debug'], { stdout: 'ignore', stderr: 'pipe' });
  controller = start();
  readLog(controller.stderr as ReadableStream<Uint8Array>);
  kubectl(['-n', NS, 'wait', '--for=condition=Ready', '--timeout=300s', 'backuplocation/loc']);
  controller.kill();
  await controller.exited;
  const started = performance.now();
  controller = start();
  const lines = readLog(controller.stderr as ReadableStream<Uint8Array>);
  for (;;) {
    if (await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false)) break;
    if (performance.now() - started > 300_000) throw new Error('no /readyz 200 within 5 minutes');
    await Bun.sleep(20);
  }
  row('controller start → /readyz 200 (caches synced)', `${(performance.now() - started).toFixed(0)} ms`);
  const synced = await waitForLine(lines, (e) => e.msg === 'repository synced', 600_000);
  const s = synced.entry as { durationMs: number; snapshots: number; adopted: number; missing: number; present: number };
  row('controller start → first repository sync done', secs(synced.at - started));
  row(`repository sync (${s.snapshots} snapshots, ${s.present} records matched)`,
    `${secs(s.durationMs)}; adopted ${s.adopted}, flagged missing ${s.missing} (both must be 0)`);
  await Bun.sleep(10_000);
  const afterSync = memoryMb(controller.pid);
  row('controller RSS 10 s after the sync / peak so far (VmHWM)', `${afterSync.rss.toFixed(0)} MB / ${afterSync.hwm.toFixed(0)} MB`);

  // 3. Reconcile latency: a spec change until status.observedGeneration shows it.
  let flip = 0;
  const change = async (name: string): Promise<number> => {
    const p = await client.patch<MetadataBackupPolicy>(BACKUP_POLICY, NS, name, { spec: { schedule: `0 0 ${(flip++ % 27) + 2} 1 *` } });
    return p.metadata.generation ?? 0;
  };
  const observed = async (name: string, generation: number) =>
    ((await client.get<MetadataBackupPolicy>(BACKUP_POLICY, NS, name)).status?.observedGeneration ?? 0) >= generation;
  const one: number[] = [];
  for (const name of policies) {
    const t = performance.now();
    const generation = await change(name);
    while (!(await observed(name, generation))) await Bun.sleep(5);
    one.push(performance.now() - t);
  }
  row(`reconcile latency, one policy at a time (${one.length}): p50 / p99`, `${quantile(one, 0.5).toFixed(0)} / ${quantile(one, 0.99).toFixed(0)} ms`);
  const burst: number[] = [];
  for (let round = 0; round < 2; round++) {
    const sent = new Map<string, { at: number; generation: number }>();
    await Promise.all(policies.map(async (name) => {
      const at = performance.now();
      sent.set(name, { at, generation: await change(name) });
    }));
    const pending = new Set(policies);
    while (pending.size > 0) {
      const { items } = await client.list<MetadataBackupPolicy>(BACKUP_POLICY, NS);
      const now = performance.now();
      for (const p of items) {
        const mine = sent.get(p.metadata.name);
        if (mine && pending.has(p.metadata.name) && (p.status?.observedGeneration ?? 0) >= mine.generation) {
          burst.push(now - mine.at);
          pending.delete(p.metadata.name);
        }
      }
      await Bun.sleep(10);
    }
  }
  row(`reconcile latency, all ${POLICIES} changed at once (2 rounds): p50 / p99`, `${quantile(burst, 0.5).toFixed(0)} / ${quantile(burst, 0.99).toFixed(0)} ms`);

  // 4. /metrics, as Prometheus scrapes it.
  const scrape: number[] = [];
  let bytes = 0;
  for (let i = 0; i < 10; i++) {
    const t = performance.now();
    bytes = (await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).length;
    scrape.push(performance.now() - t);
  }
  row('GET /metrics: median / max (10 scrapes)', `${quantile(scrape, 0.5).toFixed(1)} / ${Math.max(...scrape).toFixed(1)} ms, ${(bytes / 1024).toFixed(0)} KiB`);

  // 5. One real backup (of the node's own etcd) in this repository, and the retention pass after it (121 > 120).
  const first = policies[0]!;
  await client.patch(BACKUP_POLICY, NS, first, { metadata: { annotations: { [BACKUP_NOW_ANNOTATION]: 'scale-1' } } });
  const done = await waitForLine(lines, (e) => e.msg === 'backup completed' && e.policy === `${NS}/${first}`, 900_000);
  const t = (done.entry as { timingsMs: Record<string, number> }).timingsMs;
  row(`one backup in this repository (${snapshots.length} snapshots): total / restic backup`, `${secs(t.total!)} / ${secs(t.upload!)}`);
  const retention = await waitForLine(lines, (e) => e.msg === 'retention applied' && e.policy === first, 900_000);
  row('retention pass after it (1 snapshot forgotten, its record deleted)', secs((retention.entry as { durationMs: number }).durationMs));
  const afterAll = memoryMb(controller.pid);
  row('controller RSS at the end / peak (VmHWM)', `${afterAll.rss.toFixed(0)} MB / ${afterAll.hwm.toFixed(0)} MB`);

  // 6. `kubedr snapshots` on a repository of LISTING snapshots (another bucket), as in a disaster recovery.
  const listingPolicies = Array.from({ length: LISTING / 10 }, (_, i) => `listing-${String(i).padStart(3, '0')}`);
  fillRepository('scale-listing', listingPolicies, 10);
  const cli = (args: string[]) => {
    const t1 = performance.now();
    sh([kubedr, 'snapshots', '--url', env.s3Url, '--bucket', 'scale-listing', ...args],
      { ...resticEnv, KUBEDR_S3_CA_CERT: readFileSync(ca, 'utf8') });
    return performance.now() - t1;
  };
  row(`\`kubedr snapshots --no-size\`, ${LISTING} snapshots`, secs(cli(['--no-size'])));
  const sized = cli(['--policy', listingPolicies[0]!]);
  row(`\`kubedr snapshots --policy P\` with sizes (10 snapshots): total / per snapshot`, `${secs(sized)} / ${(sized / 10).toFixed(0)} ms`);

  console.log(`\nscale: ${POLICIES} policies × ${PER_POLICY} records at one location; controller ${kubedr}\n`);
  console.log('| | figure |\n|---|---|');
  for (const [what, figure] of rows) console.log(`| ${what} | ${figure} |`);
} finally {
  controller?.kill();
  await controller?.exited;
}
