/**
 * @module Releasing the records of a namespace: the forget finalizer taken off every MetadataBackupRecord without
 * forgetting its snapshot, for when no controller will serve the finalizer any more: the install's namespace is being
 * deleted (namespace-deletion.ts), or the chart is uninstalled (`kubedr release-records`, the chart's pre-delete hook).
 * The snapshots stay in S3: a new install's repository sync adopts them again, and its record reconciler puts the
 * finalizer back on records that are still there (backup-record.ts, step 2).
 */
import { BACKUP_RECORD, RECORD_FINALIZER } from '../api/group.ts';
import type { MetadataBackupRecord } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { isConflict, isNotFound } from '../kube/errors.ts';

export interface ReleaseResult {
  /** The records that held the finalizer when listed. */
  held: MetadataBackupRecord[];
  /** Those released now (the rest were gone, changed meanwhile, or failed). */
  released: MetadataBackupRecord[];
  /** Records changed meanwhile (409): a new list shows whether they still hold the finalizer. */
  changed: number;
  /** Failures other than "gone" and "changed meanwhile". */
  failed: unknown[];
}

/** The records whose finalizer must go for a namespace (or the CRD) to finish deleting. */
export function heldRecords(records: MetadataBackupRecord[]): MetadataBackupRecord[] {
  return records.filter((r) => r.metadata.finalizers?.includes(RECORD_FINALIZER));
}

/** A record as the log and the hook's output name it: which backup, where. */
export const describeRecord = (r: MetadataBackupRecord): string => `${r.metadata.name} (${r.spec.backuploc}, snapshot ${r.spec.snapshotId})`;

/**
 * Takes the forget finalizer off every record of `namespace` that holds it, all at once (a namespace being deleted may
 * take our credentials any moment), each guarded by its resourceVersion, other finalizers kept. Never forgets a
 * snapshot. A record gone meanwhile needs nothing more; one changed meanwhile is counted in `changed`.
 */
export async function releaseRecords(client: Pick<KubeClient, 'list' | 'patch'>, namespace: string): Promise<ReleaseResult> {
  const { items } = await client.list<MetadataBackupRecord>(BACKUP_RECORD, namespace);
  const held = heldRecords(items);
  const results = await Promise.allSettled(held.map((r) => client.patch(BACKUP_RECORD, namespace, r.metadata.name, {
    metadata: { finalizers: (r.metadata.finalizers ?? []).filter((f) => f !== RECORD_FINALIZER), resourceVersion: r.metadata.resourceVersion },
  })));
  const rejected = results.flatMap((x) => (x.status === 'rejected' ? [x.reason as unknown] : []));
  return {
    held,
    released: held.filter((_r, i) => results[i]!.status === 'fulfilled'),
    changed: rejected.filter(isConflict).length,
    failed: rejected.filter((e) => !isNotFound(e) && !isConflict(e)),
  };
}
