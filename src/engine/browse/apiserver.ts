/**
 * @module A read-only kube-apiserver on a throwaway etcd restored from a backup: the cluster's own API machinery serves
 * the backup's objects (every built-in kind, every custom resource, Secrets decrypted with the backup's
 * EncryptionConfiguration), so nothing here decodes etcd's protobuf values by hand.
 *
 * Read-only by the API server's own authorizer: ABAC with one policy, `readonly` for the one user this browse made
 * (a random bearer token, in a file only this user can read). ABAC, not RBAC, so that nothing is written into the
 * backup's data to grant access and the backup's own RBAC objects neither widen nor narrow it. The API server's
 * in-process loopback client is in system:masters and passes, so its start-up hooks still run (they write only to the
 * throwaway copy). `--endpoint-reconciler-type=none`: the `kubernetes` Service keeps the endpoints it had at backup time.
 * Listens on 127.0.0.1 only, with the self-signed certificate the API server makes for itself.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../util/net.ts';
import { plainText } from '../../util/text.ts';
import { EngineError } from '../errors.ts';

/** The one user a browse serves; its name shows in the API server's audit of who read what. */
export const BROWSE_USER = 'kubedr-browse';

export interface BrowseApiserverRequest {
  /** The kube-apiserver binary, of the backed-up cluster's version. */
  binary: string;
  etcdEndpoint: string;
  /** Scratch directory for keys, certificates and the log (the caller removes it). */
  work: string;
  /** The backup's EncryptionConfiguration, when its Secrets are encrypted at rest. */
  encryptionConfig?: string;
  /** etcd key prefix the cluster used (kube-apiserver's --etcd-prefix). */
  etcdPrefix?: string;
  /** Seconds to wait for /readyz. */
  readyTimeoutSecs?: number;
  signal?: AbortSignal;
}

export interface BrowseApiserver {
  url: string;
  /** PEM of the API server's self-signed certificate and its CA. */
  caPem: string;
  token: string;
  pid: number;
  stop: () => Promise<void>;
}

const ABAC = 'abac.authorization.kubernetes.io/v1beta1';

/** The ABAC policy lines: read anything, resource or not, as BROWSE_USER; nothing else for anyone. */
export function readOnlyPolicy(user = BROWSE_USER): string {
  return [
    { apiVersion: ABAC, kind: 'Policy', spec: { user, namespace: '*', resource: '*', apiGroup: '*', readonly: true } },
    { apiVersion: ABAC, kind: 'Policy', spec: { user, nonResourcePath: '*', readonly: true } },
  ].map((p) => JSON.stringify(p)).join('\n') + '\n';
}

/** kube-apiserver's flags for a browse: everything it needs, nothing that reaches beyond loopback. */
export function apiserverArgs(req: Pick<BrowseApiserverRequest, 'etcdEndpoint' | 'etcdPrefix' | 'encryptionConfig'>, port: number, files: ApiserverFiles): string[] {
  return [
    `--etcd-servers=${req.etcdEndpoint}`,
    ...(req.etcdPrefix ? [`--etcd-prefix=${req.etcdPrefix}`] : []),
    '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${port}`, `--cert-dir=${files.certDir}`,
    '--service-account-issuer=https://kubernetes.default.svc', `--service-account-key-file=${files.saPub}`,
    `--service-account-signing-key-file=${files.saKey}`,
    `--token-auth-file=${files.tokens}`, '--anonymous-auth=false',
    '--authorization-mode=ABAC', `--authorization-policy-file=${files.policy}`,
    '--endpoint-reconciler-type=none',
    // Allocations already in the backup are kept; this range only has to be valid.
    '--service-cluster-ip-range=10.0.0.0/24',
    ...(req.encryptionConfig ? [`--encryption-provider-config=${req.encryptionConfig}`] : []),
  ];
}

/** The files kube-apiserver's flags name: its service-account keys, the browse user's token, the ABAC policy. */
export type ApiserverFiles = { saKey: string; saPub: string; tokens: string; policy: string; certDir: string };

