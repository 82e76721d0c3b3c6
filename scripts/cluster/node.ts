/**
 * @module The test cluster: a real single-node Kubernetes 1.20 inside a network namespace of its own. etcd on mutual TLS
 * (as kubeadm runs it), kube-apiserver (Node,RBAC, ServiceAccount admission), kube-controller-manager, kube-scheduler,
 * containerd + runc, kubelet (cgroupfs) and kube-proxy, with a CNI bridge for pods, and an S3 endpoint over HTTPS
 * (Ceph's RADOS Gateway, or s3rver: s3.ts). The node is labelled and tainted as a kubeadm control-plane node. Node,
 * pod and service addresses exist only inside the namespace, whose default route is a blackhole: nothing can leave it.
 * Tests, the demo and the bench run inside it too (scripts/cluster/with-node.sh), where loopback works as usual.
 *
 *   bun scripts/cluster/node.ts start|stop|status|env|exec CMD...
 *
 * State (certificates, data, logs, pids, containerd, kubelet) lives in one directory ($KUBEDR_TESTENV_DIR); `stop` removes it and everything
 * the node left on the host (mounts, cgroups, the namespace, kubelet logs, the kernel settings the kubelet changes).
 * `start` first stops whatever an earlier run left in that directory, so both are idempotent.
 * Binaries and the pause image come from scripts/cluster/build-kube.sh (built once, cached outside the repository).
 * See shared/notes/realnode/README.md for the walls behind each setting.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { freePort } from '../../src/util/net.ts';
import { isAlive } from '../../src/util/process.ts';
import { NODE_IP, SERVICE_CIDR, SERVICE_IP, apiserverCmd, cniConfig, containerdConfig, controlPlaneCmds, etcdCmd, kubeletCmd } from './components.ts';
import { cgroupHierarchies, createNetns, insideNetns, logMountNamespace, removeCgroups, removeHostLeftovers, removeNetnsDir, restoreSysctls,
  saveSysctls, unmountUnder } from './host.ts';
import { ADMIN_TOKEN, kubeconfigYaml, makePki, writeComponentKubeconfigs } from './pki.ts';
import { type ProcState, killProc, run, startProc, tryRun, waitFor } from './procs.ts';
import { apiserverReady, etcdReady, nodeReady, s3Ready, saveState } from './node-state.ts';
import { type ControlPlaneMode, controlPlaneImages, waitStaticPod, writeManifests } from './static-control-plane.ts';
import { S3_ACCESS_KEY, S3_PORT, S3_SECRET_KEY, type S3Server, prepareS3, provisionS3, s3ServerFromEnv } from './s3.ts';

export { ADMIN_TOKEN, S3_ACCESS_KEY, S3_SECRET_KEY };
export { controlPlanePid, freezeS3, restartApiserver, startControlPlane, startProcAgain, stopControlPlane, stopProc } from './node-control-plane.ts';
import { healControlPlane, startControlPlane, stopControlPlane } from './node-control-plane.ts';
const repoRoot = resolve(import.meta.dir, '../..');



type ProcName = 'etcd' | 'apiserver' | 'controller-manager' | 'scheduler' | 'containerd' | 'kubelet' | 'kube-proxy' | 'ceph-mon' | 'ceph-osd' | 's3';

export interface TestEnv {
  dir: string;
  pki: string;
  /** Node name; also names the network namespace (`kdr-<name>`) and the kubelet's cgroup root. */
  node: string;
  netns: string;
  nodeIp: string;
  etcdEndpoint: string;
  apiserverUrl: string;
  s3Url: string;
  /** What answers at s3Url (scripts/cluster/s3.ts): Ceph's RADOS Gateway, or s3rver when KUBEDR_S3=s3rver. */
  s3Server: S3Server;
  /** kubeconfig with the admin bearer token. */
  kubeconfig: string;
  /** kubeconfig with an admin client certificate (system:masters). */
  kubeconfigCert: string;
  containerdSocket: string;
  /** Where build-kube.sh put the Kubernetes binaries. */
  bin: string;
  procs: Partial<Record<ProcName, ProcState>>;
  /** Set when etcd and kube-apiserver run as static pods of the kubelet (static-control-plane.ts), not in `procs`. */
  controlPlane?: 'static-pods';
  /** Extra etcd servers and API servers started by tests, stopped with the rest. */
  extra?: Record<string, ProcState & { endpoint: string }>;
}

