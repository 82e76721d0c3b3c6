/**
 * @module Where the API server is and how to authenticate to it: a kubeconfig (kubectl's rules for finding and merging
 * files) or the in-cluster ServiceAccount, turned into TLS options and headers for Bun's fetch. Our own, not
 * client-node's KubeConfig: that one loads the whole generated API, undici and the OIDC client with it, about 19 MB of
 * resident memory in a controller that idled at 65 MB with it (issue 14).
 *
 * Every field that changes how the API server is reached or who we are to it is either honoured or refused with an
 * error naming it; none is ignored. Exec plugins: exec-plugin.ts (when they run again, their time limit);
 * impersonation: impersonation.ts. `proxy-url` takes an http(s) proxy, which Bun's fetch tunnels through with the
 * same TLS checks (CA, server name, client certificate); a SOCKS proxy, which Bun cannot use, is refused.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { type ExecClusterInfo, type ExecConfig, type ExecStatus, execCredentials } from './exec-plugin.ts';
import { type ImpersonationEntry, impersonationHeaders } from './impersonation.ts';

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
  /** Present when the credential came from an exec plugin: drops it after a 401, so the next auth() asks the plugin. */
  discard?(): void;
}

/** The API server and the credentials for one request; credentials that expire or rotate are read again as needed. */
export interface ClusterAccess {
  server: string;
  /** The cluster's http(s) proxy (`proxy-url`), credentials included. */
  proxy?: string;
  /** Waits for an exec plugin at most until `signal` aborts. */
  auth(signal?: AbortSignal): Promise<RequestAuth>;
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
  /** Longest run of an exec credential plugin before it is killed; the client passes its request time limit. */
  execTimeoutMs?: number;
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** How long a token or certificate read from a file is used before the file is read again, as client-go does. */
const FILE_REFRESH_MS = 60_000;

/** An exec plugin's time limit when none is given: client-go's usual request timeout. */
const EXEC_TIMEOUT_MS = 30_000;

/** The kubeconfig fields we act on, as kubectl spells them. */
interface ClusterEntry {
  server?: string;
  'certificate-authority'?: string;
  'certificate-authority-data'?: string;
  'insecure-skip-tls-verify'?: boolean;
  'tls-server-name'?: string;
  'proxy-url'?: string;
}

interface UserEntry extends ImpersonationEntry {
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

/** The cluster's `proxy-url`, if Bun's fetch can use it; its text is never repeated in an error (it may hold a password). */
function proxyOf(cluster: Named<ClusterEntry>): string | undefined {
  const proxy = cluster.entry['proxy-url'];
  if (!proxy) return undefined;
  let scheme: string;
  try {
    scheme = new URL(proxy).protocol.replace(/:$/, '');
  } catch {
    throw new Error(`cluster "${cluster.name}" of the kubeconfig has a proxy-url that is not a URL`);
  }
  if (scheme !== 'http' && scheme !== 'https') {
    throw new Error(`cluster "${cluster.name}" of the kubeconfig sets a ${scheme} proxy-url; kubedr can use only an http or https ` +
      'proxy (its HTTP client has no SOCKS support): give an HTTP CONNECT proxy, or remove proxy-url');
  }
  return proxy;
}

interface AccessOptions {
  now: () => number;
  execTimeoutMs: number;
}

function access(server: string, cluster: Named<ClusterEntry>, user: Named<UserEntry> | undefined, opts: AccessOptions): ClusterAccess {
  const { now } = opts;
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
  const proxy = proxyOf(cluster);
  const impersonate = user ? impersonationHeaders(user.name, u) : {};
  const serverName = c['tls-server-name'];
  const clusterInfo = (): ExecClusterInfo => ({
    server, 'tls-server-name': serverName, 'insecure-skip-tls-verify': c['insecure-skip-tls-verify'],
    'certificate-authority-data': ca ? Buffer.from(ca()).toString('base64') : undefined, 'proxy-url': proxy,
  });
  const exec = u.exec?.command ? execCredentials(u.exec, {
    timeoutMs: opts.execTimeoutMs, now, cluster: u.exec.provideClusterInfo ? clusterInfo() : undefined,
  }) : undefined;
  return {
    server,
    proxy,
    async auth(signal) {
      const tls: TlsOptions = {};
      const headers: Record<string, string> = { ...impersonate };
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
      if (!exec) return { tls, headers };
      const s: ExecStatus = await exec.get(signal);
      if (s.clientCertificateData && s.clientKeyData) {
        tls.cert = s.clientCertificateData;
        tls.key = s.clientKeyData;
      }
      if (s.token) headers.Authorization = `Bearer ${s.token}`;
      return { tls, headers, discard: () => exec.discard(s) };
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

function fromKubeconfig(files: string[], context: string | undefined, opts: AccessOptions): ClusterAccess {
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
  return access(cluster.entry.server.replace(/\/$/, ''), cluster, user, opts);
}

/** The ServiceAccount a pod runs as: its API server from the environment, its rotating token and CA from the mount. */
function inCluster(env: Record<string, string | undefined>, dir: string, opts: AccessOptions): ClusterAccess {
  const host = env.KUBERNETES_SERVICE_HOST!;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return access(server, { name: 'in-cluster', dir, entry: { server, 'certificate-authority': 'ca.crt' } },
    { name: 'service-account', dir, entry: { tokenFile: 'token' } }, opts);
}

/** The API server and credentials, found as kubectl (and client-go's in-cluster config) find them. */
export function loadClusterAccess(opts: LoadOptions = {}, now: () => number = Date.now): ClusterAccess {
  const env = opts.env ?? process.env;
  const files = kubeconfigFiles(opts, env);
  const accessOpts = { now, execTimeoutMs: opts.execTimeoutMs ?? EXEC_TIMEOUT_MS };
  if (files.length) return fromKubeconfig(files, opts.context, accessOpts);
  const saDir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  if (env.KUBERNETES_SERVICE_HOST && existsSync(join(saDir, 'token'))) {
    if (opts.context) throw new Error(`--context ${opts.context} given, but there is no kubeconfig (in a pod, the ServiceAccount is used)`);
    return inCluster(env, saDir, accessOpts);
  }
  throw new Error('no Kubernetes configuration: give --kubeconfig FILE, set KUBECONFIG, create ~/.kube/config, or run in a pod with a ServiceAccount token');
}
