/**
 * @module `npm run measure-startup`: start-up time and memory of the compiled binary. Starts `dist/kubedr controller`
 * several times against the local test cluster and measures, per run, the time from spawn to /readyz answering 200
 * (caches synced) and, after it has idled with one initialised BackupLocation, its VmRSS and VmHWM (peak) from
 * /proc/<pid>/status. Also times `kubedr version` (the CLI path, which starts restic). Prints median, min and max.
 *
 * Uses the running cluster of $KUBEDR_TESTENV_DIR if there is one, else starts (and stops) its own in .measure/.
 * Not a test: figures vary with the machine; record them in docs/performance.md.
 *   MEASURE_RUNS (default 5), MEASURE_IDLE_S (default 10), MEASURE_BIN (default dist/kubedr; e.g. "bun src/main.ts")
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { memoryMb, sh } from './measure.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, freePort, loadEnv } from './cluster/node.ts';

const root = resolve(import.meta.dir, '..');
const RUNS = Number(process.env.MEASURE_RUNS ?? 5);
const IDLE_S = Number(process.env.MEASURE_IDLE_S ?? 10);
const BIN = (process.env.MEASURE_BIN ?? join(root, 'dist/kubedr')).split(' ');
const NS = 'measure-startup';

if (!existsSync(BIN[0]!)) {
  console.error(`${BIN[0]} not found: run 'npm run build' first`);
  process.exit(2);
}


function summary(label: string, xs: number[], unit: string, digits = 0): string {
  const s = [...xs].sort((a, b) => a - b);
  const f = (x: number) => x.toFixed(digits);
  return `${label.padEnd(34)} median ${f(s[Math.floor(s.length / 2)]!)} ${unit}  (min ${f(s[0]!)}, max ${f(s.at(-1)!)}, ${s.length} runs)`;
}

// The test node that `npm run measure-startup` starts around this script (scripts/cluster/with-node.sh).
const env = loadEnv();

try {
  const kubectl = (args: string[], input?: string) => sh(['kubectl', '--kubeconfig', env.kubeconfig, ...args], {}, input);
  kubectl(['apply', '-f', join(root, 'crds')]);
  kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
  kubectl(['apply', '-f', '-'], `apiVersion: v1
kind: Namespace
metadata: { name: ${NS} }
---
apiVersion: v1
kind: Secret
metadata: { name: s3-creds, namespace: ${NS} }
stringData:
  access_key: ${S3_ACCESS_KEY}
  secret_key: ${S3_SECRET_KEY}
  restic_repo_password: measure-password
  ca.crt: ${JSON.stringify(readFileSync(join(env.pki, 'ca.crt'), 'utf8'))}
---
apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: BackupLocation
metadata: { name: loc, namespace: ${NS} }
spec: { url: "${env.s3Url}", bucketName: measure-startup, credentials: s3-creds }
`);

  const ready: number[] = [];
  const rss: number[] = [];
  const hwm: number[] = [];
  for (let i = 1; i <= RUNS; i++) {
    const port = await freePort();
    const t0 = performance.now();
    const proc = Bun.spawn([...BIN, 'controller', '--kubeconfig', env.kubeconfig, '--namespace', NS, '--http-address', '127.0.0.1',
      '--http-port', String(port), '--log-level', 'warn'], { stdout: 'ignore', stderr: 'inherit' });
    try {
      for (;;) {
        const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false);
        if (ok) break;
        if (proc.exitCode !== null) throw new Error(`controller exited with ${proc.exitCode}`);
        if (performance.now() - t0 > 60_000) throw new Error('no /readyz 200 within 60 s');
        await Bun.sleep(2);
      }
      ready.push(performance.now() - t0);
      // The location is reconciled (restic opens the repository) before the idle figure is taken.
      kubectl(['-n', NS, 'wait', '--for=condition=Ready', '--timeout=120s', 'backuplocation/loc']);
      await Bun.sleep(IDLE_S * 1000);
      const m = memoryMb(proc.pid);
      rss.push(m.rss);
      hwm.push(m.hwm);
      process.stderr.write(`run ${i}: /readyz after ${ready.at(-1)!.toFixed(0)} ms, idle RSS ${m.rss.toFixed(1)} MB, peak ${m.hwm.toFixed(1)} MB\n`);
    } finally {
      proc.kill();
      await proc.exited;
    }
  }

  const version: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    sh([...BIN, 'version']);
    version.push(performance.now() - t0);
  }

  console.log(`binary: ${BIN.join(' ')}`);
  console.log(summary('spawn → /readyz 200:', ready, 'ms'));
  console.log(summary(`idle RSS (VmRSS, after ${IDLE_S} s):`, rss, 'MB', 1) + '  (target ≤ 60 MB, issue 14)');
  console.log(summary('peak RSS (VmHWM):', hwm, 'MB', 1));
  console.log(summary('`kubedr version` wall time:', version, 'ms'));
} finally {
  sh(['kubectl', '--kubeconfig', env.kubeconfig, 'delete', 'namespace', NS, '--wait=false', '--ignore-not-found']);
}
