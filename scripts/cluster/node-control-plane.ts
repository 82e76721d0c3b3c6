/**
 * @module Faults and recoveries of the test node's control plane, for tests and the drills: the API server restarts, the
 * control plane is lost and rebuilt on a restored etcd data directory, etcd or S3 stop and start. Each acts on etcd and
 * kube-apiserver as the node runs them: processes it started, or static pods of its kubelet (static-control-plane.ts),
 * which are stopped and started as a kubeadm operator does, by moving their manifests out of the kubelet's sight and back.
 */
import type { TestEnv } from './node.ts';
import { apiserverReady, etcdReady, nodeReady, s3Ready, saveState } from './node-state.ts';
import { killProc, runningOurs, startProc, waitFor } from './procs.ts';
import { isAlive, processState } from '../../src/util/process.ts';
import { type Component, STATIC_START_MS, isSetAside, repointEtcd, runningPids, startStaticPod, stopStaticPod, waitStaticPod } from './static-control-plane.ts';

const isStatic = (env: TestEnv) => env.controlPlane === 'static-pods';

async function stopPart(env: TestEnv, c: Component): Promise<void> {
  if (isStatic(env)) await stopStaticPod(env, c);
  else await killProc(env.procs[c]);
}

/** Starts etcd or kube-apiserver again with the flags it had (or its manifest as it is now), and waits until it answers. */
async function startPart(env: TestEnv, c: Component, timeoutMs: number): Promise<void> {
  const check = c === 'etcd' ? () => etcdReady(env.etcdEndpoint, env.pki) : () => apiserverReady(env.apiserverUrl, env.pki);
  if (isStatic(env)) {
    startStaticPod(env, c);
    await waitStaticPod(env, c, check, timeoutMs);
    return;
  }
  env.procs[c] = startProc(env.dir, c, env.procs[c]!.cmd);
  saveState(env);
  await waitFor(c === 'etcd' ? 'etcd' : 'kube-apiserver', env.procs[c], check, timeoutMs);
}

/** The process id of etcd or kube-apiserver as the node runs it (its process, or its static pod's container), to signal it. */
export function controlPlanePid(env: TestEnv, c: Component): number {
  const pid = isStatic(env) ? runningPids(env, c)[0] : env.procs[c]?.pid;
  if (!pid) throw new Error(`${c} is not running on the test node`);
  return pid;
}

/**
 * Stops the API server and starts it again with the same flags: watches break, the cluster's data stays. Started
 * again even when the stop failed, so that a failed test does not leave the node without an API server.
 */
export async function restartApiserver(env: TestEnv, downMs = 0): Promise<void> {
  const t0 = performance.now();
  let stopped = t0;
  try {
    await stopPart(env, 'apiserver');
    stopped = performance.now();
    if (downMs > 0) await Bun.sleep(downMs);
  } finally {
    const back = performance.now();
    await startPart(env, 'apiserver', isStatic(env) ? STATIC_START_MS : 90_000);
    // How long each side took, in the test's output: with static pods the kubelet's part varies from seconds to minutes,
    // and a test's leases and time limits must allow for it.
    const secs = (a: number, b: number) => ((b - a) / 1000).toFixed(1);
    console.error(`test node: kube-apiserver restarted: stopped in ${secs(t0, stopped)} s, down ${secs(stopped, back)} s, ` +
      `answering ${secs(back, performance.now())} s after it was started again`);
  }
}

/**
 * Starts again whatever part of the control plane a failed test left stopped (a static pod's manifest left aside, or
 * a process that is gone), and waits until it answers; wakes or starts again the S3 server likewise: the next test
 * file finds the node as it was. Returns what it healed.
 */
