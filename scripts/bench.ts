/**
 * @module `npm run bench`: one backup through the controller (backup-now annotation → status Completed) against the
 * by-hand floor on the same etcd and repository (`etcdctl snapshot save`, then `restic backup` of that file), with
 * etcd filled to about 100 MB (BENCH_MB; a list such as "100,1000" measures each size in turn in one run, filling
 * etcd further between them). Prints both medians, their ratio, where the time goes on each side (phase medians: the
 * controller's from its `backup completed` log line, by hand from timing its two commands), the controller's peak RSS
 * during its backups and restic's peak memory on both sides (its VmHWM, sampled while it runs).
 * The controller is the compiled dist/kubedr (what ships); `--source` runs src/main.ts under bun instead.
 * Not a test: figures vary with the machine; record them in docs/performance.md.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BACKUP_NOW_ANNOTATION, BACKUP_POLICY } from '../src/api/group.ts';
import type { MetadataBackupPolicy } from '../src/api/types.ts';
import { KubeClient } from '../src/kube/client.ts';
import { type LogLine, memoryMb, prepareNamespace, readLog, sh } from './measure.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, loadEnv, startExtraEtcd, stopExtra } from './cluster/node.ts';

const root = resolve(import.meta.dir, '..');
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SIZES_MB = (process.env.BENCH_MB ?? '100').split(',').map(Number).sort((a, b) => a - b);
const compiled = join(root, 'dist/kubedr');
const kubedrCmd = process.argv.includes('--source') || !existsSync(compiled) ? [process.execPath, join(root, 'src/main.ts')] : [compiled];

/** Child pids of `pid`, from each of its threads' `children` list: cheap enough to read every 10 ms, unlike all of /proc. */
function childrenOf(pid: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
      try {
        return readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean);
      } catch {
        return [];
      }
    });
  } catch {
    return [];
  }
}

