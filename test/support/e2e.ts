/**
 * @module Helpers for end-to-end tests against the real single-node cluster that `npm test` starts
 * (scripts/cluster/node.ts; tests run inside its network namespace): kubectl as a user runs it, an `eventually` poller,
 * the controller as a real child process with its output captured, the kubedr image in the node's containerd, and
 * claims bound to hostPath volumes by the controller-manager.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pkg from '../../package.json' with { type: 'json' };
import { expect } from 'bun:test';
import { BACKUP_NOW_ANNOTATION, COMPONENT } from '../../src/api/group.ts';
import type { BackupLocation, KubeEvent, KubeObject, MetadataBackupPolicy } from '../../src/api/types.ts';
import type { Repository } from '../../src/engine/restic.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, type TestEnv, freePort, importImage, loadEnv } from '../../scripts/cluster/node.ts';
import { STATIC_START_MS } from '../../scripts/cluster/static-control-plane.ts';

export { freePort };

export const repoRoot = resolve(import.meta.dir, '../..');

let cached: TestEnv | undefined;
/** The running local cluster; `npm test` starts it (bun scripts/testenv.ts start for a single file). */
export function cluster(): TestEnv {
  cached ??= loadEnv();
  return cached;
}

/**
 * The suite's kubeconfig with its user entry replaced by `userYaml` (lines indented four spaces), and optionally another
 * CA or a proxy-url in its cluster entry, written to `file`.
 */
