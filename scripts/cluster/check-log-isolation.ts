/**
 * @module Checks that two test nodes on one machine keep their pod logs apart. Every kubelet removes, once a minute,
 * the directories under /var/log/pods of pods it does not know; when the nodes shared that directory, a second node
 * removed the first one's logs and `kubectl logs` there failed. Now each node's kubelet and containerd have a /var/log
 * of their own (host.ts, logMountNamespace).
 *
 *   KUBEDR_TESTENV_DIR=<running node A> bun scripts/cluster/check-log-isolation.ts <state dir for node B>
 *
 * On node A (already running) a pod prints a line and ends; node B starts, runs pods of its own for longer than the
 * kubelet's collection period, and stops; `kubectl logs` of A's pod must still print the line throughout. So that the
 * check can fail, a directory of a pod no kubelet knows is put into each node's pod-log directory and must be
 * collected meanwhile: each kubelet's collection ran and would have removed the other node's logs had it seen them.
 * Exits 0 when the logs stayed, 1 when they did not. Prints each step with its time.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PAUSE_IMAGE } from './components.ts';
import { type TestEnv, loadEnv } from './node.ts';
import { tryRun } from './procs.ts';

const nodeScript = join(import.meta.dir, 'node.ts');
const t0 = performance.now();
const say = (s: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${s}\n`);

/** kubectl on a node, inside its network namespace (where its API server's address exists). */
function kubectl(env: TestEnv, args: string[], input?: string): { code: number; out: string } {
  const r = Bun.spawnSync(['nsenter', `--net=/run/netns/${env.netns}`, 'kubectl', '--kubeconfig', env.kubeconfig, ...args],
    { stdin: input === undefined ? 'ignore' : Buffer.from(input), stdout: 'pipe', stderr: 'pipe' });
  return { code: r.exitCode ?? -1, out: `${r.stdout.toString()}${r.stderr.toString()}`.trim() };
}

/** A pod that prints the pause binary's version line (`/pause -v`) and ends: the only image a fresh node holds. */
function printingPod(env: TestEnv, name: string): void {
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: {
    restartPolicy: 'Never', tolerations: [{ operator: 'Exists' }],
    containers: [{ name: 'print', image: PAUSE_IMAGE, imagePullPolicy: 'Never', args: ['-v'] }] } };
  const r = kubectl(env, ['apply', '-f', '-'], JSON.stringify(pod));
  if (r.code !== 0) throw new Error(`creating pod ${name}: ${r.out}`);
}

async function until(what: string, fn: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs / 1000} s: ${what}`);
    await Bun.sleep(1000);
  }
}

/**
 * A pod-log directory for a pod no kubelet knows (namespace_name_uid, as the kubelet names them), where the node's
 * kubelet keeps pod logs: its own directory, or /var/log/pods for a node from before logMountNamespace.
 */
function strayLogDir(env: TestEnv): string {
  const own = join(env.dir, 'var-log/pods');
  const d = join(existsSync(own) ? own : '/var/log/pods', `default_stray_${crypto.randomUUID()}`);
  mkdirSync(join(d, 'c'), { recursive: true });
  return d;
}

const aDir = resolve(process.env.KUBEDR_TESTENV_DIR ?? '');
const bDir = resolve(process.argv[2] ?? '');
if (!process.env.KUBEDR_TESTENV_DIR || !process.argv[2] || aDir === bDir) {
  process.stderr.write('usage: KUBEDR_TESTENV_DIR=<running node A> bun scripts/cluster/check-log-isolation.ts <state dir for node B>\n');
  process.exit(2);
}
const a = loadEnv(aDir);
const logsOfA = () => kubectl(a, ['logs', '-n', 'default', 'log-a']);
const failures: string[] = [];
const check = (when: string) => {
  const r = logsOfA();
  say(`kubectl logs log-a on node A ${when}: exit ${r.code}: ${r.out}`);
  if (r.code !== 0 || !r.out.includes('pause.c')) failures.push(`${when}: ${r.out}`);
};

let b: TestEnv | undefined;
try {
  kubectl(a, ['delete', 'pod', 'log-a', '-n', 'default', '--ignore-not-found', '--wait']);
  printingPod(a, 'log-a');
  await until('pod log-a Succeeded on node A', () => kubectl(a, ['get', 'pod', 'log-a', '-n', 'default', '-o', 'jsonpath={.status.phase}']).out === 'Succeeded', 120_000);
  check('before node B starts');
  const strayA = strayLogDir(a);

  say(`starting node B in ${bDir}`);
  const started = Bun.spawnSync([process.execPath, nodeScript, 'start'], { env: { ...process.env, KUBEDR_TESTENV_DIR: bDir }, stdout: 'inherit', stderr: 'inherit' });
  if (started.exitCode !== 0) throw new Error('node B did not start');
  b = loadEnv(bDir);
  const strayB = strayLogDir(b);
  for (let i = 0; i < 3; i++) printingPod(b, `log-b-${i}`);
  await until('node B\'s pods Succeeded', () => [0, 1, 2].every((i) =>
    kubectl(b!, ['get', 'pod', `log-b-${i}`, '-n', 'default', '-o', 'jsonpath={.status.phase}']).out === 'Succeeded'), 120_000);
  check('while node B runs pods');
  // Each kubelet collects pod-log directories once a minute, once its pod sources are in sync: wait until both nodes'
  // kubelets have removed their stray directory, so a collection that could have reached A's logs has run on B.
  await until('both kubelets collected their stray pod-log directory', () => !existsSync(strayA) && !existsSync(strayB), 180_000);
  say('both kubelets have collected pod-log directories of pods they do not know');
  check('after node B\'s kubelet collected');
} catch (err) {
  failures.push(`check could not run: ${err instanceof Error ? err.message : String(err)}`);
} finally {
  say('stopping node B');
  Bun.spawnSync([process.execPath, nodeScript, 'stop'], { env: { ...process.env, KUBEDR_TESTENV_DIR: bDir }, stdout: 'inherit', stderr: 'inherit' });
}
check('after node B stopped');
tryRun('nsenter', [`--net=/run/netns/${a.netns}`, 'kubectl', '--kubeconfig', a.kubeconfig, 'delete', 'pod', 'log-a', '-n', 'default', '--wait=false']);
if (failures.length > 0) {
  process.stderr.write(`FAILED: node A's pod log was lost:\n${failures.join('\n')}\n`);
  process.exit(1);
}
say('node A\'s pod log survived node B\'s start, pods, log collection and stop');
