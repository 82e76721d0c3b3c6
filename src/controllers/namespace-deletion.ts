/**
 * @module When the controller's own namespace is deleted (`kubectl delete namespace`), nothing would serve the finalizer
 * of its MetadataBackupRecords once the controller is gone: the namespace would stay Terminating for ever. Worse, the
 * namespace controller deletes the namespace's content in no set order (Go map order), and the moment it deletes the
 * controller's ServiceAccount or its token Secret, the controller's credentials stop working (kube-apiserver rejects a
 * token whose account or Secret is being deleted). So the release cannot wait for the pod's SIGTERM: every replica
 * watches its own namespace and, the moment it sees it being deleted, releases every record at once (in parallel)
 * without forgetting its snapshot: the backups stay in S3 (a new install, or `kubedr snapshots`, finds them). It checks
 * once more when told to stop, and the record reconciler releases what it sees deleted in a namespace being deleted.
 *
 * It runs whoever leads, and its writes are not fenced by the lease: the Lease may go first (then no replica can take
 * one in a namespace being deleted), and releasing a record whose snapshot stays is safe from any replica at any time.
 * Events cannot be written in a namespace being deleted; the log says what was released.
 */
import { NAMESPACE } from '../api/group.ts';
import type { KubeObject } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { isNotFound } from '../kube/errors.ts';
import { Informer, listWatch } from '../runtime/informer.ts';
import type { Runnable } from '../runtime/runnable.ts';
import type { Logger } from '../util/log.ts';
import { describeRecord, releaseRecords } from './release-records.ts';

/** How long the check may hold up a shutdown (the pod's grace period is short, and the API server may be away). */
const CHECK_TIMEOUT_MS = 5_000;

export interface NamespaceDeletionDeps {
  /** Not fenced by the leader lease: see the module comment. */
  client: KubeClient;
  namespace: string;
  log: Logger;
}

/** Whether the namespace is being deleted (or gone): its records go with it, their snapshots stay in S3. */
export async function namespaceBeingDeleted(client: KubeClient, namespace: string, signal?: AbortSignal): Promise<boolean> {
  try {
    return Boolean((await client.get<KubeObject>(NAMESPACE, '', namespace, signal)).metadata.deletionTimestamp);
  } catch (err) {
    if (isNotFound(err)) return true;
    throw err;
  }
}

export class NamespaceDeletion implements Runnable {
  readonly name = 'namespace-deletion';
  private releasing: Promise<number> | undefined;

  constructor(private readonly deps: NamespaceDeletionDeps) {}

  async start(signal: AbortSignal): Promise<void> {
    const { client, namespace, log } = this.deps;
    // This namespace only (RBAC grants get/list/watch of it by name, with this field selector).
    const watched = new Informer<KubeObject>({
      name: 'namespace', log, source: listWatch(client, NAMESPACE, undefined, undefined, `metadata.name=${namespace}`),
    });
    const seen = (ns: KubeObject) => {
      if (ns.metadata.deletionTimestamp) void this.releaseOnce(ns.metadata.name);
    };
    watched.addHandlers({ onAdd: seen, onUpdate: (_old, ns) => seen(ns) });
    await watched.start(signal).catch((err) => log.warn('cannot watch the namespace for its deletion', { err }));
    // Told to stop: the last chance, whatever was seen (the watch may have lost the race or never run).
    await this.releaseIfNamespaceDeleted(AbortSignal.timeout(CHECK_TIMEOUT_MS)).catch((err) =>
      log.warn('could not check whether the namespace is being deleted', { err }));
  }

  /** Releases the records for a namespace seen being deleted, once at a time (a failure lets the next event retry). */
  private releaseOnce(ns: string): Promise<number> {
    this.releasing ??= this.release(ns).catch((err) => {
      this.deps.log.warn('releasing the records of the namespace being deleted failed', { err });
      return 0;
    }).finally(() => {
      this.releasing = undefined;
    });
    return this.releasing;
  }

  /** Releases every record when the namespace is being deleted; returns how many were released. */
  async releaseIfNamespaceDeleted(signal?: AbortSignal): Promise<number> {
    if (!await namespaceBeingDeleted(this.deps.client, this.deps.namespace, signal)) return 0;
    return this.release(this.deps.namespace);
  }

  /** Every record's finalizer removed at once: the credentials may stop working any moment now. */
  private async release(ns: string): Promise<number> {
    const { client, namespace, log } = this.deps;
    // Gone already, or changed meanwhile (the next list would show it): the namespace deletion goes on either way.
    const { held, released, failed } = await releaseRecords(client, namespace);
    if (held.length > 0 || failed.length === 0) {
      log.warn('namespace is being deleted: records released without forgetting their snapshots, which stay in S3', {
        namespace: ns, released: released.length, records: held.map(describeRecord),
      });
    }
    if (failed.length > 0) throw failed[0];
    return released.length;
  }
}
