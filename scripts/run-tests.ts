/**
 * @module `npm test` with no file named: every test file, on several test nodes side by side. The suite is mostly
 * waiting (for backups, schedules, API servers coming back), not computing, so a machine with two cores can run two
 * nodes' worth of it at once. Each end-to-end file runs in a `bun test` process of its own on whichever node is free,
 * longest first (the times of the previous run on this machine, kept with the build cache); the other test files run
 * together as one more item. A node serves one file at a time, so files never share a node's cluster at the same time,
 * as they never did. Each file's output is printed whole when it ends, then the totals as `bun test` prints them.
 *
 * Written here rather than with `bun test`'s own options: it has no sharding across processes and no way to give each
 * process a cluster of its own.
 *   KUBEDR_TEST_NODES  how many nodes (default 2 on a machine with two cores or more, else 1: on 2 cores the full run took
 *                      32.6 min on two against 64 min on one; three did not hold: docs/development.md)
 *   KUBEDR_TEST_MATCH  only the test files whose path matches this regular expression
 *   KUBEDR_CONTROL_PLANE  static-pods (default: etcd and kube-apiserver as kubeadm runs them) or processes (faster restarts)
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dir, '..');
const cacheDir = process.env.KUBEDR_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'kubedr-testenv');
const timesFile = join(cacheDir, 'test-durations.json');
const base = resolve(process.env.KUBEDR_TESTENV_DIR ?? join(root, '.testenv'));
const nodeCount = Math.max(1, Number(process.env.KUBEDR_TEST_NODES ?? Math.min(2, availableParallelism())));
const controlPlane = process.env.KUBEDR_CONTROL_PLANE ?? 'static-pods';
const bun = process.execPath;

interface Item {
  /** What it is called in the output and in the times file. */
  name: string;
  files: string[];
}

interface Outcome {
  item: Item;
  code: number;
  output: string;
  seconds: number;
  node: number;
}

/** Runs a command to its end with its output captured (stdout and stderr together, as a person would read them). */
function run(cmd: string[], env: Record<string, string | undefined>): Promise<{ code: number; output: string }> {
  return new Promise((ok) => {
    const p = spawn(cmd[0]!, cmd.slice(1), { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    children.add(p.pid!);
    let output = '';
    p.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    p.on('close', (code, signal) => {
      children.delete(p.pid!);
      ok({ code: code ?? (signal ? 128 : 1), output });
    });
  });
}

/** Process groups still running: stopped with us (each node's stop runs in `finally`). */
const children = new Set<number>();
let stopping = false;
function stopOnSignals(): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      stopping = true;
      for (const pid of children) try { process.kill(-pid, 'SIGTERM'); } catch { /* gone */ }
    });
  }
}

function testFiles(): Item[] {
  const match = new RegExp(process.env.KUBEDR_TEST_MATCH ?? '');
  const all = [...new Bun.Glob('test/**/*.test.ts').scanSync({ cwd: root })].filter((f) => match.test(f)).sort();
  const e2e = all.filter((f) => f.startsWith('test/e2e/'));
  const rest = all.filter((f) => !f.startsWith('test/e2e/'));
  return [...e2e.map((f) => ({ name: f, files: [f] })), ...(rest.length ? [{ name: 'unit and engine tests', files: rest }] : [])];
}

function previousTimes(): Record<string, number> {
  try {
    return JSON.parse(readFileSync(timesFile, 'utf8')) as Record<string, number>;
  } catch {
    return {};
  }
}

async function startNode(i: number): Promise<{ dir: string; netns: string } | undefined> {
  const dir = nodeCount === 1 ? base : `${base}-${i}`;
  for (let attempt = 1; attempt <= 2; attempt++) {
    // etcd and kube-apiserver as kubeadm runs them, static pods of the node's kubelet, unless asked otherwise.
    const r = await run([bun, join(root, 'scripts/cluster/node.ts'), 'start'], { KUBEDR_TESTENV_DIR: dir, KUBEDR_CONTROL_PLANE: controlPlane });
    if (r.code === 0) {
      const netns = (JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { netns: string }).netns;
      console.error(`node ${i}: ready (${dir})`);
      return { dir, netns };
    }
    console.error(`node ${i}: start failed (attempt ${attempt}):\n${r.output.split('\n').slice(-15).join('\n')}`);
    await run([bun, join(root, 'scripts/cluster/node.ts'), 'stop'], { KUBEDR_TESTENV_DIR: dir });
  }
  return undefined;
}

async function stopNode(dir: string): Promise<void> {
  if (process.env.KUBEDR_KEEP_NODE === '1') return;
  const r = await run([bun, join(root, 'scripts/cluster/node.ts'), 'stop'], { KUBEDR_TESTENV_DIR: dir });
  if (r.code !== 0) console.error(`stopping the node in ${dir} failed:\n${r.output}`);
}

/**
 * Each failed test of one `bun test` run with the end of what it printed before its `(fail)` line (bun prints the
 * error there): the summary at the end of a long run, which is all a CI page may keep, then says why, not only which.
 */