export function defaultDir(): string {
  return process.env.KUBEDR_TESTENV_DIR ?? join(repoRoot, '.testenv');
}

/**
 * A node name from the state directory: its name and a hash of its whole path (`/work/main/.testenv` → `testenv-3f2a`),
 * so nodes of two checkouts never share a network namespace, cgroups or CNI state (they did, when both were `.testenv`).
 */
function nodeNameFor(dir: string): string {
  if (process.env.KUBEDR_NODE_NAME) return process.env.KUBEDR_NODE_NAME.slice(0, 12);
  const base = dir.split('/').filter(Boolean).pop()!.replace(/[^a-z0-9]/g, '').slice(0, 7) || 'node';
  return `${base}-${createHash('sha256').update(resolve(dir)).digest('hex').slice(0, 4)}`;
}


/** A port free on loopback right now, in the caller's network namespace. */
export { freePort, insideNetns };


/** Builds (once) and returns the directory holding the Kubernetes binaries and the pause image. */
export function kubeBinDir(): string {
  const out = run(join(repoRoot, 'scripts/cluster/build-kube.sh'), []).trim().split('\n').pop() ?? '';
  if (!existsSync(join(out, 'kubelet'))) throw new Error(`Kubernetes binaries not found in ${out}`);
  return out;
}



export function loadEnv(dir = defaultDir()): TestEnv {
  const file = join(dir, 'state.json');
  if (!existsSync(file)) throw new Error(`no test cluster at ${dir}: run 'bun scripts/cluster/node.ts start' first`);
  return JSON.parse(readFileSync(file, 'utf8')) as TestEnv;
}

const kubectlArgs = (env: TestEnv, args: string[]) => ['--kubeconfig', env.kubeconfig, ...args];
export function kubectlIn(env: TestEnv, args: string[], input?: string): string {
  return run('kubectl', kubectlArgs(env, args), { input });
}


/** Imports an OCI archive into the node's containerd, for pods with imagePullPolicy Never/IfNotPresent. */
export function importImage(env: TestEnv, archive: string): void {
  run('ctr', ['--address', env.containerdSocket, '-n', 'k8s.io', 'images', 'import', '--all-platforms', archive]);
}

