/**
 * @module `kubedr browse --in-cluster` and `--restore NAME`: a backup served by a pod the controller runs (a
 * MetadataRestore with spec.browse, controllers/backup-api-pod.ts), reached from here through `kubectl port-forward`.
 * Nothing is needed on this machine but kubectl and a kubeconfig that may create MetadataRestores and Secrets in the
 * controller's namespace: no kube-apiserver binary, no repository credentials. The token is made here and handed to the
 * pod in a Secret owned by the MetadataRestore, so it goes with it. The port-forward is kubectl's own: its protocol
 * (SPDY or WebSocket streams through the API server) is not something to write by hand, and kubectl is on every
 * machine that would use this. If this process is killed, the browse still ends at its time limit (the pod's deadline).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { COMPLETE, READY } from '../api/conditions.ts';
import { API_VERSION, POD, RESTORE, SECRET } from '../api/group.ts';
import type { MetadataRestore, Pod, Secret } from '../api/types.ts';
import { BROWSE_PORT } from '../controllers/backup-api-pod.ts';
import { SERVE_CONTAINER, restorePodName } from '../controllers/restore-pod.ts';
import { browseKubeconfig } from '../engine/browse/apiserver.ts';
import { claimSession, publishSession } from '../engine/browse/session.ts';
import { EngineError } from '../engine/errors.ts';
import type { KubeClient } from '../kube/client.ts';
import { ignoreNotFound } from '../kube/errors.ts';
import type { FlagSpec } from '../util/flags.ts';
import { clientFromFlags, clusterFlags } from './cluster-flags.ts';

export const inClusterFlags = {
  'in-cluster': { type: 'boolean', default: false, help: 'serve the backup of --record in a pod the controller runs (a MetadataRestore with spec.browse), reached through kubectl port-forward: no kube-apiserver binary or repository credentials needed here' },
  record: { type: 'string', help: 'with --in-cluster: the MetadataBackupRecord to serve (kubectl get mbr)' },
  restore: { type: 'string', help: 'reach the browse a MetadataRestore with spec.browse serves (made by GitOps, or by another kubedr browse --in-cluster)' },
  namespace: clusterFlags.namespace,
  'kube-context': { type: 'string', help: 'with --in-cluster or --restore: kubeconfig context of the live cluster (--kubeconfig is taken from $KUBECONFIG as kubectl takes it)' },
} satisfies Record<string, FlagSpec>;

export interface InClusterRequest {
  namespace: string;
  record?: string;
  restore?: string;
  context?: string;
  timeLimitMs: number;
  dir: string;
  name: string;
  signal: AbortSignal;
  onStep: (s: string) => void;
}

export interface InClusterBrowse {
  kubeconfig: string;
  url: string;
  stop: () => Promise<void>;
}

/** Creates the browse (with --record) or finds it (--restore), waits until it serves, and port-forwards to it. */
export async function startInCluster(req: InClusterRequest): Promise<InClusterBrowse> {
  const client = clientFromFlags({ context: req.context });
  claimSession(req.dir, req.name);
  let made: string | undefined;
  const removeMade = async () => {
    if (made) await client.delete(RESTORE, req.namespace, made).catch(ignoreNotFound);
  };
  try {
    let restoreName = req.restore;
    let token: string;
    if (req.record) {
      ({ restoreName, token } = await createBrowse(client, req));
      made = restoreName;
    } else if (restoreName) {
      token = await tokenOf(client, req.namespace, restoreName);
    } else {
      throw new EngineError('InvalidInput', 'name the backup: --in-cluster --record MBR, or --restore NAME of a MetadataRestore with spec.browse');
    }
    const pod = await waitServing(client, req.namespace, restoreName!, req.signal, req.onStep);
    const caPem = await certificateOf(client, req.namespace, pod);
    const forward = await portForward(req.namespace, pod, req.context, req.dir, req.signal);
    const url = `https://127.0.0.1:${forward.port}`;
    const kubeconfig = publishSession(req.dir, browseKubeconfig({ url, caPem, token }, `kubedr-browse-${req.name}`), [forward.pid]);
    return {
      kubeconfig, url,
      stop: async () => {
        forward.stop();
        await removeMade();
      },
    };
  } catch (err) {
    await removeMade();
    rmSync(req.dir, { recursive: true, force: true });
    throw err;
  }
}

/** The Secret with a new token, the MetadataRestore that serves the record, and the Secret then owned by it. */
async function createBrowse(client: KubeClient, req: InClusterRequest): Promise<{ restoreName: string; token: string }> {
  const suffix = randomBytes(3).toString('hex');
  const restoreName = `browse-${req.name}-${suffix}`.slice(0, 63);
  const secretName = `kubedr-browse-${req.name}-${suffix}`.slice(0, 253);
  const token = randomBytes(24).toString('hex');
  await client.create<Secret>(SECRET, req.namespace, {
    apiVersion: 'v1', kind: 'Secret', metadata: { name: secretName, namespace: req.namespace }, stringData: { token },
  } as Secret);
  try {
    const mr = await client.create<MetadataRestore>(RESTORE, req.namespace, {
      apiVersion: API_VERSION, kind: RESTORE.kind, metadata: { name: restoreName, namespace: req.namespace },
      spec: { mbrName: req.record!, browse: { tokenSecret: secretName, timeLimit: `${Math.ceil(req.timeLimitMs / 1000)}s` } },
    });
    // Owned by the MetadataRestore: the garbage collector deletes the token with it, whoever deletes it.
    await client.patch(SECRET, req.namespace, secretName, {
      metadata: { ownerReferences: [{ apiVersion: API_VERSION, kind: RESTORE.kind, name: restoreName, uid: mr.metadata.uid ?? '' }] },
    });
    req.onStep(`asked the controller to serve ${req.record} (MetadataRestore ${restoreName} in ${req.namespace})`);
    return { restoreName, token };
  } catch (err) {
    await client.delete(SECRET, req.namespace, secretName).catch(ignoreNotFound);
    throw err;
  }
}