export function failureDetails(output: string, keep = 20): string[] {
  const lines = output.split('\n');
  const out: string[] = [];
  let from = 0;
  lines.forEach((line, i) => {
    if (line.startsWith('(fail)')) {
      const before = lines.slice(from, i).filter((l) => l.trim() !== '');
      const shown = before.slice(-keep).map((l) => `    ${l.length > 300 ? `${l.slice(0, 300)}…` : l}`);
      out.push([line, ...(before.length > keep ? [`    … (${before.length - keep} lines above)`] : []), ...shown].join('\n'));
    }
    if (line.startsWith('(pass)') || line.startsWith('(fail)') || line.startsWith('(skip)')) from = i + 1;
  });
  return out;
}

/** The `N pass` / `N fail` / `Ran N tests across M files` lines of one `bun test` run. */
export function counts(output: string): { pass: number; fail: number; tests: number; files: number } {
  const last = (re: RegExp) => Number([...output.matchAll(re)].at(-1)?.[1] ?? 0);
  return {
    pass: last(/^\s*(\d+) pass$/gm), fail: last(/^\s*(\d+) fail$/gm),
    tests: last(/^Ran (\d+) tests? across/gm), files: last(/^Ran \d+ tests? across (\d+) files?/gm),
  };
}

async function main(argv: string[]): Promise<number> {
  stopOnSignals();
  const started = performance.now();
  const times = previousTimes();
  // Longest first, so the last to finish is a short one; files not seen before count as long.
  const queue = testFiles().sort((a, b) => (times[b.name] ?? 300) - (times[a.name] ?? 300));
  console.error(`== ${queue.length} items (${queue.filter((q) => q.files.length === 1).length} end-to-end files and the rest) on ${nodeCount} node(s)`);
  const nodes = (await Promise.all(Array.from({ length: nodeCount }, (_, i) => startNode(i + 1)))).map((n, i) => n && { ...n, no: i + 1 });
  const ready = nodes.filter((n) => n !== undefined);
  const outcomes: Outcome[] = [];
  try {
    if (ready.length === 0) throw new Error('no test node started');
    const total = queue.length;
    await Promise.all(ready.map(async (node) => {
      for (let item = queue.shift(); item && !stopping; item = queue.shift()) {
        const t0 = performance.now();
        const r = await run(['nsenter', `--net=/run/netns/${node.netns}`, bun, 'test', '--timeout', '120000', ...argv, ...item.files],
          { KUBEDR_TESTENV_DIR: node.dir });
        const o: Outcome = { item, code: r.code, output: r.output, seconds: (performance.now() - t0) / 1000, node: node.no };
        outcomes.push(o);
        const c = counts(r.output);
        process.stdout.write(`${r.output.trimEnd()}\n`);
        console.error(`== [node ${node.no}] ${item.name}: ${c.pass} pass, ${c.fail} fail${r.code !== 0 && c.fail === 0 ? ` (exit ${r.code})` : ''} ` +
          `in ${o.seconds.toFixed(0)} s (${outcomes.length}/${total} done, ${((performance.now() - started) / 1000).toFixed(0)} s)`);
        // A file that failed may have left the control plane stopped (a restart that failed half-way): the next file
        // gets the node as it was, or this one's failure would fail every file after it.
        if (r.code !== 0 && item.files.length === 1) {
          const healed = await run([bun, join(root, 'scripts/cluster/node.ts'), 'heal'], { KUBEDR_TESTENV_DIR: node.dir });
          if (healed.output.trim()) console.error(`== [node ${node.no}] after ${item.name}: ${healed.output.trim()}`);
        }
      }
    }));
  } finally {
    await Promise.all(ready.map((n) => stopNode(n.dir)));
  }

  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(timesFile, JSON.stringify({ ...times, ...Object.fromEntries(outcomes.map((o) => [o.item.name, Math.round(o.seconds)])) }, null, 1));
  const sum = outcomes.reduce((s, o) => {
    const c = counts(o.output);
    return { pass: s.pass + c.pass, fail: s.fail + c.fail, tests: s.tests + c.tests, files: s.files + c.files };
  }, { pass: 0, fail: 0, tests: 0, files: 0 });
  const failedRuns = outcomes.filter((o) => o.code !== 0);
  const failures = outcomes.flatMap((o) => failureDetails(o.output));
  const notRun = stopping ? ['(interrupted)'] : [];
  console.log('');
  if (failures.length) console.log(`${failures.length} tests failed:\n${failures.join('\n')}\n`);
  for (const o of failedRuns.filter((x) => counts(x.output).fail === 0)) console.log(`${o.item.name}: bun test exited ${o.code} without a failed test (an error outside tests; output above)`);
  console.log(` ${sum.pass} pass`);
  console.log(` ${sum.fail} fail`);
  console.log(`Ran ${sum.tests} tests across ${sum.files} files on ${ready.length} node(s) side by side. [${((performance.now() - started) / 1000).toFixed(2)}s]${notRun.join('')}`);
  return failedRuns.length || stopping || ready.length < 1 ? 1 : 0;
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));