/** Starts the node in `dir`; must run inside its network namespace (main() re-executes itself there). */
export async function start(dir = defaultDir(), opts: { controlPlane?: ControlPlaneMode } = {}): Promise<TestEnv> {
  const t0 = performance.now();
  const say = (what: string) => process.stderr.write(`node: ${what} at ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  const node = nodeNameFor(dir);
  const netns = `kdr-${node}`;
  if (!insideNetns(netns)) throw new Error(`start() must run inside network namespace ${netns}: use 'bun scripts/cluster/node.ts start'`);
  const n = dir;
  for (const d of ['logs', 'run', 'cni/net.d', 'cni/ipam', 'kubelet', 'pki', 'manifests']) mkdirSync(join(n, d), { recursive: true });
  const pki = join(n, 'pki');
  makePki(pki, node, NODE_IP, SERVICE_IP);
  writeFileSync(join(n, 'tokens.csv'), `${ADMIN_TOKEN},admin,admin,system:masters\n`);
  const env: TestEnv = {
    dir: n, pki, node, netns, nodeIp: NODE_IP,
    etcdEndpoint: 'https://127.0.0.1:2379',
    apiserverUrl: `https://${NODE_IP}:6443`,
    s3Url: `https://${NODE_IP}:${S3_PORT}`,
    s3Server: s3ServerFromEnv(),
    kubeconfig: join(n, 'kubeconfig'),
    kubeconfigCert: join(n, 'kubeconfig-cert'),
    containerdSocket: join(n, 'run/containerd.sock'),
    bin: kubeBinDir(),
    procs: {},
  };
  writeFileSync(env.kubeconfig, kubeconfigYaml(env.apiserverUrl, join(pki, 'ca.crt'), { token: ADMIN_TOKEN }), { mode: 0o600 });
  writeComponentKubeconfigs(n, pki, env.apiserverUrl);
  writeFileSync(env.kubeconfigCert, readFileSync(join(n, 'admin.kubeconfig')), { mode: 0o600 });
  const go = (name: ProcName, cmd: string[]) => {
    env.procs[name] = startProc(n, name, cmd);
    saveState(env);
    return env.procs[name]!;
  };
  const staticPods = opts.controlPlane === 'static-pods';
  if (staticPods) env.controlPlane = 'static-pods';

  // etcd as kubeadm runs it: mTLS on loopback and on the node IP (where pods on the pod network reach it).
  const etcdLine = etcdCmd(n, pki, 'etcd', ['https://127.0.0.1:2379', `https://${NODE_IP}:2379`], 2380, true);
  const apiserverLine = apiserverCmd(env, env.etcdEndpoint, 6443, join(n, 'apiserver-certs'));
  const etcd = staticPods ? undefined : go('etcd', etcdLine);
  writeFileSync(join(n, 'containerd.toml'), containerdConfig(n));
  // CNI config first, so the runtime reports NetworkReady as soon as it starts.
  writeFileSync(join(n, 'cni/net.d/10-kdr-bridge.conflist'), cniConfig(n, node));
  // containerd and the kubelet share a mount namespace with a /var/log of this node's own (logMountNamespace).
  const inLogNs = logMountNamespace(n);
  const containerd = go('containerd', [...inLogNs, 'containerd', '--config', join(n, 'containerd.toml')]);
  // The S3 server's daemons; preparing them (keys, maps, file systems: about a second) overlaps etcd's start.
  const s3 = prepareS3(env.s3Server, n, pki).map(([name, cmd]) => go(name, cmd)).at(-1)!;
  const startKubelet = () => {
    saveSysctls();
    const cgroupRoot = `/kdr-${node}`;
    // The kubelet wants its cgroup root in every v1 controller; it makes the unified one itself.
    for (const c of cgroupHierarchies().filter((h) => !h.endsWith('/unified'))) mkdirSync(join(c, cgroupRoot), { recursive: true });
    writeFileSync(join(n, 'resolv.conf'), 'nameserver 127.0.0.1\n');
    return go('kubelet', [...inLogNs, ...kubeletCmd(env, node, cgroupRoot)]);
  };
  let apiserver: ProcState | undefined;
  if (etcd) {
    await waitFor('etcd', etcd, () => etcdReady(env.etcdEndpoint, pki), 60_000);
    say('etcd ready');
    apiserver = go('apiserver', apiserverLine);
  }
  await waitFor('containerd', containerd, () => tryRun('ctr', ['--address', env.containerdSocket, 'version']).status === 0, 60_000);
  importImage(env, join(env.bin, 'pause.tar'));
  say('containerd ready, pause image imported');
  // As on a kubeadm node, the kubelet comes first and starts etcd and kube-apiserver from their manifests; it registers
  // the node once the API server answers.
  const kubelet = staticPods ? startKubelet() : undefined;
  if (staticPods) {
    const images = controlPlaneImages(process.env.KUBEDR_ETCD || undefined);
    for (const archive of images.archives) importImage(env, archive);
    writeManifests(env, images.etcdImage, etcdLine, apiserverLine);
    say('control-plane images imported, manifests written');
  }
  await waitFor(env.s3Server, s3, () => s3Ready(env), 60_000);
  provisionS3(env.s3Server, n);
  say(`S3 (${env.s3Server}) ready`);
  if (staticPods) {
    await waitStaticPod(env, 'etcd', () => etcdReady(env.etcdEndpoint, pki), 90_000);
    say('etcd (static pod) ready');
    await waitStaticPod(env, 'apiserver', () => apiserverReady(env.apiserverUrl, pki), 120_000);
  } else {
    await waitFor('kube-apiserver', apiserver!, () => apiserverReady(env.apiserverUrl, pki), 120_000);
  }
  say(`kube-apiserver${staticPods ? ' (static pod)' : ''} ready`);

  const cmds = controlPlaneCmds(env, node);
  go('controller-manager', cmds['controller-manager']);
  go('scheduler', cmds.scheduler);
  const kubeletProc = kubelet ?? startKubelet();
  go('kube-proxy', cmds['kube-proxy']);
  await waitFor('kubelet', kubeletProc, () => nodeReady(env), 180_000);
  // The kubelet may not set node-role labels on itself (NodeRestriction): label it as kubeadm does, afterwards.
  kubectlIn(env, ['label', 'node', node, 'node-role.kubernetes.io/control-plane=', 'node-role.kubernetes.io/master=', '--overwrite']);
  say('node Ready');
  return env;
}

