/**
 * @module MetadataBackupRecords as the index of the repository: how a record for a snapshot is made (by the backup that
 * took it, or adopted later from the repository), written so that it lands, and matched to snapshots.
 */
import { createHash } from 'node:crypto';
import { SNAPSHOT_AVAILABLE } from '../api/conditions.ts';
import { ADOPTED_ANNOTATION, BACKUP_RECORD, POLICY_LABEL, RECORD_FINALIZER, SNAPSHOT_FORGOTTEN_ANNOTATION } from '../api/group.ts';
import type { MetadataBackupRecord, MetadataBackupRecordStatus } from '../api/types.ts';
import type { SnapshotInfo } from '../engine/restic-output.ts';
import { FencedError, type KubeClient } from '../kube/client.ts';
import { ApiError, isAlreadyExists } from '../kube/errors.ts';
import type { Logger } from '../util/log.ts';
import { retryUntilDone } from '../util/retry.ts';

/** Record names are fixed by KubeDR's contract: `mbr-<snapshot id>`, the 8-hex short id restic prints. */
export const recordName = (snapshotId: string): string => `mbr-${snapshotId.slice(0, 8)}`;

/**
 * A label value naming the policy. Label values stop at 63 characters, policy names at 253: a longer name is cut and
 * given a hash of the whole, so it stays unique and the record can still be created (spec.policy has the full name).
 */
export function policyLabelValue(policy: string): string {
  if (policy.length <= 63) return policy;
  const hash = createHash('sha256').update(policy).digest('hex').slice(0, 10);
  return `${policy.slice(0, 52).replace(/[^A-Za-z0-9]+$/, '')}-${hash}`;
}

export interface RecordInput {
  namespace: string;
  policy: string;
  location: string;
  snapshotId: string;
  status: MetadataBackupRecordStatus;
  /** Made from the repository after the fact, not by the backup itself. */
  adopted?: boolean;
}

export function newRecord(r: RecordInput): MetadataBackupRecord {
  return {
    apiVersion: `${BACKUP_RECORD.group}/${BACKUP_RECORD.version}`, kind: BACKUP_RECORD.kind,
    metadata: {
      name: recordName(r.snapshotId), namespace: r.namespace, labels: { [POLICY_LABEL]: policyLabelValue(r.policy) },
      finalizers: [RECORD_FINALIZER], ...(r.adopted ? { annotations: { [ADOPTED_ANNOTATION]: 'true' } } : {}),
    },
    spec: { snapshotId: r.snapshotId.slice(0, 8), policy: r.policy, backuploc: r.location },
    status: r.status,
  };
}

/** A request no retry can fix: the object is invalid, forbidden, its namespace is gone, or this replica lost the lease. */
export const isPermanent = (err: unknown): boolean => err instanceof FencedError ||
  err instanceof ApiError && err.status >= 400 && err.status < 500 && ![408, 409, 429].includes(err.status) && !err.notServed;

/**
 * Creates the record (an existing one, from a retried write or a sync that got there first, is fine) and writes its
 * status, retrying through API outages until both land or `signal` aborts.
 */
export async function writeRecord(client: KubeClient, record: MetadataBackupRecord, log: Logger, signal?: AbortSignal): Promise<void> {
  const ns = record.metadata.namespace ?? '';
  const { status, ...object } = record;
  const onRetry = (err: unknown, attempt: number, delayMs: number) =>
    log.warn('record write failed; retrying', { record: record.metadata.name, attempt, delayMs, err });
  await retryUntilDone(async () => {
    try {
      await client.create(BACKUP_RECORD, ns, object);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    if (status) await client.patchStatus(BACKUP_RECORD, ns, record.metadata.name, status);
  }, { signal, onRetry, permanent: isPermanent });
}

/** When a record's backup finished; a record whose status is not written yet is as new as the record itself. */
export const recordTime = (r: MetadataBackupRecord): number =>
  Date.parse(r.status?.backupTime ?? '') || Date.parse(r.metadata.creationTimestamp ?? '') || Number.MAX_SAFE_INTEGER;

/**
 * The policy's newest record (not being deleted): what a scheduled verification proves. A record without a backupTime
 * yet (created, its status not written) counts by its creation: sorted as NaN it once lost to an older record, which
 * was verified instead, and lastVerifiedTime went past an unproven backup.
 */
export function newestRecord(records: readonly MetadataBackupRecord[], ns: string, policy: string): MetadataBackupRecord | undefined {
  return records.filter((r) => r.metadata.namespace === ns && r.spec.policy === policy && !r.metadata.deletionTimestamp)
    .reduce<MetadataBackupRecord | undefined>((a, r) => (!a || recordTime(r) > recordTime(a) ? r : a), undefined);
}

/**
 * The snapshot of the policy's newest record at the location whose snapshot is believed to be there (not being
 * deleted, not forgotten by retention, not flagged missing): the parent of its next backup.
 */
export function newestSnapshot(records: readonly MetadataBackupRecord[], ns: string, policy: string, location: string): string | undefined {
  let newest: MetadataBackupRecord | undefined;
  for (const r of records) {
    if (r.metadata.namespace !== ns || r.spec.policy !== policy || r.spec.backuploc !== location || r.metadata.deletionTimestamp ||
      r.metadata.annotations?.[SNAPSHOT_FORGOTTEN_ANNOTATION] === 'true' || r.status?.damage ||
      r.status?.conditions?.some((c) => c.type === SNAPSHOT_AVAILABLE && c.status === 'False')) continue;
    if (!newest || Date.parse(r.status?.backupTime ?? '') > Date.parse(newest.status?.backupTime ?? '')) newest = r;
  }
  return newest?.spec.snapshotId;
}

/** Does the record stand for this snapshot? Records hold the short id (or, written by restic ≥ 0.17, the full one). */
export const recordMatches = (snapshotId: string, s: SnapshotInfo): boolean =>
  s.id.startsWith(snapshotId) || s.shortId === snapshotId;
