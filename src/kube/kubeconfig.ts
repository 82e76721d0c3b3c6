/**
 * @module Where the API server is and how to authenticate to it: a kubeconfig (kubectl's rules for finding and merging
 * files) or the in-cluster ServiceAccount, turned into TLS options and headers for Bun's fetch. Our own, not
 * client-node's KubeConfig: that one loads the whole generated API, undici and the OIDC client with it, about 19 MB of
 * resident memory in a controller that idled at 65 MB with it (issue 14).
 */
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';

export interface TlsOptions {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized?: boolean;
  serverName?: string;
}

export interface RequestAuth {
  tls: TlsOptions;
  headers: Record<string, string>;
}

/** The API server and the credentials for one request; credentials that expire or rotate are read again as needed. */
export interface ClusterAccess {
  server: string;
  auth(): Promise<RequestAuth>;
}

export interface LoadOptions {
  /** A kubeconfig file; else $KUBECONFIG, ~/.kube/config, then the in-cluster ServiceAccount. */
  kubeconfig?: string;
  /** A context of the kubeconfig; else its current-context. */
  context?: string;
  env?: Record<string, string | undefined>;
  home?: string;
  /** Where the ServiceAccount's token, ca.crt and namespace are mounted in a pod. */
  serviceAccountDir?: string;
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** How long a token or certificate read from a file is used before the file is read again, as client-go does. */
const FILE_REFRESH_MS = 60_000;

interface ExecConfig {
  command: string;
  args?: string[];
  env?: { name: string; value: string }[] | null;
  apiVersion?: string;
}

/** The kubeconfig fields we act on, as kubectl spells them. */
interface ClusterEntry {
  server?: string;
  'certificate-authority'?: string;
  'certificate-authority-data'?: string;
  'insecure-skip-tls-verify'?: boolean;
  'tls-server-name'?: string;
}

interface UserEntry {
  'client-certificate'?: string;
  'client-certificate-data'?: string;
  'client-key'?: string;
  'client-key-data'?: string;
  token?: string;
  tokenFile?: string;
  username?: string;
  password?: string;
  exec?: ExecConfig;
  'auth-provider'?: { name?: string };
}

interface ContextEntry {
  cluster?: string;
  user?: string;
}

interface Named<T> {
  name: string;
  entry: T;
  /** The file it came from: relative paths in it are relative to that file's directory. */
  dir: string;
}

interface Merged {
  clusters: Map<string, Named<ClusterEntry>>;
  users: Map<string, Named<UserEntry>>;
  contexts: Map<string, Named<ContextEntry>>;
  currentContext?: string;
}

/** A kubeconfig file parsed into `into`; as kubectl merges, the first file to name a cluster, user or context wins. */
function mergeFile(path: string, into: Merged): void {
  let doc: unknown;
  try {
    doc = Bun.YAML.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read kubeconfig ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const config = (doc ?? {}) as Record<string, unknown>;
  const dir = dirname(path);
  const add = <T>(list: unknown, key: string, map: Map<string, Named<T>>) => {
    if (!Array.isArray(list)) return;
    for (const item of list as { name?: string; [k: string]: unknown }[]) {
      if (!item?.name || map.has(item.name)) continue;
      map.set(item.name, { name: item.name, entry: (item[key] ?? {}) as T, dir });
    }
  };
  add(config.clusters, 'cluster', into.clusters);
  add(config.users, 'user', into.users);
  add(config.contexts, 'context', into.contexts);
  if (!into.currentContext && typeof config['current-context'] === 'string' && config['current-context']) {
    into.currentContext = config['current-context'];
  }
}

/** A value read from a file, read again when older than FILE_REFRESH_MS (rotated tokens and certificates). */
function refreshingFile(path: string, now: () => number): () => string {
  let cached: { text: string; at: number } | undefined;
  return () => {
    if (!cached || now() - cached.at >= FILE_REFRESH_MS) cached = { text: readFileSync(path, 'utf8'), at: now() };
    return cached.text;
  };
}

const fromBase64 = (data: string) => Buffer.from(data, 'base64').toString('utf8');
const resolvePath = (dir: string, path: string) => (isAbsolute(path) ? path : join(dir, path));

/** One of data or file: the inline base64 data, else the file (relative to the kubeconfig), else nothing. */
function material(data: string | undefined, file: string | undefined, dir: string, now: () => number): (() => string) | undefined {
  if (data) {
    const text = fromBase64(data);
    return () => text;
  }
  return file ? refreshingFile(resolvePath(dir, file), now) : undefined;
}

/** What an exec credential plugin prints (client.authentication.k8s.io ExecCredential). */
interface ExecCredential {
  status?: { token?: string; clientCertificateData?: string; clientKeyData?: string; expirationTimestamp?: string };
}

type ExecStatus = NonNullable<ExecCredential['status']>;

/**
 * Runs the plugin when there is no credential yet or the last one has expired. Requests that need one meanwhile (the
 * informers all start at once) wait for the same run rather than each starting the plugin.
 */
function execCredentials(exec: ExecConfig, server: string, now: () => number): () => Promise<ExecStatus> {
  let cached: { status: ExecStatus; expires: number } | undefined;
  let running: Promise<ExecStatus> | undefined;
  return () => {
    if (cached && cached.expires > now()) return Promise.resolve(cached.status);
    running ??= runPlugin(exec, server).then((status) => {
      cached = { status, expires: status.expirationTimestamp ? Date.parse(status.expirationTimestamp) : Number.POSITIVE_INFINITY };
      return status;
    }).finally(() => {
      running = undefined;
    });
    return running;
  };
}

async function runPlugin(exec: ExecConfig, server: string): Promise<ExecStatus> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const e of exec.env ?? []) env[e.name] = e.value;
  // As client-go: the plugin learns the API version it must answer in, and that no one can answer a prompt.
  env.KUBERNETES_EXEC_INFO = JSON.stringify({
    apiVersion: exec.apiVersion ?? 'client.authentication.k8s.io/v1', kind: 'ExecCredential', spec: { interactive: false },
  });
  let proc;
  try {
    proc = Bun.spawn([exec.command, ...(exec.args ?? [])], { env, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
  } catch (err) {
    throw new Error(`cannot run the kubeconfig's credential plugin ${exec.command}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const [out, errText, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`the kubeconfig's credential plugin ${exec.command} exited with ${code}: ${errText.trim()}`);
  let status: ExecCredential['status'];
  try {
    status = (JSON.parse(out) as ExecCredential).status;
  } catch {
    throw new Error(`the kubeconfig's credential plugin ${exec.command} did not print an ExecCredential (JSON) for ${server}`);
  }
  if (!status) throw new Error(`the kubeconfig's credential plugin ${exec.command} printed an ExecCredential without status`);
  return status;
}

function access(server: string, cluster: Named<ClusterEntry>, user: Named<UserEntry> | undefined, now: () => number): ClusterAccess {
  const c = cluster.entry;
  const u = user?.entry ?? {};
  if (u['auth-provider']) {
    throw new Error(`user "${user!.name}" uses the auth-provider "${u['auth-provider'].name ?? ''}", which kubectl itself no longer ` +
      'supports; use an exec credential plugin (users[].user.exec) instead');
  }
  const ca = material(c['certificate-authority-data'], c['certificate-authority'], cluster.dir, now);
  const cert = material(u['client-certificate-data'], u['client-certificate'], user?.dir ?? '', now);
  const key = material(u['client-key-data'], u['client-key'], user?.dir ?? '', now);
  const tokenFile = u.tokenFile ? refreshingFile(resolvePath(user!.dir, u.tokenFile), now) : undefined;
  const exec = u.exec?.command ? execCredentials(u.exec, server, now) : undefined;
  const serverName = c['tls-server-name'];
  return {
    server,
    async auth() {
      const tls: TlsOptions = {};
      const headers: Record<string, string> = {};
      if (ca) tls.ca = ca();
      if (c['insecure-skip-tls-verify']) tls.rejectUnauthorized = false;
      // Bun refuses an IP address as TLS server name; for an IP the certificate is checked against the IP anyway.
      if (serverName && !isIP(serverName)) tls.serverName = serverName;
      if (cert && key) {
        tls.cert = cert();
        tls.key = key();
      }
      const token = u.token ?? tokenFile?.().trim();
      if (token) headers.Authorization = `Bearer ${token}`;
      else if (u.username && u.password) headers.Authorization = `Basic ${Buffer.from(`${u.username}:${u.password}`).toString('base64')}`;
      if (exec) {
        const s = await exec();
        if (s.clientCertificateData && s.clientKeyData) {
          tls.cert = s.clientCertificateData;
          tls.key = s.clientKeyData;
        }
        if (s.token) headers.Authorization = `Bearer ${s.token}`;
      }
      return { tls, headers };
    },
  };
}

/** The kubeconfig files to read: the one given, else $KUBECONFIG's list, else ~/.kube/config if it exists. */
function kubeconfigFiles(opts: LoadOptions, env: Record<string, string | undefined>): string[] {
  if (opts.kubeconfig) return [opts.kubeconfig];
  const list = (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean);
  if (list.length) return list.filter((f) => existsSync(f));
  const home = join(opts.home ?? homedir(), '.kube', 'config');
  return existsSync(home) ? [home] : [];
}

function fromKubeconfig(files: string[], context: string | undefined, now: () => number): ClusterAccess {
  const merged: Merged = { clusters: new Map(), users: new Map(), contexts: new Map() };
  for (const f of files) mergeFile(f, merged);
  const where = files.length === 1 ? `kubeconfig ${files[0]}` : `kubeconfig files ${files.join(', ')}`;
  const name = context ?? merged.currentContext;
  if (!name) throw new Error(`the ${where} sets no current-context; give a context (--context)`);
  const ctx = merged.contexts.get(name);
  if (!ctx) throw new Error(`the ${where} has no context "${name}"`);
  const cluster = ctx.entry.cluster ? merged.clusters.get(ctx.entry.cluster) : undefined;
  if (!cluster?.entry.server) throw new Error(`context "${name}" of the ${where} names no cluster with a server`);
  const user = ctx.entry.user ? merged.users.get(ctx.entry.user) : undefined;
  if (ctx.entry.user && !user) throw new Error(`context "${name}" of the ${where} names user "${ctx.entry.user}", which it does not define`);
  return access(cluster.entry.server.replace(/\/$/, ''), cluster, user, now);
}

/** The ServiceAccount a pod runs as: its API server from the environment, its rotating token and CA from the mount. */
function inCluster(env: Record<string, string | undefined>, dir: string, now: () => number): ClusterAccess {
  const host = env.KUBERNETES_SERVICE_HOST!;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return access(server, { name: 'in-cluster', dir, entry: { server, 'certificate-authority': 'ca.crt' } },
    { name: 'service-account', dir, entry: { tokenFile: 'token' } }, now);
}

/** The API server and credentials, found as kubectl (and client-go's in-cluster config) find them. */
export function loadClusterAccess(opts: LoadOptions = {}, now: () => number = Date.now): ClusterAccess {
  const env = opts.env ?? process.env;
  const files = kubeconfigFiles(opts, env);
  if (files.length) return fromKubeconfig(files, opts.context, now);
  const saDir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  if (env.KUBERNETES_SERVICE_HOST && existsSync(join(saDir, 'token'))) {
    if (opts.context) throw new Error(`--context ${opts.context} given, but there is no kubeconfig (in a pod, the ServiceAccount is used)`);
    return inCluster(env, saDir, now);
  }
  throw new Error('no Kubernetes configuration: give --kubeconfig FILE, set KUBECONFIG, create ~/.kube/config, or run in a pod with a ServiceAccount token');
}