/** Where those files live under `dir` (the API server writes its self-signed certificate into certDir). */
export function apiserverFiles(dir: string): ApiserverFiles {
  return { saKey: join(dir, 'sa.key'), saPub: join(dir, 'sa.pub'), tokens: join(dir, 'tokens.csv'), policy: join(dir, 'policy.jsonl'), certDir: join(dir, 'certs') };
}

/** Writes the files, with a new key pair and the browse user's token (default a new random one); returns the token. */
export function writeApiserverFiles(dir: string, given?: string): string {
  mkdirSync(join(dir, 'certs'), { recursive: true, mode: 0o700 });
  const files = apiserverFiles(dir);
  const token = given ?? randomBytes(24).toString('hex');
  if (!/^[\x21-\x7e]{16,}$/.test(token) || token.includes(',')) {
    throw new EngineError('InvalidInput', 'the browse token must be at least 16 printable characters without spaces or commas');
  }
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(files.saKey, privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
  writeFileSync(files.saPub, publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(files.tokens, `${token},${BROWSE_USER},${BROWSE_USER}\n`, { mode: 0o600 });
  writeFileSync(files.policy, readOnlyPolicy());
  return token;
}

/** Starts the API server and resolves once /readyz answers ok to the browse user. */
export async function startBrowseApiserver(req: BrowseApiserverRequest): Promise<BrowseApiserver> {
  const dir = join(req.work, 'apiserver');
  const token = writeApiserverFiles(dir);
  const files = apiserverFiles(dir);
  const port = await freePort();
  const log = join(dir, 'kube-apiserver.log');
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn([req.binary, ...apiserverArgs(req, port, files)], { stdout: Bun.file(log), stderr: Bun.file(log) });
  } catch (err) {
    throw new EngineError('InvalidInput', `cannot run the kube-apiserver binary ${req.binary}: ${(err as Error).message}`);
  }
  const stop = async () => {
    proc.kill('SIGTERM');
    if (!(await Promise.race([proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]))) {
      proc.kill('SIGKILL');
      await proc.exited;
    }
  };
  const url = `https://127.0.0.1:${port}`;
  const deadline = performance.now() + (req.readyTimeoutSecs ?? 120) * 1000;
  for (;;) {
    if (proc.exitCode !== null) throw new EngineError('Failed', `kube-apiserver exited (code ${proc.exitCode}): ${lastLines(log)}`);
    const caPem = readOr(join(files.certDir, 'apiserver.crt'));
    if (caPem && (await apiserverReady(url, caPem, token))) return { url, caPem, token, pid: proc.pid, stop };
    if (performance.now() > deadline || req.signal?.aborted) {
      await stop();
      throw new EngineError(req.signal?.aborted ? 'Cancelled' : 'Timeout',
        `kube-apiserver did not become ready within ${req.readyTimeoutSecs ?? 120} s: ${lastLines(log)}`);
    }
    await Bun.sleep(250);
  }
}

/** Whether the API server at `url` answers /readyz with "ok" to the token. */
export async function apiserverReady(url: string, caPem: string, token: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/readyz`, { headers: { authorization: `Bearer ${token}` }, tls: { ca: caPem }, signal: AbortSignal.timeout(2000) });
    return res.ok && (await res.text()).trim() === 'ok';
  } catch {
    return false;
  }
}

function readOr(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** The API server's last meaningful log lines (klog: "E1204 …] message"), for an error a person can act on. */
function lastLines(log: string): string {
  const lines = plainText(readOr(log) ?? '').trim().split('\n').filter((l) => /^[EF]\d{4} /.test(l));
  const picked = (lines.length ? lines : plainText(readOr(log) ?? '').trim().split('\n')).slice(-2);
  return picked.map((l) => l.replace(/^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.-]+:\d+\] /, '')).join('; ') || 'no output';
}

/** A kubeconfig (JSON, which kubectl reads as YAML) for the browse user. */
export function browseKubeconfig(a: Pick<BrowseApiserver, 'url' | 'caPem' | 'token'>, name: string): string {
  return `${JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': name,
    clusters: [{ name, cluster: { server: a.url, 'certificate-authority-data': Buffer.from(a.caPem).toString('base64') } }],
    users: [{ name: BROWSE_USER, user: { token: a.token } }],
    contexts: [{ name, context: { cluster: name, user: BROWSE_USER } }],
  }, null, 2)}\n`;
}