export async function stop(dir = defaultDir()): Promise<void> {
  if (existsSync(join(dir, 'state.json'))) {
    const env = loadEnv(dir);
    const p = env.procs;
    // The kubelet and the control plane first, so nothing restarts pods; then every container through containerd.
    for (const name of ['kube-proxy', 'kubelet', 'scheduler', 'controller-manager'] as const) await killProc(p[name]);
    const ctr = (...a: string[]) => tryRun('ctr', ['--address', env.containerdSocket, '-n', 'k8s.io', ...a]);
    if (p.containerd && isAlive(p.containerd.pid)) {
      const tasks = ctr('tasks', 'ls', '-q').stdout.split('\n').filter(Boolean);
      for (const t of tasks) ctr('tasks', 'kill', '-s', 'KILL', t);
      for (let i = 0; i < 20 && ctr('tasks', 'ls', '-q').stdout.trim(); i++) await Bun.sleep(100);
      for (const t of tasks) ctr('tasks', 'rm', '-f', t);
    }
    await killProc(p.containerd);
    // Shims of this containerd that outlived it (each names the socket in its arguments).
    for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (cmdline.startsWith('/usr/bin/containerd-shim') && cmdline.includes(env.containerdSocket)) process.kill(Number(pid), 'SIGKILL');
      } catch { /* gone */ }
    }
    for (const x of Object.values(env.extra ?? {})) await killProc(x);
    await killProc(p.apiserver);
    await killProc(p.s3);
    // Killed, not stopped: its data goes with the node's directory, a clean shutdown would only cost time.
    await killProc(p['ceph-osd'], 0);
    await killProc(p['ceph-mon']);
    await killProc(p.etcd);
    unmountUnder(dir);
    removeCgroups(`kdr-${env.node}`);
    removeHostLeftovers(env.node);
    tryRun('ip', ['netns', 'del', env.netns]);
    restoreSysctls();
  }
  rmSync(dir, { recursive: true, force: true });
  removeNetnsDir();
}

/**
 * Starts (or restarts, keeping its data) another etcd with the node's etcd certificates, for tests that stop etcd or
 * fill it without disturbing the API server's. Its data is `<dir>/<name>-data`; `ports` fixes its ports (a member
 * restored from a snapshot must listen on the peer URL it was restored with). Returns its client URL.
 */