/** RSS (MB) of the children of `pid` named `name` (e.g. the etcd a verification starts). */
function childrenRssMb(pid: number, name: string, field: 'rss' | 'hwm' = 'rss'): number {
  let total = 0;
  for (const d of childrenOf(pid)) {
    try {
      const st = readFileSync(`/proc/${d}/status`, 'utf8');
      if (new RegExp(`^Name:\\s+${name}$`, 'm').test(st)) total += memoryMb(Number(d))[field];
    } catch { /* gone */ }
  }
  return total;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Runs a command to completion: its wall time and its peak RSS. The peak is VmHWM read every 10 ms (a high-water mark,
 * so only growth in the last interval can be missed). Not the rusage max RSS at exit: Linux folds into it the RSS of
 * the forked parent before exec, so a child of a 130 MB process never reports less than 130 MB.
 */
async function timed(cmd: string[], env: Record<string, string>): Promise<{ secs: number; peakMb: number }> {
  const t0 = performance.now();
  const proc = Bun.spawn(cmd, { env: { ...process.env, ...env }, stdout: 'ignore', stderr: 'pipe' });
  let peakMb = 0;
  while (proc.exitCode === null) {
    peakMb = Math.max(peakMb, memoryMb(proc.pid).hwm);
    await Bun.sleep(10);
  }
  const secs = (performance.now() - t0) / 1000;
  if ((await proc.exited) !== 0) throw new Error(`${cmd.join(' ')}: ${await new Response(proc.stderr).text()}`);
  return { secs, peakMb };
}

/** The controller's `backup completed` line: where the time of one run went (src/controllers/backup-policy.ts). */
interface CompletedLine {
  reconciledAt: string;
  timingsMs: Record<string, number>;
}

/** The `backup completed` lines among the controller's log lines, in order. */
function completedOf(log: LogLine[]): CompletedLine[] {
  return log.map((l) => l.entry).filter((e) => e.msg === 'backup completed' && e.timingsMs) as unknown as CompletedLine[];
}

/** Phase medians of both sides, ms, with the etcd stream's rate beside etcdctl's. */
function printPhases(ctl: Record<string, number>[], hand: { etcdctl: number; restic: number }[], bytes: number): void {
  if (ctl.length === 0) return;
  const med = (k: string) => median(ctl.map((p) => p[k] ?? 0));
  const mbps = (ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(0);
  const rows: [string, string][] = [
    ['annotation → reconcile (watch, queue)', `${med('annotationToReconcile')}`],
    ['reconcile → run starts (Running status written)', `${med('start')}`],
    ['location ready, slot taken', `${med('wait')}`],
    ['staging: certificates copied, expiries read', `${med('stage')}`],
    ['etcd connect + Status (revision)', `${med('etcdConnect')}`],
    ['etcd stream to disk', `${med('etcdStream')}  (${mbps(med('etcdStream'))} MB/s; etcdctl snapshot save: ${mbps(median(hand.map((x) => x.etcdctl)))} MB/s)`],
    ['  of which hashing (SHA-256, inline)', `${med('hash')}`],
    ['  of which writing the file', `${med('write')}`],
    ['waiting for other restic work on the repository', `${med('repoWait')}`],
    ['restic backup (spawn → exit)', `${med('upload')}  (restic's own total_duration ${med('resticOwn')})`],
    ['  the controller\'s own CPU meanwhile', `${med('uploadOwnCpu')}`],
    ['staging removed', `${med('cleanup')}`],
    ['last progress write', `${med('progressFlush')}`],
    ['record created (create + status)', `${med('record')}`],
    ['policy status Completed + event', `${med('status')}`],
    ['status seen by the bench (poll)', `${med('observed').toFixed(0)}`],
    ['by hand: etcdctl snapshot save', `${median(hand.map((x) => x.etcdctl)).toFixed(0)}`],
    ['by hand: restic backup', `${median(hand.map((x) => x.restic)).toFixed(0)}`],
  ];
  console.log(`phases (median ms over ${ctl.length} runs):`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(50)} ${v}`);
}

// The test node that `npm run bench` starts around this script (scripts/cluster/with-node.sh); we run inside its network namespace.
const env = loadEnv();
const work = mkdtempSync(join(tmpdir(), 'kubedr-bench-'));
let controller: ReturnType<typeof Bun.spawn> | undefined;
try {
  const kubectl = (args: string[], input?: string) => sh(['kubectl', '--kubeconfig', env.kubeconfig, ...args], {}, input);
  const etcd = await startExtraEtcd(env, 'bench');
  const etcdFlags = ['--endpoints', etcd, '--cacert', join(env.pki, 'etcd/ca.crt'), '--cert', join(env.pki, 'etcd/healthcheck-client.crt'),
    '--key', join(env.pki, 'etcd/healthcheck-client.key')];
  let filledMb = 0;
  /** Fills etcd up to `mb` values of 1 MiB (base64 of 768 KiB) and returns the size of its snapshot. */
  const fillTo = (mb: number): number => {
    process.stderr.write(`filling etcd to ${mb} MB…\n`);
    for (; filledMb < mb; filledMb++) {
      sh(['etcdctl', ...etcdFlags, 'put', `/bench/${filledMb}`], { ETCDCTL_API: '3' }, Buffer.from(crypto.getRandomValues(new Uint8Array(768 * 1024))).toString('base64'));
    }
    sh(['etcdctl', ...etcdFlags, 'snapshot', 'save', join(work, 'probe.db')], { ETCDCTL_API: '3' });
    const bytes = Bun.file(join(work, 'probe.db')).size;
    rmSync(join(work, 'probe.db'));
    return bytes;
  };

  const password = 'bench-password';
  prepareNamespace(env, 'bench', password);
  kubectl(['apply', '-f', '-'], `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: BackupLocation
metadata: { name: loc, namespace: bench }
spec: { url: "${env.s3Url}", bucketName: bench, credentials: s3-creds }
---
apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupPolicy
metadata: { name: bench, namespace: bench }
spec: { destination: loc, etcdEndpoint: "${etcd}", schedule: "0 0 1 1 *", retainNumBackups: 100, verification: { mode: Never } }
`);
  controller = Bun.spawn([...kubedrCmd, 'controller', '--kubeconfig', env.kubeconfig, '--namespace', 'bench',
    '--http-port', '0', '--log-level', 'info'], { stdout: 'ignore', stderr: 'pipe' });
  const log = readLog(controller.stderr as ReadableStream<Uint8Array>);
  kubectl(['-n', 'bench', 'wait', '--for=condition=Ready', '--timeout=120s', 'backuplocation/loc']);

  // Trigger and poll through the API client: a kubectl process per poll would add its own start-up to every figure.
  const client = KubeClient.load({ kubeconfig: env.kubeconfig, fieldManager: 'bench' });
  const status = async () => (await client.get<MetadataBackupPolicy>(BACKUP_POLICY, 'bench', 'bench')).status ?? {};
  let peakMb = 0;
  /** Per controller run: phase → ms, from its log line and the bench's own clock. */
  const ctlPhases: Record<string, number>[] = [];
  const resticCtlMb: number[] = [];
  const viaController = async (n: number): Promise<number> => {
    const t0 = performance.now();
    const sentAt = Date.now();
    await client.patch(BACKUP_POLICY, 'bench', 'bench', { metadata: { annotations: { [BACKUP_NOW_ANNOTATION]: `run-${n}` } } });
    let resticMb = 0;
    for (;;) {
      peakMb = Math.max(peakMb, memoryMb(controller!.pid).rss);
      resticMb = Math.max(resticMb, childrenRssMb(controller!.pid, 'restic', 'hwm'));
      const st = await status();
      if (st.backupNowServed === `run-${n}` && st.backupStatus === 'Completed') {
        const secs = (performance.now() - t0) / 1000;
        resticCtlMb.push(resticMb);
        // The log line is written just after the status: give it a moment to arrive.
        for (let i = 0; i < 100 && completedOf(log).length <= n; i++) await Bun.sleep(10);
        const line = completedOf(log)[n];
        if (line) {
          const t = line.timingsMs;
          const annotationToReconcile = Date.parse(line.reconciledAt) - sentAt;
          ctlPhases.push({ ...t, annotationToReconcile, observed: secs * 1000 - annotationToReconcile - t.start! - t.total! });
        }
        return secs;
      }
      if (st.backupNowServed === `run-${n}` && st.backupStatus === 'Failed') throw new Error(`backup failed: ${st.backupErrorMessage}`);
      await Bun.sleep(10);
    }
  };
  const resticEnv = { AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY, RESTIC_PASSWORD: password };
  const handPhases: { etcdctl: number; restic: number }[] = [];
  const resticHandMb: number[] = [];
  const byHand = async (): Promise<number> => {
    const save = await timed(['etcdctl', ...etcdFlags, 'snapshot', 'save', join(work, 'etcd-snapshot.db')], { ETCDCTL_API: '3' });
    const upload = await timed(['restic', '--no-cache', '--cacert', join(env.pki, 'ca.crt'), '-r', `s3:${env.s3Url}/bench`, 'backup', '--tag', 'by-hand',
      join(work, 'etcd-snapshot.db')], resticEnv);
    rmSync(join(work, 'etcd-snapshot.db'));
    handPhases.push({ etcdctl: save.secs * 1000, restic: upload.secs * 1000 });
    resticHandMb.push(upload.peakMb);
    return save.secs + upload.secs;
  };

  await Bun.sleep(2000);
  const idleMb = memoryMb(controller.pid).rss;
  let n = 0;
  const results: { dbBytes: number; c: number; h: number; peakMb: number }[] = [];
  for (const mb of SIZES_MB) {
    const dbBytes = fillTo(mb);
    peakMb = 0;
    const [phasesFrom, handsFrom, resticCtlFrom, resticHandFrom] = [ctlPhases.length, handPhases.length, resticCtlMb.length, resticHandMb.length];
    process.stderr.write('warming up…\n');
    await viaController(n++);
    await byHand();
    const ctl: number[] = [];
    const hand: number[] = [];
    for (let i = 1; i <= RUNS; i++) {
      ctl.push(await viaController(n++));
      hand.push(await byHand());
      process.stderr.write(`${mb} MB run ${i}: controller ${ctl.at(-1)!.toFixed(2)} s, by hand ${hand.at(-1)!.toFixed(2)} s\n`);
    }
    const [c, h] = [median(ctl), median(hand)];
    results.push({ dbBytes, c, h, peakMb });
    // The warm-up runs are left out of the phase medians, as of the totals.
    console.log(`etcd snapshot size:            ${(dbBytes / 1e6).toFixed(1)} MB`);
    console.log(`median via controller:         ${c.toFixed(2)} s  (backup-now annotation → status Completed, ${RUNS} runs)`);
    console.log(`median by hand (floor):        ${h.toFixed(2)} s  (etcdctl snapshot save + restic backup)`);
    console.log(`ratio controller / by hand:    ${(c / h).toFixed(2)}  (target ≤ 1.0)`);
    console.log(`controller peak RSS:           ${peakMb.toFixed(0)} MB  (target ≤ 150 MB; restic's own memory not included)`);
    console.log(`restic peak RSS (max of runs): ${Math.max(...resticCtlMb.slice(resticCtlFrom + 1)).toFixed(0)} MB under the controller, ` +
      `${Math.max(...resticHandMb.slice(resticHandFrom + 1)).toFixed(0)} MB by hand  (VmHWM sampled while it runs)`);
    printPhases(ctlPhases.slice(phasesFrom + 1), handPhases.slice(handsFrom + 1), dbBytes);
  }
  console.log(`controller:                    ${kubedrCmd.join(' ')}`);
  console.log(`controller idle RSS:           ${idleMb.toFixed(0)} MB  (before the first backup)`);
  if (results.length > 1) {
    console.log('| etcd snapshot | via controller | by hand | ratio | controller peak RSS |');
    console.log('|---|---|---|---|---|');
    for (const r of results) {
      console.log(`| ${(r.dbBytes / 1e6).toFixed(0)} MB | ${r.c.toFixed(2)} s | ${r.h.toFixed(2)} s | ${(r.c / r.h).toFixed(2)} | ${r.peakMb.toFixed(0)} MB |`);
    }
  }

  // Verification of the newest backup, as the controller runs it after each backup (measured apart, so it does not
  // hold the backup slot above): read back from S3, restored into a throwaway etcd, checked. The bench etcd is not a
  // Kubernetes cluster's, hence --not-kubernetes.
  const snapshotId = (await status()).snapshotId!;
  const verifyStarted = performance.now();
  const verify = Bun.spawn([...kubedrCmd, 'verify', snapshotId, '--not-kubernetes', '--url', env.s3Url, '--bucket', 'bench'], {
    stdout: 'pipe', stderr: 'pipe',
    env: { ...process.env, AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY, RESTIC_PASSWORD: password,
      KUBEDR_S3_CA_CERT: readFileSync(join(env.pki, 'ca.crt'), 'utf8') },
  });
  let verifyPeakMb = 0;
  let etcdPeakMb = 0;
  while (verify.exitCode === null) {
    verifyPeakMb = Math.max(verifyPeakMb, memoryMb(verify.pid).hwm);
    etcdPeakMb = Math.max(etcdPeakMb, childrenRssMb(verify.pid, 'etcd'));
    await Bun.sleep(50);
  }
  const verifyOut = await new Response(verify.stdout).text();
  if ((await verify.exited) !== 0) throw new Error(`kubedr verify failed: ${await new Response(verify.stderr).text()}`);
  const verifySecs = (performance.now() - verifyStarted) / 1000;

  console.log(`verification of one backup:    ${verifySecs.toFixed(2)} s  (${verifyOut.trim()})`);
  console.log(`  kubedr peak RSS meanwhile:   ${verifyPeakMb.toFixed(0)} MB; the throwaway etcd's peak RSS: ${etcdPeakMb.toFixed(0)} MB`);
} finally {
  controller?.kill();
  await controller?.exited;
  rmSync(work, { recursive: true, force: true });
  await stopExtra(env, 'bench');
}
