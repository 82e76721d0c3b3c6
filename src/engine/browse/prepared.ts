/**
 * @module A browse prepared for an API server that runs elsewhere: in a pod, the kube-apiserver runs from the
 * cluster's own image in a container of its own, and `kubedr` cannot start it. So the work is cut in two, at fixed
 * paths and loopback ports the pod spec names before any data exists:
 * - prepare (an init container): the etcd data directory built from the snapshot, the API server's keys, the browse
 *   user's token and read-only policy, and the EncryptionConfiguration that opens the backup's Secrets (an identity-only
 *   one when they are stored in the clear, so that the API server's flags never depend on the backup);
 * - serve (the container that reads the backup, beside the kube-apiserver container): etcd started on that data
 *   directory, then the wait until the API server beside it answers, and a kubeconfig for it.
 * The kube-apiserver's flags are `preparedApiserverArgs(dir)`: the same for the pod spec and for `kubedr browse --prepare`.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EngineError } from '../errors.ts';
import { findRestoreTool, restoreEtcdDataDir } from '../etcd-restore.ts';
import { type ThrowawayEtcd, startEtcdOnDataDir } from '../throwaway-etcd.ts';
import { apiserverArgs, apiserverFiles, apiserverReady, browseKubeconfig, writeApiserverFiles } from './apiserver.ts';
import { chooseEncryptionConfig, secretStorage } from './encryption.ts';

/** Loopback ports inside the pod (its own network namespace): etcd's client and peer, and the API server's. */
export const PREPARED_PORTS = { etcdClient: 12379, etcdPeer: 12380, apiserver: 16443 } as const;
const MEMBER = 'kubedr-browse';
const PEER_URL = `http://127.0.0.1:${PREPARED_PORTS.etcdPeer}`;

const paths = (dir: string) => ({
  dataDir: join(dir, 'etcd', 'data'),
  etcdLog: join(dir, 'etcd', 'etcd.log'),
  apiserver: join(dir, 'apiserver'),
  encryption: join(dir, 'encryption.yaml'),
  kubeconfig: join(dir, 'kubeconfig'),
});

const IDENTITY_ONLY = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers: [{identity: {}}]
`;

/** kube-apiserver's flags for a browse prepared in `dir`. */
export function preparedApiserverArgs(dir: string, etcdPrefix?: string): string[] {
  const p = paths(dir);
  return apiserverArgs({ etcdEndpoint: `http://127.0.0.1:${PREPARED_PORTS.etcdClient}`, etcdPrefix, encryptionConfig: p.encryption },
    PREPARED_PORTS.apiserver, apiserverFiles(p.apiserver));
}

export interface PrepareRequest {
  snapshotFile: string;
  sha256?: string;
  /** The restored backup's directory, searched for its EncryptionConfiguration. */
  restoredDir?: string;
  encryptionConfig?: string;
  etcd?: string;
  etcdPrefix?: string;
  dir: string;
  /** The browse user's token; default a new random one. A browse in a pod is given one its user holds already. */
  token?: string;
  onStep?: (step: string) => void;
  signal?: AbortSignal;
}

/** Builds everything the API server and `servePrepared` need in `dir`; etcd is stopped again when it returns. */
export async function prepareBrowse(req: PrepareRequest): Promise<void> {
  const p = paths(req.dir);
  mkdirSync(join(req.dir, 'etcd'), { recursive: true, mode: 0o700 });
  req.onStep?.('building the etcd data directory from the backup');
  await restoreEtcdDataDir({
    snapshotFile: req.snapshotFile, dataDir: p.dataDir, tool: findRestoreTool(), sha256: req.sha256, force: true,
    member: { name: MEMBER, peerUrls: PEER_URL, initialCluster: `${MEMBER}=${PEER_URL}`, initialClusterToken: `kubedr-${MEMBER}` },
  });
  // The Secrets' storage decides the EncryptionConfiguration: read one stored Secret from etcd, once.
  const etcd = await startPreparedEtcd(req.dir, req.etcd, req.signal);
  try {
    const storage = await secretStorage(etcd.endpoint, req.etcdPrefix, req.signal);
    const config = chooseEncryptionConfig(storage, req.encryptionConfig, req.restoredDir);
    if (config) copyFileSync(config, p.encryption);
    else writeFileSync(p.encryption, IDENTITY_ONLY);
    req.onStep?.(config ? `Secrets will be decrypted with ${config}` : 'Secrets are stored in the clear');
  } finally {
    await etcd.stop();
  }
  writeApiserverFiles(p.apiserver, req.token);
}

function startPreparedEtcd(dir: string, etcd: string | undefined, signal?: AbortSignal): Promise<ThrowawayEtcd> {
  const p = paths(dir);
  return startEtcdOnDataDir({ etcd, name: MEMBER, dataDir: p.dataDir, peerUrl: PEER_URL,
    clientPort: PREPARED_PORTS.etcdClient, logFile: p.etcdLog, signal });
}

export interface PreparedServe {
  kubeconfig: string;
  /** The API server's self-signed certificate: what a client reaching it through a port-forward trusts. */
  caPem: string;
  stop: () => Promise<void>;
}

/**
 * Starts etcd on a prepared browse and waits (up to `readyTimeoutMs`) until the kube-apiserver started on it elsewhere
 * answers; returns a kubeconfig for it. The API server exits when it cannot reach etcd for a while after its own start;
 * its container runs from the pod's start, so etcd comes first here.
 */
export async function servePrepared(dir: string, opts: { etcd?: string; readyTimeoutMs?: number; signal?: AbortSignal } = {}): Promise<PreparedServe> {
  const p = paths(dir);
  const files = apiserverFiles(p.apiserver);
  if (!existsSync(files.tokens)) throw new EngineError('InvalidInput', `${dir} holds no prepared browse (kubedr browse --prepare makes one)`);
  // The API server's token file: "<token>,<user>,<uid>".
  const token = readFileSync(files.tokens, 'utf8').split(',')[0]!;
  const certFile = join(files.certDir, 'apiserver.crt');
  const etcd = await startPreparedEtcd(dir, opts.etcd, opts.signal);
  const url = `https://127.0.0.1:${PREPARED_PORTS.apiserver}`;
  const timeoutMs = opts.readyTimeoutMs ?? 180_000;
  const deadline = performance.now() + timeoutMs;
  try {
    for (;;) {
      const caPem = existsSync(certFile) ? readFileSync(certFile, 'utf8') : undefined;
      if (caPem && (await apiserverReady(url, caPem, token))) {
        writeFileSync(p.kubeconfig, browseKubeconfig({ url, caPem, token }, MEMBER), { mode: 0o600 });
        return { kubeconfig: p.kubeconfig, caPem, stop: etcd.stop };
      }
      if (opts.signal?.aborted) throw new EngineError('Cancelled', 'cancelled while waiting for the backup\'s kube-apiserver');
      if (performance.now() > deadline) {
        throw new EngineError('Timeout', `the backup's kube-apiserver (${url}) did not answer within ${timeoutMs / 1000} s: see its container's log`);
      }
      await Bun.sleep(500);
    }
  } catch (err) {
    await etcd.stop();
    throw err;
  }
}