export async function startExtraEtcd(env: TestEnv, name: string, ports?: { client: number; peer: number }, etcd?: string): Promise<string> {
  env.extra ??= {};
  const known = env.extra[name];
  const client = `https://127.0.0.1:${ports?.client ?? await freePort()}`;
  const cmd = known?.cmd ?? etcdCmd(env.dir, env.pki, name, [client], ports?.peer ?? await freePort());
  if (etcd && !known) cmd[0] = etcd;
  const endpoint = known?.endpoint ?? client;
  const p = startExtraProcess(env, name, cmd, endpoint);
  await waitFor(name, p, () => etcdReady(endpoint, env.pki), 30_000);
  return endpoint;
}

/**
 * Starts any command as an extra process of the node (logged, stopped with the node or by stopExtra), without waiting:
 * e.g. the members of a restored etcd cluster, which answer only once a quorum runs.
 */
export function startExtraProcess(env: TestEnv, name: string, cmd: string[], endpoint: string): ProcState {
  env.extra ??= {};
  const p = startProc(env.dir, name, cmd);
  env.extra[name] = { ...p, endpoint };
  saveState(env);
  return p;
}

/** Data directory of an extra etcd named `name`. */
export const extraEtcdDataDir = (env: TestEnv, name: string): string => join(env.dir, `${name}-data`);

/**
 * Starts another kube-apiserver (same PKI and admin token) on the etcd at `etcdEndpoint`, e.g. an extra etcd; returns
 * a kubeconfig for it. Stopped with the cluster, or by stopExtra. `flags` are added (e.g. an encryption config).
 */
export async function startExtraApiserver(env: TestEnv, name: string, etcdEndpoint: string, flags: string[] = []): Promise<string> {
  env.extra ??= {};
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const p = startProc(env.dir, name, [...apiserverCmd(env, etcdEndpoint, port, join(env.dir, `${name}-certs`)), ...flags]);
  env.extra[name] = { ...p, endpoint: url };
  saveState(env);
  await waitFor(name, p, () => apiserverReady(url, env.pki), 90_000);
  const kubeconfig = join(env.dir, `${name}.kubeconfig`);
  writeFileSync(kubeconfig, kubeconfigYaml(url, join(env.pki, 'ca.crt'), { token: ADMIN_TOKEN }), { mode: 0o600 });
  return kubeconfig;
}

/** Stops an extra etcd or API server; its data stays. */
export async function stopExtra(env: TestEnv, name: string): Promise<void> {
  await killProc(env.extra?.[name]);
}

/** Memory of the node's processes (RSS, MB), largest first: what the node costs the machine. */
export function nodeMemory(env: TestEnv): { name: string; mb: number }[] {
  const out: { name: string; mb: number }[] = [];
  for (const pid of tryRun('ip', ['netns', 'pids', env.netns]).stdout.split('\n').filter(Boolean)) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
      out.push({ name: /Name:\s+(\S+)/.exec(status)?.[1] ?? pid, mb: rss });
    } catch { /* gone */ }
  }
  return out.sort((a, b) => b.mb - a.mb);
}

