/**
 * @module A real local cluster for tests and the demo: etcd 3.4 on mutual TLS (as kubeadm runs it), kube-apiserver built
 * from Debian's source package, and an S3 endpoint (s3rver) over HTTPS, all on loopback with free ports.
 *
 *   bun scripts/testenv.ts start|stop|status|env
 *
 * State (certificates, data, logs, pids) lives in one directory, removed by `stop`. `start` first stops whatever an
 * earlier run left in that directory, so both are idempotent.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { isAlive } from '../src/util/process.ts';

const repoRoot = resolve(import.meta.dir, '..');

export const S3_ACCESS_KEY = 'S3RVER';
export const S3_SECRET_KEY = 'S3RVER';
export const ADMIN_TOKEN = 'kubedr-testenv-admin-token';

type ProcName = 'etcd' | 'apiserver' | 's3';

interface ProcState {
  pid: number;
  cmd: string[];
  log: string;
}

export interface TestEnv {
  dir: string;
  pki: string;
  etcdEndpoint: string;
  apiserverUrl: string;
  s3Url: string;
  /** kubeconfig with the admin bearer token. */
  kubeconfig: string;
  /** kubeconfig with an admin client certificate (system:masters). */
  kubeconfigCert: string;
  procs: Record<ProcName, ProcState>;
  /** Extra etcd servers started by tests (startExtraEtcd), stopped with the rest. */
  extra?: Record<string, ProcState & { endpoint: string }>;
}

export function defaultDir(): string {
  return process.env.KUBEDR_TESTENV_DIR ?? join(repoRoot, '.testenv');
}

function run(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** A port free on loopback right now (bound, then released). */
export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => ok(port));
    });
  });
}

/** One CA-signed certificate; `sans` like `IP:127.0.0.1,DNS:localhost`. */
function issue(pki: string, caName: string, name: string, subject: string, sans?: string): void {
  const key = join(pki, `${name}.key`);
  const csr = join(pki, `${name}.csr`);
  const ext = join(pki, `${name}.ext`);
  run('openssl', ['genrsa', '-out', key, '2048']);
  run('openssl', ['req', '-new', '-key', key, '-subj', subject, '-out', csr]);
  const lines = ['basicConstraints=CA:FALSE', 'keyUsage=digitalSignature,keyEncipherment',
    `extendedKeyUsage=${sans ? 'serverAuth,clientAuth' : 'clientAuth'}`];
  if (sans) lines.push(`subjectAltName=${sans}`);
  writeFileSync(ext, lines.join('\n') + '\n');
  run('openssl', ['x509', '-req', '-in', csr, '-CA', join(pki, `${caName}.crt`), '-CAkey', join(pki, `${caName}.key`),
    '-CAcreateserial', '-days', '30', '-sha256', '-extfile', ext, '-out', join(pki, `${name}.crt`)]);
  rmSync(csr);
  rmSync(ext);
}