export function kubeconfigWithUser(file: string, userYaml: string, opts: { caData?: string; proxyUrl?: string } = {}): string {
  let text = readFileSync(cluster().kubeconfig, 'utf8')
    .replace(/users:\n- name: admin\n  user:\n[\s\S]*?\ncontexts:/, `users:\n- name: admin\n  user:\n${userYaml}\ncontexts:`);
  if (opts.caData) text = text.replace(/certificate-authority-data: \S+/, `certificate-authority-data: ${opts.caData}`);
  if (opts.proxyUrl) text = text.replace(/(\n    server: \S+)/, `$1\n    proxy-url: ${opts.proxyUrl}`);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

export function admin(): KubeClient {
  return KubeClient.load({ kubeconfig: cluster().kubeconfig, fieldManager: 'e2e' });
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function kubectl(args: string[], input?: string): Run {
  const r = spawnSync('kubectl', args, {
    input, encoding: 'utf8', env: { ...process.env, KUBECONFIG: cluster().kubeconfig },
  });
  // kubectl 1.32 warns about its version skew to this 1.20 server on every call; that is noise here.
  const stderr = (r.stderr ?? '').split('\n').filter((l) => !l.includes('version difference')).join('\n').trim();
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr };
}

export function apply(yaml: string, namespace?: string): void {
  const r = kubectl(['apply', ...(namespace ? ['-n', namespace] : []), '-f', '-'], yaml);
  if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
}

export function getJson<T = KubeObject>(args: string[]): T {
  const r = kubectl(['get', ...args, '-o', 'json']);
  if (r.code !== 0) throw new Error(`kubectl get ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Polls `fn` until it returns without throwing, like Gomega's Eventually; the last error explains a timeout. */
export async function eventually<T>(fn: () => T | Promise<T>, timeoutMs = 60_000, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await fn();
    } catch (err) {
      last = err;
    }
    await Bun.sleep(intervalMs);
  }
  throw new Error(`not true within ${timeoutMs} ms: ${last instanceof Error ? last.message : String(last)}`);
}

let image: string | undefined;
/** The kubedr image of this tree (scripts/build-image.sh, dist/kubedr-image.tar), in the node's containerd; built once per run. */
/** `kubedr ARGS` from this tree, as a user runs it against the test cluster ($KUBECONFIG set to it). */
export async function kubedrCli(args: string[]): Promise<Run> {
  const proc = Bun.spawn([process.execPath, join(repoRoot, 'src/main.ts'), ...args], { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe',
    env: { ...process.env, KUBECONFIG: cluster().kubeconfig } });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

export function kubedrImage(): string {
  if (image) return image;
  const build = spawnSync(join(repoRoot, 'scripts/build-image.sh'), { encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`build-image.sh failed: ${build.stderr}`);
  importImage(cluster(), join(repoRoot, 'dist/kubedr-image.tar'));
  image = `localhost/kubedr:${pkg.version}`;
  return image;
}

/**
 * Values that install the chart on the test node: this tree's image (never pulled), the node's PKI directory, a
 * metrics port of the node's own (host network: one per install that may overlap another), and no prometheus-operator
 * objects (the node has none; test/e2e/helm-chart.test.ts checks them).
 */
export function chartTestValues(metricsPort: number): Record<string, unknown> {
  return {
    image: { repository: kubedrImage().split(':')[0], tag: pkg.version, pullPolicy: 'Never' },
    certsHostPaths: [cluster().pki],
    metrics: { port: metricsPort },
    monitoring: { serviceMonitor: { enabled: false }, prometheusRule: { enabled: false }, dashboard: { enabled: false } },
    logLevel: 'debug',
  };
}

/**
 * A claim that the controller-manager's PV binder binds to a hostPath volume at `dir` (created with `mode`; local-path
 * provisioners make theirs 0777). The volume is pre-bound to the claim (claimRef), as an administrator would. Returns
 * the PersistentVolume's name: it is cluster-scoped, so delete it after the test.
 */
export async function hostPathClaim(ns: string, name: string, dir: string, mode = 0o777): Promise<string> {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, mode);
  const pv = `${ns}-${name}`.slice(0, 253);
  apply(`apiVersion: v1
kind: PersistentVolume
metadata: { name: ${pv} }
spec:
  capacity: { storage: 1Gi }
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: manual
  claimRef: { namespace: ${ns}, name: ${name} }
  hostPath: { path: ${dir}, type: Directory }
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: { name: ${name}, namespace: ${ns} }
spec: { accessModes: [ReadWriteOnce], storageClassName: manual, resources: { requests: { storage: 1Gi } } }
`);
  await eventually(() => expect(kubectl(['get', 'pvc', name, '-n', ns, '-o', 'jsonpath={.status.phase}']).stdout).toBe('Bound'), 60_000);
  return pv;
}

/** The CustomResourceDefinitions of crds/, by name. */
export const KUBEDR_CRDS = ['backuplocations', 'metadatabackuppolicies', 'metadatabackuprecords', 'metadatarestores']
  .map((plural) => `${plural}.kubedr.catalogicsoftware.com`);

let crdsInstalled = false;
/**
 * Applies crds/ (idempotent) and waits until the API serves every kind. `reapply`: apply them even if this process did
 * already (a test that deleted the CRDs puts them back for the files after it).
 */
export function ensureCrds(opts: { reapply?: boolean } = {}): void {
  if (crdsInstalled && !opts.reapply) return;
  const r = kubectl(['apply', '-f', join(repoRoot, 'crds')]);
  if (r.code !== 0) throw new Error(`installing CRDs failed: ${r.stderr}`);
  const w = kubectl(['wait', '--for=condition=Established', '--timeout=60s', ...KUBEDR_CRDS.map((c) => `crd/${c}`)]);
  if (w.code !== 0) throw new Error(`CRDs not established: ${w.stderr}`);
  crdsInstalled = true;
}

let nsCounter = 0;
/** A fresh namespace for one test file, so files do not see each other's objects. */
export function createNamespace(prefix: string): string {
  const name = `${prefix}-${Date.now().toString(36)}-${nsCounter++}`;
  const r = kubectl(['create', 'namespace', name]);
  if (r.code !== 0) throw new Error(`create namespace: ${r.stderr}`);
  return name;
}

export function deleteNamespace(name: string): void {
  kubectl(['delete', 'namespace', name, '--wait=false']);
}

/**
 * Removes what installing the chart as `release` into `ns` made: the namespace, and the cluster-scoped ClusterRole and
 * ClusterRoleBinding (`<release>-<namespace>`) that a namespace deletion leaves behind (helm uninstall would remove them).
 */
export function deleteInstall(ns: string, release = 'kubedr'): void {
  deleteNamespace(ns);
  kubectl(['delete', 'clusterrole,clusterrolebinding', `${release}-${ns}`, '--ignore-not-found']);
}

/** A bucket name no other test uses. */
export function uniqueBucket(prefix = 'b'): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

export interface LocationSecret {
  name: string;
  password: string;
  accessKey?: string;
  secretKey?: string;
  /** Put the test CA in `ca.crt` (default true). */
  withCa?: boolean;
  omit?: string[];
}

export function locationSecretYaml(ns: string, s: LocationSecret): string {
  const data: Record<string, string> = {
    access_key: s.accessKey ?? S3_ACCESS_KEY,
    secret_key: s.secretKey ?? S3_SECRET_KEY,
    restic_repo_password: s.password,
  };
  if (s.withCa !== false) data['ca.crt'] = readFileSync(join(cluster().pki, 'ca.crt'), 'utf8');
  for (const k of s.omit ?? []) delete data[k];
  const lines = Object.entries(data).map(([k, v]) => `  ${k}: ${Buffer.from(v).toString('base64')}`);
  return `apiVersion: v1\nkind: Secret\nmetadata: { name: ${s.name}, namespace: ${ns} }\ntype: Opaque\ndata:\n${lines.join('\n')}\n`;
}

export function locationYaml(ns: string, name: string, spec: { url?: string; bucketName: string; credentials: string }): string {
  return `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: BackupLocation
metadata: { name: ${name}, namespace: ${ns} }
spec:
  url: ${JSON.stringify(spec.url ?? cluster().s3Url)}
  bucketName: ${JSON.stringify(spec.bucketName)}
  credentials: ${spec.credentials}
`;
}

/** Waits until the BackupLocation's initialisation reached `want` (Completed by default, or Failed). */
export async function locationInit(ns: string, name: string, want: 'Completed' | 'Failed' = 'Completed'): Promise<void> {
  try {
    await eventually(() => expect(getJson<BackupLocation>(['bl', name, '-n', ns]).status?.initStatus).toBe(want));
  } catch (err) {
    // What the location says and what was reported about it: the first thing anyone reads when this fails.
    const status = JSON.stringify(getJson<BackupLocation>(['bl', name, '-n', ns]).status ?? {});
    const said = events(ns, name).map((e) => `${e.reason}: ${e.message}`).join('; ');
    throw new Error(`${err instanceof Error ? err.message : String(err)}; status ${status}; events: ${said || 'none'}`);
  }
}

export function events(ns: string, objectName?: string): KubeEvent[] {
  const list = getJson<{ items: KubeEvent[] }>(['events', '-n', ns]);
  return list.items.filter((e) => e.source?.component === COMPONENT && (!objectName || e.involvedObject.name === objectName));
}

/** Every controller a test started and has not seen exit: killed when the test process exits, however it exits. */
const live = new Set<{ kill(signal?: number | NodeJS.Signals): void }>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/**
 * Leader-election flags for a test about something else than failover that restarts the API server: a lease that
 * outlasts the longest restart the test node allows (the kubelet may take minutes to start a static pod again:
 * STATIC_START_MS), so the controller stays the leader instead of stepping down and exiting half-way.
 */
export function leaseOutlastingRestarts(retryPeriod = '1s'): string[] {
  const renew = STATIC_START_MS / 1000 + 60;
  return ['--leader-elect-lease-duration', `${renew + 30}s`, '--leader-elect-renew-deadline', `${renew}s`, '--leader-elect-retry-period', retryPeriod];
}

/**
 * Leader-election flags for the tests about failover, and for those that kill a controller and start another: a short
 * lease (a successor waits out the killed holder's lease duration) and a 3 s renew deadline. Only these tests get them:
 * under load (two test nodes, a browse pod starting) a renewal can miss 3 s, and a controller that loses its lease exits,
 * which a test harness does not restart as a kubelet would. Every other test runs with the chart's timings.
 */
export const FAILOVER_TIMINGS = ['--leader-elect-lease-duration', '4s', '--leader-elect-renew-deadline', '3s', '--leader-elect-retry-period', '500ms'];

/** A test's time limit that allows for one API server restart on top of `ms`. */
export const withRestart = (ms: number) => ms + STATIC_START_MS;

/** The controller as a real child process, as a user runs it, with stdout and stderr captured. */
export class ControllerProcess {
  private output = '';
  private done: Promise<number>;
  /** Set when the test stops or kills the controller; an exit without it is reported (see the constructor). */
  private ended = false;
  port = 0;

  private constructor(private readonly proc: ReturnType<typeof Bun.spawn<'ignore', 'pipe', 'pipe'>>) {
    const collect = async (s: ReadableStream<Uint8Array>) => {
      const d = new TextDecoder();
      for await (const c of s) this.output += d.decode(c, { stream: true });
    };
    live.add(proc);
    this.done = Promise.all([collect(proc.stdout), collect(proc.stderr)]).then(() => proc.exited).finally(() => live.delete(proc));
    // A controller that exits on its own (a lost lease, a crash) makes every later wait of the test time out with no
    // word of why: say so when it happens, with its last words.
    void this.done.then((code) => {
      if (this.ended) return;
      const last = this.output.trimEnd().split('\n').filter((l) => !l.includes('"level":"debug"')).slice(-12).join('\n');
      console.error(`the controller (pid ${proc.pid}) exited by itself with code ${code}; its last lines:\n${last}`);
    });
  }

  /**
   * Starts `kubedr controller` for `namespace` with short test timings, and the chart's leader-election timings (15 s
   * lease, 10 s renew deadline, 2 s retry) unless `extraArgs` bring others (FAILOVER_TIMINGS, leaseOutlastingRestarts:
   * a later flag wins). `opts.kubeconfig: null` gives it no kubeconfig
   * (in-cluster credentials); `opts.prefix` wraps the command (e.g. in `unshare`); `opts.env` replaces the environment;
   * `opts.startTimeoutMs` is how long it may take to serve (30 s; it waits for the API server first).
   */
  static async start(namespace: string, extraArgs: string[] = [],
    opts: { kubeconfig?: string | null; prefix?: string[]; env?: Record<string, string>; startTimeoutMs?: number } = {}): Promise<ControllerProcess> {
    const kubeconfig = opts.kubeconfig === undefined ? cluster().kubeconfig : opts.kubeconfig;
    const proc = Bun.spawn([...(opts.prefix ?? []), process.execPath, join(repoRoot, 'src/main.ts'), 'controller',
      ...(kubeconfig ? ['--kubeconfig', kubeconfig] : []),
      '--namespace', namespace, '--http-port', '0', '--http-address', '127.0.0.1', '--log-level', 'debug',
      '--leader-elect-lease-duration', '15s', '--leader-elect-renew-deadline', '10s', '--leader-elect-retry-period', '2s',
      '--shutdown-timeout', '10s', '--location-retry-base', '2s', '--forget-retry', '3s', ...extraArgs],
    { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', env: opts.env ?? process.env });
    const c = new ControllerProcess(proc);
    await eventually(() => {
      const m = /"msg":"serving metrics and health"[^\n]*"address":"[^"]*:(\d+)"/.exec(c.output);
      if (!m) throw new Error(`controller has not started serving; output so far:\n${c.output.slice(-2000)}`);
      c.port = Number(m[1]);
    }, opts.startTimeoutMs ?? 30_000);
    return c;
  }

  get logs(): string {
    return this.output;
  }

  /** The controller's process id (its restic runs are its children). */
  get pid(): number {
    return this.proc.pid;
  }

  logLines(): Record<string, unknown>[] {
    return this.output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async get(path: string): Promise<Response> {
    return fetch(`http://127.0.0.1:${this.port}${path}`);
  }

  async metrics(): Promise<string> {
    return (await this.get('/metrics')).text();
  }

  /** SIGTERM and wait for exit; returns the exit code. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<number> {
    this.ended = true;
    this.proc.kill(signal);
    return this.done;
  }

  /** Freezes (SIGSTOP) or wakes (SIGCONT) the controller process alone; its restic children go on. */
  signal(sig: 'SIGSTOP' | 'SIGCONT'): void {
    this.proc.kill(sig);
  }

  /** SIGKILL to the whole process group (start it with prefix ['setsid']): restic children die with it, as in a container. */
  async killGroup(): Promise<number> {
    this.ended = true;
    process.kill(-this.proc.pid, 'SIGKILL');
    return this.done;
  }

  get exited(): Promise<number> {
    return this.done;
  }
}

/** The value of one sample line in Prometheus text format, or undefined. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return undefined;
}

/** etcdctl against `endpoint` (default: the cluster's etcd) with the etcd client certificate. */
export function etcdctl(args: string[], endpoint = cluster().etcdEndpoint, input?: string): Run {
  const pki = cluster().pki;
  const r = spawnSync('etcdctl', ['--endpoints', endpoint, '--cacert', join(pki, 'etcd/ca.crt'),
    '--cert', join(pki, 'etcd/healthcheck-client.crt'), '--key', join(pki, 'etcd/healthcheck-client.key'), ...args],
  { input, encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' }, maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Fills an etcd with `mb` MB of incompressible values, so its snapshot and upload take measurable time. */
export function fillEtcd(endpoint: string, mb: number, prefix = '/fill/'): void {
  for (let i = 0; i < mb; i++) {
    // 1 MiB of base64 per key (from 768 KiB of random bytes): under etcd's 1.5 MiB request limit.
    const value = Buffer.from(crypto.getRandomValues(new Uint8Array(768 * 1024))).toString('base64');
    const r = etcdctl(['put', `${prefix}${i}`], endpoint, value);
    if (r.code !== 0) throw new Error(`etcdctl put failed: ${r.stderr}`);
  }
}

/**
 * Gives the keys fillEtcd wrote new random values and drops the old ones (compaction, then defragmentation), so the
 * next backup has all `mb` MB to upload again, not just the few MB restic finds changed, and the snapshot keeps its size.
 */
export function refillEtcd(endpoint: string, mb: number, prefix = '/fill/'): void {
  fillEtcd(endpoint, mb, prefix);
  const status = JSON.parse(etcdctl(['endpoint', 'status', '-w', 'json'], endpoint).stdout) as { Status: { header: { revision: number } } }[];
  // Defragmenting a few hundred MB under load takes longer than etcdctl's default 5 s (it failed so in a full run).
  for (const args of [['compact', String(status[0]!.Status.header.revision)], ['defrag', '--command-timeout=120s']]) {
    const r = etcdctl(args, endpoint);
    if (r.code !== 0) throw new Error(`etcdctl ${args[0]} failed: ${r.stderr}`);
  }
}

/** A bucket of the test S3 endpoint as the engine opens it: the node's S3 keys and CA, and the repository password. */
export function nodeRepository(bucket: string, password: string): Repository {
  return { address: `s3:${cluster().s3Url}/${bucket}`, accessKey: S3_ACCESS_KEY, secretKey: S3_SECRET_KEY, password, caCert: pem('ca.crt') };
}

/** A ConfigMap's value in a (restored) etcd: Kubernetes stores protobuf, the data is in it as plain text; '' if absent. */
export function configMapInEtcd(endpoint: string, namespace: string, name: string): string {
  return etcdctl(['get', `/registry/configmaps/${namespace}/${name}`, '--print-value-only'], endpoint).stdout;
}

/** restic against a bucket of the test S3 endpoint, with the node's S3 keys or the given ones (test/support/s3.ts). */
export function resticAt(bucket: string, password: string, args: string[],
  keys: { accessKey: string; secretKey: string } = { accessKey: S3_ACCESS_KEY, secretKey: S3_SECRET_KEY }): Run {
  const env = cluster();
  const r = spawnSync('restic', ['--no-cache', '--cacert', join(env.pki, 'ca.crt'), '-r', `s3:${env.s3Url}/${bucket}`, ...args], {
    encoding: 'utf8', env: { ...process.env, AWS_ACCESS_KEY_ID: keys.accessKey, AWS_SECRET_ACCESS_KEY: keys.secretKey, RESTIC_PASSWORD: password },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * A streamed backup read back by hand, as docs/backups.md tells a user without kubedr: `restic dump <id>
 * /kubedr-backup.tar`, then GNU tar extracts it into `target` (which then holds `data/…`).
 */
export function extractArchiveByHand(bucket: string, password: string, snapshotId: string, target: string,
  keys: { accessKey: string; secretKey: string } = { accessKey: S3_ACCESS_KEY, secretKey: S3_SECRET_KEY }): void {
  const env = cluster();
  mkdirSync(target, { recursive: true });
  const tar = join(target, 'backup.tar');
  const fd = openSync(tar, 'w', 0o600);
  try {
    const r = spawnSync('restic', ['--no-cache', '--cacert', join(env.pki, 'ca.crt'), '-r', `s3:${env.s3Url}/${bucket}`, 'dump', snapshotId,
      '/kubedr-backup.tar'], { stdio: ['ignore', fd, 'pipe'], env: { ...process.env, AWS_ACCESS_KEY_ID: keys.accessKey,
      AWS_SECRET_ACCESS_KEY: keys.secretKey, RESTIC_PASSWORD: password } });
    if (r.status !== 0) throw new Error(`restic dump failed: ${r.stderr}`);
  } finally {
    closeSync(fd);
  }
  const x = spawnSync('tar', ['-xf', tar, '-C', target], { encoding: 'utf8' });
  rmSync(tar);
  if (x.status !== 0) throw new Error(`tar -x failed: ${x.stderr}`);
}

/**
 * Restores an etcd snapshot file into a new data directory and starts a throwaway etcd on it (plain http on free
 * loopback ports), to read what the snapshot holds. Returns its endpoint and a stop function.
 */
export async function bootSnapshot(snapshotFile: string, dir: string): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  const [client, peer] = [await freePort(), await freePort()];
  const peerUrl = `http://127.0.0.1:${peer}`;
  const restore = spawnSync('etcdctl', ['snapshot', 'restore', snapshotFile, '--data-dir', join(dir, 'restored'), '--name', 'restored',
    '--initial-cluster', `restored=${peerUrl}`, '--initial-advertise-peer-urls', peerUrl],
  { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
  if (restore.status !== 0) throw new Error(`etcdctl snapshot restore failed: ${restore.stderr}`);
  const endpoint = `http://127.0.0.1:${client}`;
  const proc = Bun.spawn(['etcd', '--name', 'restored', '--data-dir', join(dir, 'restored'), '--listen-client-urls', endpoint,
    '--advertise-client-urls', endpoint, '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', `restored=${peerUrl}`], { stdout: 'ignore', stderr: 'ignore' });
  live.add(proc);
  await eventually(() => {
    const r = spawnSync('etcdctl', ['--endpoints', endpoint, 'endpoint', 'health'], { env: { ...process.env, ETCDCTL_API: '3' } });
    if (r.status !== 0) throw new Error('restored etcd not healthy yet');
  }, 30_000);
  return { endpoint, stop: async () => { proc.kill(); await proc.exited; live.delete(proc); } };
}

/** A file of the test cluster's PKI. */
export const pem = (f: string) => readFileSync(join(cluster().pki, f), 'utf8');

/** An etcdCreds Secret from the cluster's PKI files (default: etcd's CA and the healthcheck client), without `omit` keys. */
export function etcdSecretYaml(ns: string, name: string, files: { ca: string; cert: string; key: string } | null = null, omit: string[] = []): string {
  const f = files ?? { ca: 'etcd/ca.crt', cert: 'etcd/healthcheck-client.crt', key: 'etcd/healthcheck-client.key' };
  const data: Record<string, string> = { 'ca.crt': pem(f.ca), 'client.crt': pem(f.cert), 'client.key': pem(f.key) };
  for (const k of omit) delete data[k];
  const lines = Object.entries(data).map(([k, v]) => `  ${k}: ${Buffer.from(v).toString('base64')}`);
  return `apiVersion: v1\nkind: Secret\nmetadata: { name: ${name}, namespace: ${ns} }\ndata:\n${lines.join('\n')}\n`;
}

export interface PolicySpec {
  destination?: string;
  certsDir?: string;
  etcdEndpoint?: string;
  etcdCreds?: string;
  schedule?: string;
  retainNumBackups?: number;
  suspend?: boolean;
  verification?: MetadataBackupPolicy['spec']['verification'];
  continuous?: MetadataBackupPolicy['spec']['continuous'];
}

/** A policy backing up the test cluster's etcd and PKI to location `loc` with etcdCreds `etcd-creds`, once a year unless asked. */
export function policyYaml(ns: string, name: string, spec: PolicySpec = {}): string {
  const full = {
    destination: 'loc', certsDir: cluster().pki, etcdEndpoint: cluster().etcdEndpoint, etcdCreds: 'etcd-creds',
    schedule: '0 0 1 1 *', ...spec,
  };
  return `apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataBackupPolicy
metadata: { name: ${name}, namespace: ${ns} }
spec: ${JSON.stringify(full)}
`;
}

let triggerNo = 0;
/** Sets backup-now to a new value and waits for that backup to finish; returns the policy as it then is. */
export async function backupNow(ns: string, name: string, timeoutMs = 60_000): Promise<MetadataBackupPolicy> {
  const value = `t${++triggerNo}`;
  const r = kubectl(['annotate', 'mbp', name, '-n', ns, '--overwrite', `${BACKUP_NOW_ANNOTATION}=${value}`]);
  if (r.code !== 0) throw new Error(r.stderr);
  return eventually(() => {
    const p = getJson<MetadataBackupPolicy>(['mbp', name, '-n', ns]);
    if (p.status?.backupNowServed !== value || p.status.backupStatus === 'Running') throw new Error(JSON.stringify(p.status));
    return p;
  }, timeoutMs);
}
