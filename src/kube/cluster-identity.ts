/**
 * @module The cluster's identity: the UID of its `kube-system` namespace. Every cluster has that namespace, its UID is
 * unique, nothing renames it, and it lives in etcd, so a cluster brought back from one of its own etcd backups keeps it
 * (a new cluster does not). Backups carry it so that clusters sharing a bucket tell their snapshots apart.
 */
import { NAMESPACE } from '../api/group.ts';
import type { KubeObject } from '../api/types.ts';
import { retryUntilDone } from '../util/retry.ts';
import type { KubeClient } from './client.ts';
import { isRefused, isTransient } from './errors.ts';

export const IDENTITY_NAMESPACE = 'kube-system';

/**
 * Reads the cluster id, retrying while the API server is unreachable or failing (the controller cannot act without it).
 * A refusal (RBAC) throws, saying what to grant.
 */
export async function readClusterId(client: KubeClient, opts: { signal?: AbortSignal; onRetry?: (err: unknown) => void } = {}): Promise<string> {
  try {
    // Namespaces are cluster-scoped: no namespace in the path.
    const ns = await retryUntilDone(() => client.get<KubeObject>(NAMESPACE, '', IDENTITY_NAMESPACE, opts.signal), {
      signal: opts.signal, permanent: (err) => !isTransient(err), onRetry: (err) => opts.onRetry?.(err),
    });
    if (!ns.metadata.uid) throw new Error(`namespace ${IDENTITY_NAMESPACE} has no uid`);
    return ns.metadata.uid;
  } catch (err) {
    if (isRefused(err)) {
      throw new Error(`cannot read namespace ${IDENTITY_NAMESPACE}, whose UID identifies this cluster in its backups: ${err.detail}. ` +
        `Grant "get" on namespaces/${IDENTITY_NAMESPACE} (the Helm chart's ClusterRole does), or give the id with --cluster-id`, { cause: err });
    }
    throw err;
  }
}

/**
 * The API server's version (`v1.20.2`, its /version gitVersion), recorded with each backup: which kube-apiserver may
 * serve the backup later (kubedr browse). Undefined when it cannot be read: the backup goes on without it.
 */
export async function readServerVersion(client: KubeClient, signal?: AbortSignal): Promise<string | undefined> {
  try {
    const v = await client.request<{ gitVersion?: string }>('GET', '/version', undefined, 'application/json', signal);
    return typeof v.gitVersion === 'string' && v.gitVersion ? v.gitVersion : undefined;
  } catch {
    return undefined;
  }
}