function makeCa(pki: string, name: string, cn: string): void {
  run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', `/CN=${cn}`,
    '-keyout', join(pki, `${name}.key`), '-out', join(pki, `${name}.crt`),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

/** Certificates in kubeadm's layout: a cluster CA and a separate etcd CA under pki/etcd. */
function makePki(pki: string): void {
  mkdirSync(join(pki, 'etcd'), { recursive: true });
  const serverSans = 'IP:127.0.0.1,DNS:localhost';
  makeCa(pki, 'ca', 'kubernetes');
  makeCa(pki, 'etcd/ca', 'etcd-ca');
  issue(pki, 'etcd/ca', 'etcd/server', '/CN=localhost', serverSans);
  issue(pki, 'etcd/ca', 'etcd/healthcheck-client', '/O=system:masters/CN=kube-etcd-healthcheck-client');
  issue(pki, 'etcd/ca', 'apiserver-etcd-client', '/O=system:masters/CN=kube-apiserver-etcd-client');
  issue(pki, 'ca', 'apiserver', '/CN=kube-apiserver',
    `${serverSans},IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc`);
  issue(pki, 'ca', 'admin', '/O=system:masters/CN=kubernetes-admin');
  issue(pki, 'ca', 's3', '/CN=s3', serverSans);
  run('openssl', ['genrsa', '-out', join(pki, 'sa.key'), '2048']);
  run('openssl', ['rsa', '-in', join(pki, 'sa.key'), '-pubout', '-out', join(pki, 'sa.pub')]);
}

function b64(file: string): string {
  return readFileSync(file).toString('base64');
}

function kubeconfigYaml(server: string, caFile: string, user: Record<string, string>): string {
  const userLines = Object.entries(user).map(([k, v]) => `    ${k}: ${v}`).join('\n');
  return `apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: ${server}
    certificate-authority-data: ${b64(caFile)}
users:
- name: admin
  user:
${userLines}
contexts:
- name: testenv
  context: { cluster: testenv, user: admin }
current-context: testenv
`;
}

function startProc(dir: string, name: string, cmd: string[]): ProcState {
  const log = join(dir, 'logs', `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawn(cmd[0]!, cmd.slice(1), { detached: true, stdio: ['ignore', fd, fd] });
  child.unref();
  if (!child.pid) throw new Error(`could not start ${name}: ${cmd[0]}`);
  return { pid: child.pid, cmd, log };
}

async function killProc(p: ProcState | undefined): Promise<void> {
  if (!p || !isAlive(p.pid)) return;
  try { process.kill(-p.pid, 'SIGTERM'); } catch { try { process.kill(p.pid, 'SIGTERM'); } catch { /* gone */ } }
  for (let i = 0; i < 50 && isAlive(p.pid); i++) await Bun.sleep(100);
  if (isAlive(p.pid)) {
    try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
    for (let i = 0; i < 20 && isAlive(p.pid); i++) await Bun.sleep(100);
  }
}

async function waitFor(what: string, p: ProcState, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(p.pid)) {
      throw new Error(`${what} exited during start-up; last log lines:\n${tail(p.log)}`);
    }
    if (await check().catch(() => false)) return;
    await Bun.sleep(250);
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms; last log lines:\n${tail(p.log)}`);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

function apiserverBinary(): string {
  const path = run(join(repoRoot, 'scripts', 'build-apiserver.sh'), []).trim().split('\n').pop() ?? '';
  if (!existsSync(path)) throw new Error(`kube-apiserver binary not found at ${path}`);
  return path;
}

async function apiserverReady(env: Pick<TestEnv, 'apiserverUrl' | 'pki'>): Promise<boolean> {
  const res = await fetch(`${env.apiserverUrl}/readyz`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    tls: { ca: readFileSync(join(env.pki, 'ca.crt'), 'utf8') },
  });
  return res.status === 200;
}

async function etcdReady(env: Pick<TestEnv, 'etcdEndpoint' | 'pki'>): Promise<boolean> {
  const r = spawnSync('etcdctl', ['--endpoints', env.etcdEndpoint, '--cacert', join(env.pki, 'etcd/ca.crt'),
    '--cert', join(env.pki, 'etcd/healthcheck-client.crt'), '--key', join(env.pki, 'etcd/healthcheck-client.key'),
    '--command-timeout=2s', 'endpoint', 'health'], { env: { ...process.env, ETCDCTL_API: '3' } });
  return r.status === 0;
}

async function s3Ready(env: Pick<TestEnv, 's3Url' | 'pki'>): Promise<boolean> {
  const res = await fetch(env.s3Url, { tls: { ca: readFileSync(join(env.pki, 'ca.crt'), 'utf8') } });
  return res.status < 500;
}

function saveState(env: TestEnv): void {
  writeFileSync(join(env.dir, 'state.json'), JSON.stringify(env, null, 2));
}

export function loadEnv(dir = defaultDir()): TestEnv {
  const file = join(dir, 'state.json');
  if (!existsSync(file)) throw new Error(`no test cluster at ${dir}: run 'bun scripts/testenv.ts start' first`);
  return JSON.parse(readFileSync(file, 'utf8')) as TestEnv;
}

export async function stop(dir = defaultDir()): Promise<void> {
  if (existsSync(join(dir, 'state.json'))) {
    const env = loadEnv(dir);
    // The API server first, so it does not log a storm of etcd errors.
    await killProc(env.procs.apiserver);
    await killProc(env.procs.s3);
    await killProc(env.procs.etcd);
    for (const p of Object.values(env.extra ?? {})) await killProc(p);
  }
  rmSync(dir, { recursive: true, force: true });
}

function apiserverCmd(bin: string, dir: string, pki: string, etcdEndpoint: string, port: number): string[] {
  return [bin,
    `--etcd-servers=${etcdEndpoint}`,
    `--etcd-cafile=${join(pki, 'etcd/ca.crt')}`,
    `--etcd-certfile=${join(pki, 'apiserver-etcd-client.crt')}`,
    `--etcd-keyfile=${join(pki, 'apiserver-etcd-client.key')}`,
    `--secure-port=${port}`, '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1',
    `--tls-cert-file=${join(pki, 'apiserver.crt')}`, `--tls-private-key-file=${join(pki, 'apiserver.key')}`,
    `--client-ca-file=${join(pki, 'ca.crt')}`,
    `--cert-dir=${join(dir, 'apiserver-certs')}`,
    '--service-account-issuer=https://kubernetes.default.svc',
    `--service-account-key-file=${join(pki, 'sa.pub')}`,
    `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
    `--token-auth-file=${join(dir, 'tokens.csv')}`,
    '--authorization-mode=RBAC', '--service-cluster-ip-range=10.0.0.0/24',
    // There is no kubelet or controller-manager: nothing would ever create a pod's default ServiceAccount token.
    '--disable-admission-plugins=ServiceAccount',
    '--event-ttl=1h'];
}

export async function start(dir = defaultDir()): Promise<TestEnv> {
  await stop(dir);
  const pki = join(dir, 'pki');
  mkdirSync(join(dir, 'logs'), { recursive: true });
  makePki(pki);
  writeFileSync(join(dir, 'tokens.csv'), `${ADMIN_TOKEN},admin,admin,system:masters\n`);
  const bin = apiserverBinary();
  const [etcdPort, peerPort, apiPort, s3Port] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const etcdEndpoint = `https://127.0.0.1:${etcdPort}`;
  const env: TestEnv = {
    dir, pki, etcdEndpoint,
    apiserverUrl: `https://127.0.0.1:${apiPort}`,
    s3Url: `https://127.0.0.1:${s3Port}`,
    kubeconfig: join(dir, 'kubeconfig'),
    kubeconfigCert: join(dir, 'kubeconfig-cert'),
    procs: {} as Record<ProcName, ProcState>,
  };
  try {
    env.procs.etcd = startProc(dir, 'etcd', etcdCmd(dir, pki, 'default', etcdPort, peerPort));
    saveState(env);
    await waitFor('etcd', env.procs.etcd, () => etcdReady(env), 30_000);

    env.procs.s3 = startProc(dir, 's3', ['node', join(repoRoot, 'node_modules/s3rver/bin/s3rver.js'),
      '-d', join(dir, 's3-data'), '-a', '127.0.0.1', '-p', String(s3Port), '--silent',
      '--key', join(pki, 's3.key'), '--cert', join(pki, 's3.crt')]);
    mkdirSync(join(dir, 's3-data'), { recursive: true });
    saveState(env);

    env.procs.apiserver = startProc(dir, 'apiserver', apiserverCmd(bin, dir, pki, etcdEndpoint, apiPort));
    saveState(env);
    await waitFor('s3rver', env.procs.s3, () => s3Ready(env), 30_000);
    await waitFor('kube-apiserver', env.procs.apiserver, () => apiserverReady(env), 90_000);

    const ca = join(pki, 'ca.crt');
    writeFileSync(env.kubeconfig, kubeconfigYaml(env.apiserverUrl, ca, { token: ADMIN_TOKEN }), { mode: 0o600 });
    writeFileSync(env.kubeconfigCert, kubeconfigYaml(env.apiserverUrl, ca, {
      'client-certificate-data': b64(join(pki, 'admin.crt')),
      'client-key-data': b64(join(pki, 'admin.key')),
    }), { mode: 0o600 });
    saveState(env);
    return env;
  } catch (err) {
    await stop(dir);
    throw err;
  }
}

/** Stops the API server and starts it again with the same flags: watches break, the cluster's data stays. */
export async function restartApiserver(env: TestEnv, downMs = 0): Promise<void> {
  await killProc(env.procs.apiserver);
  if (downMs > 0) await Bun.sleep(downMs);
  env.procs.apiserver = startProc(env.dir, 'apiserver', env.procs.apiserver.cmd);
  saveState(env);
  await waitFor('kube-apiserver', env.procs.apiserver, () => apiserverReady(env), 90_000);
}

/** Stops or starts one of the cluster's processes, for failure tests. */
export async function stopProc(env: TestEnv, name: ProcName): Promise<void> {
  await killProc(env.procs[name]);
}

export async function startProcAgain(env: TestEnv, name: 'etcd' | 's3'): Promise<void> {
  env.procs[name] = startProc(env.dir, name, env.procs[name].cmd);
  saveState(env);
  const check = name === 'etcd' ? () => etcdReady(env) : () => s3Ready(env);
  await waitFor(name, env.procs[name], check, 30_000);
}

function etcdCmd(dir: string, pki: string, name: string, clientPort: number, peerPort: number): string[] {
  const endpoint = `https://127.0.0.1:${clientPort}`;
  return ['etcd', '--name', name, '--data-dir', join(dir, `${name}-data`),
    '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `${name}=http://127.0.0.1:${peerPort}`,
    '--cert-file', join(pki, 'etcd/server.crt'), '--key-file', join(pki, 'etcd/server.key'),
    '--client-cert-auth', '--trusted-ca-file', join(pki, 'etcd/ca.crt'), '--snapshot-count', '10000'];
}

/**
 * Starts (or restarts, keeping its data) another etcd with the cluster's etcd certificates, for tests that stop etcd or
 * fill it without disturbing the API server's. Its data is `<dir>/<name>-data`; `ports` fixes its ports (a member
 * restored from a snapshot must listen on the peer URL it was restored with). Returns its client URL.
 */
export async function startExtraEtcd(env: TestEnv, name: string, ports?: { client: number; peer: number }): Promise<string> {
  env.extra ??= {};
  const known = env.extra[name];
  const cmd = known?.cmd ?? etcdCmd(env.dir, env.pki, name, ports?.client ?? await freePort(), ports?.peer ?? await freePort());
  const endpoint = known?.endpoint ?? cmd[cmd.indexOf('--listen-client-urls') + 1]!;
  const p = startProc(env.dir, name, cmd);
  env.extra[name] = { ...p, endpoint };
  saveState(env);
  await waitFor(name, p, () => etcdReady({ etcdEndpoint: endpoint, pki: env.pki }), 30_000);
  return endpoint;
}

/** Data directory of an extra etcd named `name`. */
export const extraEtcdDataDir = (env: TestEnv, name: string): string => join(env.dir, `${name}-data`);

/**
 * Starts another kube-apiserver (same PKI and admin token) on the etcd at `etcdEndpoint`, e.g. an extra etcd; returns
 * a kubeconfig for it. Stopped with the cluster, or by stopExtra.
 */
export async function startExtraApiserver(env: TestEnv, name: string, etcdEndpoint: string): Promise<string> {
  env.extra ??= {};
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const p = startProc(env.dir, name, apiserverCmd(apiserverBinary(), env.dir, env.pki, etcdEndpoint, port));
  env.extra[name] = { ...p, endpoint: url };
  saveState(env);
  await waitFor(name, p, () => apiserverReady({ apiserverUrl: url, pki: env.pki }), 90_000);
  const kubeconfig = join(env.dir, `${name}.kubeconfig`);
  writeFileSync(kubeconfig, kubeconfigYaml(url, join(env.pki, 'ca.crt'), { token: ADMIN_TOKEN }), { mode: 0o600 });
  return kubeconfig;
}

/** Stops an extra etcd or API server; its data stays. */
export async function stopExtra(env: TestEnv, name: string): Promise<void> {
  await killProc(env.extra?.[name]);
}

if (import.meta.main) {
  const [cmd] = process.argv.slice(2);
  const dir = defaultDir();
  if (cmd === 'start') {
    const env = await start(dir);
    console.log(`test cluster up: apiserver ${env.apiserverUrl}, etcd ${env.etcdEndpoint}, s3 ${env.s3Url}`);
    console.log(`export KUBECONFIG=${env.kubeconfig}`);
  } else if (cmd === 'stop') {
    await stop(dir);
  } else if (cmd === 'env') {
    const env = loadEnv(dir);
    console.log(`export KUBECONFIG=${env.kubeconfig}`);
  } else if (cmd === 'status') {
    const env = loadEnv(dir);
    for (const [name, p] of Object.entries(env.procs)) console.log(`${name}\tpid ${p.pid}\t${isAlive(p.pid) ? 'running' : 'stopped'}`);
  } else {
    console.error('usage: bun scripts/testenv.ts start|stop|status|env\n' +
      '  start   build (once) and start etcd (mTLS), kube-apiserver and S3 (HTTPS) on free loopback ports\n' +
      '  stop    stop them and remove the state directory ($KUBEDR_TESTENV_DIR, default .testenv/)\n' +
      '  status  show the processes\n  env     print the KUBECONFIG export line');
    process.exit(cmd === '--help' || cmd === '-h' ? 0 : 2);
  }
}