const usage = `usage: bun scripts/cluster/node.ts start|stop|status|env|exec CMD...|stop-control-plane|start-control-plane [DIR]
  start   build (once) and start a real single-node Kubernetes in its own network namespace
  stop    stop it and remove its state directory and everything it left on the host
  stop-control-plane             stop kube-apiserver and etcd (a lost control plane; the kubelet keeps running)
  start-control-plane [DATA_DIR] etcd on DATA_DIR (e.g. restored by kubedr etcd-restore; with static pods, optional: the
                                 manifest as it is), kube-apiserver, then restart
                                 the other components as a kubeadm restore runbook does
  heal    start again etcd, kube-apiserver or S3 if a failed test left it stopped (wake S3 if frozen), and wait until it answers
  status  show its processes and their memory
  env     print how to reach it (kubectl inside the namespace)
  exec    run CMD inside the node's network namespace with KUBECONFIG set
State directory: $KUBEDR_TESTENV_DIR (default .testenv/). KUBEDR_CONTROL_PLANE=static-pods: etcd and kube-apiserver as
static pods of the kubelet, as kubeadm runs them (default: processes).
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const dir = resolve(defaultDir());
  const netns = `kdr-${nodeNameFor(dir)}`;
  const self = [process.execPath, import.meta.path];
  // These run inside the node's namespace: its processes, and the readiness checks on its addresses, live there.
  if (['start', 'stop-control-plane', 'start-control-plane', 'heal'].includes(cmd ?? '') && !insideNetns(netns)) {
    if (cmd === 'start') {
      await stop(dir);
      createNetns(netns, NODE_IP, SERVICE_CIDR);
    }
    const r = Bun.spawnSync(['nsenter', `--net=/run/netns/${netns}`, ...self, ...argv], { stdio: ['inherit', 'inherit', 'inherit'],
      env: { ...process.env, KUBEDR_TESTENV_DIR: dir } });
    if (cmd === 'start' && r.exitCode !== 0) await stop(dir);
    return r.exitCode ?? 1;
  }
  if (cmd === 'start') {
    const mode = process.env.KUBEDR_CONTROL_PLANE;
    if (mode && mode !== 'static-pods' && mode !== 'processes') throw new Error(`KUBEDR_CONTROL_PLANE=${mode}: static-pods or processes`);
    const env = await start(dir, { controlPlane: mode as ControlPlaneMode | undefined });
    console.log(`node ${env.node} Ready: apiserver ${env.apiserverUrl}, etcd ${env.etcdEndpoint}, s3 ${env.s3Url} (network namespace ${netns})`);
    return 0;
  }
  if (cmd === 'stop-control-plane') {
    await stopControlPlane(loadEnv(dir));
    return 0;
  }
  if (cmd === 'start-control-plane') {
    const t0 = performance.now();
    await startControlPlane(loadEnv(dir), rest[0] ? resolve(rest[0]) : undefined);
    console.log(`control plane up on etcd data ${rest[0] ?? '(as its manifest says)'}, node Ready after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return 0;
  }
  if (cmd === 'heal') {
    const t0 = performance.now();
    const started = await healControlPlane(loadEnv(dir));
    if (started.length) console.log(`started again what was left stopped: ${started.join(', ')} (answering after ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    return 0;
  }
  if (cmd === 'stop') {
    await stop(dir);
    return 0;
  }
  if (cmd === 'env') {
    const env = loadEnv(dir);
    console.log(`# the cluster's addresses exist only inside network namespace ${env.netns}:`);
    console.log(`nsenter --net=/run/netns/${env.netns} kubectl --kubeconfig ${env.kubeconfig} get nodes`);
    console.log(`# or: KUBEDR_TESTENV_DIR=${dir} bun scripts/cluster/node.ts exec kubectl get pods -A`);
    return 0;
  }
  if (cmd === 'status') {
    const env = loadEnv(dir);
    for (const [name, p] of Object.entries(env.procs)) console.log(`${name.padEnd(20)} pid ${p.pid}\t${isAlive(p.pid) ? 'running' : 'stopped'}`);
    const mem = nodeMemory(env);
    console.log(`memory: ${mem.reduce((s, m) => s + m.mb, 0).toFixed(0)} MB RSS over ${mem.length} processes`);
    return 0;
  }
  if (cmd === 'exec' && rest.length > 0) {
    const env = loadEnv(dir);
    const r = Bun.spawnSync(['nsenter', `--net=/run/netns/${env.netns}`, ...rest], { stdio: ['inherit', 'inherit', 'inherit'],
      env: { ...process.env, KUBECONFIG: env.kubeconfig, KUBEDR_TESTENV_DIR: dir } });
    return r.exitCode ?? 1;
  }
  process.stderr.write(usage);
  return cmd === '--help' || cmd === '-h' ? 0 : 2;
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));