export async function healControlPlane(env: TestEnv): Promise<string[]> {
  const stopped = (['etcd', 'apiserver'] as const).filter((c) => (isStatic(env) ? isSetAside(env, c) : !isAlive(env.procs[c]!.pid)));
  for (const c of stopped) await startPart(env, c, isStatic(env) ? STATIC_START_MS : 60_000);
  const healed: string[] = [...stopped];
  // The S3 server a failed test left frozen or stopped. Also one it had started again itself: when a test or hook
  // of a file times out, bun test kills the processes the file started ("killed 1 dangling process"), and a CI run
  // lost its S3 server that way, failing every file after it.
  const s3 = env.procs.s3;
  if (runningOurs(s3) && processState(s3.pid) === 'T') {
    process.kill(s3.pid, 'SIGCONT');
    healed.push('s3 (was frozen)');
  } else if (!runningOurs(s3) && s3) {
    await startProcAgain(env, 's3');
    healed.push('s3');
  }
  return healed;
}


/** The control plane is lost: kube-apiserver and etcd stop (the kubelet and the rest keep running, as on a real node). */
export async function stopControlPlane(env: TestEnv): Promise<void> {
  await stopPart(env, 'apiserver');
  await stopPart(env, 'etcd');
}

/**
 * The recovery a kubeadm runbook describes: etcd starts on `etcdDataDir` (a restored data directory; with static pods,
 * its manifest's etcd-data hostPath is repointed, and without `etcdDataDir` it starts as its manifest says, e.g. after
 * `kubedr etcd-restore --kubeadm` repointed it) with otherwise the same flags, then kube-apiserver; controller-manager,
 * scheduler, kubelet and kube-proxy are restarted so that none keeps state from after the snapshot. Resolves when the
 * node is Ready again.
 */
export async function startControlPlane(env: TestEnv, etcdDataDir?: string): Promise<void> {
  if (isStatic(env)) {
    if (etcdDataDir) repointEtcd(env, etcdDataDir);
  } else {
    if (!etcdDataDir) throw new Error('the node runs etcd as a process: name the data directory to start it on');
    const etcdCmdLine = [...env.procs.etcd!.cmd];
    etcdCmdLine[etcdCmdLine.indexOf('--data-dir') + 1] = etcdDataDir;
    env.procs.etcd = { ...env.procs.etcd!, cmd: etcdCmdLine };
  }
  await startPart(env, 'etcd', isStatic(env) ? STATIC_START_MS : 60_000);
  await startPart(env, 'apiserver', isStatic(env) ? STATIC_START_MS : 120_000);
  for (const name of ['controller-manager', 'scheduler', 'kubelet', 'kube-proxy'] as const) {
    await killProc(env.procs[name]);
    env.procs[name] = startProc(env.dir, name, env.procs[name]!.cmd);
  }
  saveState(env);
  await waitFor('kubelet', env.procs.kubelet!, () => nodeReady(env), 180_000);
}

/** Stops one of the cluster's parts, for failure tests. */
export async function stopProc(env: TestEnv, name: 'etcd' | 's3'): Promise<void> {
  if (name === 'etcd') await stopPart(env, 'etcd');
  else await killProc(env.procs[name]);
}

/**
 * Freezes (SIGSTOP) or wakes (SIGCONT) the S3 server: a stalled S3, which accepts connections (the kernel does) but
 * answers nothing, unlike a stopped one, which refuses them.
 */
export function freezeS3(env: TestEnv, how: 'SIGSTOP' | 'SIGCONT'): void {
  const p = env.procs.s3;
  if (!runningOurs(p)) throw new Error('the node\'s S3 server is not running');
  process.kill(p.pid, how);
}

export async function startProcAgain(env: TestEnv, name: 'etcd' | 's3'): Promise<void> {
  if (name === 'etcd') return startPart(env, 'etcd', isStatic(env) ? STATIC_START_MS : 30_000);
  const p = startProc(env.dir, name, env.procs[name]!.cmd);
  env.procs[name] = p;
  saveState(env);
  await waitFor(name, p, () => s3Ready(env), 30_000);
}
