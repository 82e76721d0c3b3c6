/**
 * @module When the controller's own namespace is deleted (`kubectl delete namespace`), the controller goes with it, and
 * nothing would serve the finalizer of its MetadataBackupRecords: the namespace would stay Terminating for ever. So a
 * leader that is told to stop checks, before it exits, whether its namespace is being deleted, and if so releases every
 * record without forgetting its snapshot: the backups stay in S3 (a new install, or `kubedr snapshots`, finds them).
 * Events cannot be written in a namespace being deleted; the log says what was released.
 */
import { BACKUP_RECORD, NAMESPACE, RECORD_FINALIZER } from '../api/group.ts';
import type { KubeObject, MetadataBackupRecord } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { isConflict, isNotFound } from '../kube/errors.ts';
import { LeadershipLost } from '../runtime/leader.ts';
import type { Runnable } from '../runtime/runnable.ts';
import type { Logger } from '../util/log.ts';

/** How long the check may hold up a shutdown (the pod's grace period is short, and the API server may be away). */
const CHECK_TIMEOUT_MS = 5_000;

export interface NamespaceDeletionDeps {
  client: KubeClient;
  namespace: string;
  log: Logger;
}

/** The records whose finalizer must go for the namespace to finish deleting. */
export function heldRecords(records: MetadataBackupRecord[]): MetadataBackupRecord[] {
  return records.filter((r) => r.metadata.finalizers?.includes(RECORD_FINALIZER));
}

export class NamespaceDeletion implements Runnable {
  readonly name = 'namespace-deletion';

  constructor(private readonly deps: NamespaceDeletionDeps) {}

  async start(signal: AbortSignal): Promise<void> {
    await new Promise<void>((ok) => (signal.aborted ? ok() : signal.addEventListener('abort', () => ok(), { once: true })));
    // A leader that lost its lease may not write (and another leads now): nothing to do, and no reason to wait.
    if (signal.reason instanceof LeadershipLost) return;
    await this.releaseIfNamespaceDeleted(AbortSignal.timeout(CHECK_TIMEOUT_MS)).catch((err) =>
      this.deps.log.warn('could not check whether the namespace is being deleted', { err }));
  }

  /** Releases every record when the namespace is being deleted; returns how many were released. */
  async releaseIfNamespaceDeleted(signal?: AbortSignal): Promise<number> {
    const { client, namespace, log } = this.deps;
    const ns = await client.get<KubeObject>(NAMESPACE, '', namespace, signal);
    if (!ns.metadata.deletionTimestamp) return 0;
    const { items } = await client.list<MetadataBackupRecord>(BACKUP_RECORD, namespace);
    let released = 0;
    for (const r of heldRecords(items)) {
      try {
        await client.patch(BACKUP_RECORD, namespace, r.metadata.name, {
          metadata: { finalizers: (r.metadata.finalizers ?? []).filter((f) => f !== RECORD_FINALIZER), resourceVersion: r.metadata.resourceVersion },
        });
        released++;
      } catch (err) {
        // Gone already, or changed meanwhile (the next list would show it): the namespace deletion goes on either way.
        if (!isNotFound(err) && !isConflict(err)) throw err;
      }
    }
    log.warn('namespace is being deleted: records released without forgetting their snapshots, which stay in S3', {
      namespace, released, records: items.map((r) => `${r.metadata.name} (${r.spec.backuploc}, snapshot ${r.spec.snapshotId})`),
    });
    return released;
  }
}
