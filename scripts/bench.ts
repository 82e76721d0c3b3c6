/**
 * @module `npm run bench`: one backup through the controller (backup-now annotation → status Completed) against the
 * by-hand floor on the same etcd and repository (`etcdctl snapshot save`, then `restic backup` of that file), with
 * etcd filled to about 100 MB (BENCH_MB; a list such as "100,1000" measures each size in turn in one run, filling
 * etcd further between them). Prints both medians, their ratio, where the time goes on each side (phase medians: the
 * controller's from its `backup completed` log line, by hand from timing its two commands), the controller's peak RSS
 * during its backups and restic's peak memory on both sides (its VmHWM, sampled while it runs).
 * Each backup layout (BENCH_LAYOUTS, default "streamed,staged": see engine/backup.ts) has a controller of its own, in
 * its own namespace and bucket, and every run takes one backup with each, then one by hand: one run compares them.
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
const LAYOUTS = (process.env.BENCH_LAYOUTS ?? 'streamed,staged').split(',');
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

/** VmHWM (MB) of the processes named `name` that restic children of `pid` run (the archive writer of a streamed backup). */
function grandchildrenHwmMb(pid: number, name: string): number {
  let peak = 0;
  for (const child of childrenOf(pid)) peak = Math.max(peak, childrenRssMb(Number(child), name, 'hwm'));
  return peak;
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
    ['staging (streamed: request written, etcd revision)', `${med('stage')}`],
    ['etcd connect + Status (revision)', `${med('etcdConnect')}`],
    ['etcd stream (staged: to disk; streamed: into restic)', `${med('etcdStream')}  (${mbps(med('etcdStream'))} MB/s; etcdctl snapshot save: ${mbps(median(hand.map((x) => x.etcdctl)))} MB/s)`],
    ['  of which hashing (SHA-256, inline)', `${med('hash')}`],
    ['  of which writing (the file, or restic\'s pipe)', `${med('write')}`],
    ['waiting for other restic work on the repository', `${med('repoWait')}`],
    ['restic backup (spawn → exit; streamed: etcd\'s stream in it)', `${med('upload')}  (restic's own total_duration ${med('resticOwn')})`],
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
const controllers: ReturnType<typeof Bun.spawn>[] = [];
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
  const client = KubeClient.load({ kubeconfig: env.kubeconfig, fieldManager: 'bench' });
  /**
   * One controller per backup layout (BENCH_LAYOUTS, default both), each in a namespace and bucket of its own, so one
   * run compares them on the same etcd, with the by-hand floor between them.
   */
  interface Side {
    layout: string;
    ns: string;
    proc: ReturnType<typeof Bun.spawn>;
    log: LogLine[];
    peakMb: number;
    /** Per run: phase → ms, from its log line and the bench's own clock. */
    phases: Record<string, number>[];
    resticMb: number[];
    /** Peak memory of the archive writer (`kubedr backup-archive`, run by restic), per run. */
    archiveMb: number[];
    runs: number;
  }
  const sides: Side[] = [];
  for (const layout of LAYOUTS) {
    const ns = layout === LAYOUTS[0] ? 'bench' : `bench-${layout}`;
    prepareNamespace(env, ns, password);
    kubectl(['apply', '-f', '-'], `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: BackupLocation
metadata: { name: loc, namespace: ${ns} }
spec: { url: "${env.s3Url}", bucketName: ${ns}, credentials: s3-creds }
---
apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupPolicy
metadata: { name: bench, namespace: ${ns} }
spec: { destination: loc, etcdEndpoint: "${etcd}", schedule: "0 0 1 1 *", retainNumBackups: 100, verification: { mode: Never } }
`);
    const proc = Bun.spawn([...kubedrCmd, 'controller', '--kubeconfig', env.kubeconfig, '--namespace', ns, '--backup-layout', layout,
      '--http-port', '0', '--log-level', 'info'], { stdout: 'ignore', stderr: 'pipe' });
    controllers.push(proc);
    sides.push({ layout, ns, proc, log: readLog(proc.stderr as ReadableStream<Uint8Array>), peakMb: 0, phases: [], resticMb: [], archiveMb: [], runs: 0 });
    kubectl(['-n', ns, 'wait', '--for=condition=Ready', '--timeout=120s', 'backuplocation/loc']);
  }

  // Trigger and poll through the API client: a kubectl process per poll would add its own start-up to every figure.
  const status = async (ns: string) => (await client.get<MetadataBackupPolicy>(BACKUP_POLICY, ns, 'bench')).status ?? {};
  const viaController = async (side: Side): Promise<number> => {
    const n = side.runs++;
    const t0 = performance.now();
    const sentAt = Date.now();
    await client.patch(BACKUP_POLICY, side.ns, 'bench', { metadata: { annotations: { [BACKUP_NOW_ANNOTATION]: `run-${n}` } } });
    let resticMb = 0;
    let archiveMb = 0;
    for (;;) {
      side.peakMb = Math.max(side.peakMb, memoryMb(side.proc.pid).rss);
      resticMb = Math.max(resticMb, childrenRssMb(side.proc.pid, 'restic', 'hwm'));
      archiveMb = Math.max(archiveMb, grandchildrenHwmMb(side.proc.pid, 'kubedr'));
      const st = await status(side.ns);
      if (st.backupNowServed === `run-${n}` && st.backupStatus === 'Completed') {
        const secs = (performance.now() - t0) / 1000;
        side.resticMb.push(resticMb);
        side.archiveMb.push(archiveMb);
        // The log line is written just after the status: give it a moment to arrive.
        for (let i = 0; i < 100 && completedOf(side.log).length <= n; i++) await Bun.sleep(10);
        const line = completedOf(side.log)[n];
        if (line) {
          const t = line.timingsMs;
          const annotationToReconcile = Date.parse(line.reconciledAt) - sentAt;
          side.phases.push({ ...t, annotationToReconcile, observed: secs * 1000 - annotationToReconcile - t.start! - t.total! });
        }
        return secs;
      }
      if (st.backupNowServed === `run-${n}` && st.backupStatus === 'Failed') throw new Error(`${side.layout} backup failed: ${st.backupErrorMessage}`);
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
  const idleMb = sides.map((side) => `${memoryMb(side.proc.pid).rss.toFixed(0)} MB (${side.layout})`);
  const results: { dbBytes: number; layout: string; c: number; h: number; e: number; peakMb: number }[] = [];
  for (const mb of SIZES_MB) {
    const dbBytes = fillTo(mb);
    const from = sides.map((side) => ({ phases: side.phases.length, restic: side.resticMb.length }));
    const [handsFrom, resticHandFrom] = [handPhases.length, resticHandMb.length];
    for (const side of sides) side.peakMb = 0;
    process.stderr.write('warming up…\n');
    for (const side of sides) await viaController(side);
    await byHand();
    const ctl = sides.map((): number[] => []);
    const hand: number[] = [];
    for (let i = 1; i <= RUNS; i++) {
      for (const [k, side] of sides.entries()) ctl[k]!.push(await viaController(side));
      hand.push(await byHand());
      process.stderr.write(`${mb} MB run ${i}: ${sides.map((side, k) => `${side.layout} ${ctl[k]!.at(-1)!.toFixed(2)} s`).join(', ')}, by hand ${hand.at(-1)!.toFixed(2)} s\n`);
    }
    const h = median(hand);
    const e = median(handPhases.slice(handsFrom + 1).map((p) => p.etcdctl)) / 1000;
    console.log(`etcd snapshot size:            ${(dbBytes / 1e6).toFixed(1)} MB`);
    console.log(`median by hand (floor):        ${h.toFixed(2)} s  (etcdctl snapshot save + restic backup, ${RUNS} runs)`);
    console.log(`median etcdctl snapshot save:  ${e.toFixed(2)} s  (etcd's stream alone: the limit a streamed backup approaches)`);
    for (const [k, side] of sides.entries()) {
      const c = median(ctl[k]!);
      results.push({ dbBytes, layout: side.layout, c, h, e, peakMb: side.peakMb });
      console.log(`\n${side.layout}: median via controller ${c.toFixed(2)} s (backup-now annotation → status Completed)`);
      console.log(`  ratio controller / by hand:    ${(c / h).toFixed(2)}  (issue 24's targets: ≤ 0.75 at 1.2 GB, ≤ 0.9 at 120 MB)`);
      console.log(`  ratio controller / etcd alone: ${(c / e).toFixed(2)}`);
      console.log(`  controller peak RSS:           ${side.peakMb.toFixed(0)} MB  (target ≤ 150 MB; restic's and the archive writer's own memory not included)`);
      console.log(`  restic peak RSS (max of runs): ${Math.max(...side.resticMb.slice(from[k]!.restic + 1)).toFixed(0)} MB under the controller, ` +
        `${Math.max(...resticHandMb.slice(resticHandFrom + 1)).toFixed(0)} MB by hand  (VmHWM sampled while it runs)`);
      if (side.layout === 'streamed') {
        console.log(`  archive writer peak RSS:       ${Math.max(...side.archiveMb.slice(from[k]!.restic + 1)).toFixed(0)} MB  (kubedr backup-archive, run by restic)`);
      }
      // The warm-up runs are left out of the phase medians, as of the totals.
      printPhases(side.phases.slice(from[k]!.phases + 1), handPhases.slice(handsFrom + 1), dbBytes);
    }
  }
  console.log(`controller:                    ${kubedrCmd.join(' ')}`);
  console.log(`controller idle RSS:           ${idleMb.join(', ')}  (before the first backup)`);
  console.log('| etcd snapshot | layout | via controller | by hand | ratio | etcdctl alone | ratio to it | controller peak RSS |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(`| ${(r.dbBytes / 1e6).toFixed(0)} MB | ${r.layout} | ${r.c.toFixed(2)} s | ${r.h.toFixed(2)} s | ${(r.c / r.h).toFixed(2)} | ` +
      `${r.e.toFixed(2)} s | ${(r.c / r.e).toFixed(2)} | ${r.peakMb.toFixed(0)} MB |`);
  }

  // Verification of the newest backup, as the controller runs it after each backup (measured apart, so it does not
  // hold the backup slot above): read back from S3, restored into a throwaway etcd, checked. The bench etcd is not a
  // Kubernetes cluster's, hence --not-kubernetes.
  const snapshotId = (await status('bench')).snapshotId!;
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
  for (const c of controllers) c.kill();
  await Promise.all(controllers.map((c) => c.exited));
  rmSync(work, { recursive: true, force: true });
  await stopExtra(env, 'bench');
}