async function tokenOf(client: KubeClient, namespace: string, restoreName: string): Promise<string> {
  const mr = await client.get<MetadataRestore>(RESTORE, namespace, restoreName);
  const secretName = mr.spec.browse?.tokenSecret;
  if (!secretName) throw new EngineError('InvalidInput', `MetadataRestore ${restoreName} has no spec.browse: it serves no browse`);
  const secret = await client.get<Secret>(SECRET, namespace, secretName);
  const token = secret.data?.token;
  if (!token) throw new EngineError('InvalidInput', `Secret ${secretName} (spec.browse.tokenSecret) has no key "token"`);
  return Buffer.from(token, 'base64').toString('utf8').trim();
}

/** Waits until the MetadataRestore says Ready (its pod serves), saying what the pod does meanwhile; returns the pod. */
async function waitServing(client: KubeClient, namespace: string, restoreName: string, signal: AbortSignal, onStep: (s: string) => void): Promise<string> {
  const podName = restorePodName(restoreName);
  let said = '';
  for (;;) {
    if (signal.aborted) throw new EngineError('Cancelled', 'cancelled while waiting for the browse pod');
    const mr = await client.get<MetadataRestore>(RESTORE, namespace, restoreName);
    if (mr.status?.restoreStatus === 'Failed') throw new EngineError('Failed', `the browse failed: ${mr.status.restoreErrorMessage}`);
    if (mr.status?.restoreStatus === 'Completed') throw new EngineError('Failed', `the browse has ended: ${mr.status.conditions?.find((c) => c.type === COMPLETE)?.message ?? ''}`);
    if (mr.status?.conditions?.some((c) => c.type === READY && c.status === 'True')) return podName;
    const pod = await client.get<Pod>(POD, namespace, podName).catch(ignoreNotFound);
    const init = pod?.status?.initContainerStatuses?.[0]?.state;
    const doing = !pod ? 'waiting for the controller to start the browse pod'
      : init?.running ? 'the pod downloads the backup and builds its etcd'
        : pod.status?.phase === 'Pending' ? `the pod is ${pod.status.phase.toLowerCase()}`
          : 'the pod starts etcd and the kube-apiserver';
    if (doing !== said) onStep(doing);
    said = doing;
    await Bun.sleep(1000);
  }
}

/** The kube-apiserver's certificate, which the serve container printed once it answered (public: the token is not). */
async function certificateOf(client: KubeClient, namespace: string, pod: string): Promise<string> {
  const log = await client.getText(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log?container=${SERVE_CONTAINER}`);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
  const certs = log.match(pem);
  if (!certs) throw new EngineError('Failed', `the browse pod ${pod} did not print its API server's certificate`);
  return `${certs.join('\n')}\n`;
}

/**
 * `kubectl port-forward` to the pod's API server port, on a free local port of 127.0.0.1; resolves once it listens.
 * Its cache directory is in the session's `dir`, so its command line names the browse: `kubedr browse --stop` finds
 * and stops it when this process was killed.
 */
function portForward(namespace: string, pod: string, context: string | undefined, dir: string, signal: AbortSignal):
  Promise<{ port: number; pid: number; stop: () => void }> {
  const proc = spawn('kubectl', ['port-forward', '-n', namespace, `pod/${pod}`, `:${BROWSE_PORT}`, '--address', '127.0.0.1',
    '--cache-dir', join(dir, 'kubectl-cache'), ...(context ? ['--context', context] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stop = () => proc.kill('SIGTERM');
  return new Promise((ok, fail) => {
    let err = '';
    const timer = setTimeout(() => {
      stop();
      fail(new EngineError('Timeout', `kubectl port-forward to ${pod} did not listen within 30 s: ${err.trim()}`));
    }, 30_000);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      stop();
      fail(new EngineError('Cancelled', 'cancelled'));
    }, { once: true });
    proc.on('error', (e) => {
      clearTimeout(timer);
      fail(new EngineError('InvalidInput', `cannot run kubectl for the port-forward: ${e.message} (kubectl must be on PATH)`));
    });
    proc.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    proc.stdout.on('data', (d: Buffer) => {
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(d.toString());
      if (m) {
        clearTimeout(timer);
        ok({ port: Number(m[1]), pid: proc.pid ?? 0, stop });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      fail(new EngineError('Failed', `kubectl port-forward exited (code ${code}): ${err.trim()}`));
    });
  });
}
