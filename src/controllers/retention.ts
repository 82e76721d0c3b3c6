/**
 * @module Retention: after each backup, keep the newest `retainNumBackups` backups of the policy at its location, forget
 * the rest (quick) and delete their records. The data of forgotten snapshots goes with the next prune (pruner.ts),
 * which runs on its own cadence, off the backup path. Adopted records count like any other.
 */
import { BACKUPS_EXPIRED, FOREIGN_SNAPSHOT_KEPT, RETENTION_FAILED, messages } from '../api/events.ts';
import { BACKUP_RECORD, RECORD_FINALIZER, SNAPSHOT_FORGOTTEN_ANNOTATION } from '../api/group.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord, Secret } from '../api/types.ts';
import { forgetExpiredChangeSets } from '../engine/continuous/expiry.ts';
import type { BackupOrigin } from '../engine/origin.ts';
import { removeStaleLocks } from '../engine/repository.ts';
import type { Repository, Restic } from '../engine/restic.ts';
import { selectExpired } from '../engine/retention.ts';
import { forgetSnapshots } from '../engine/snapshots.ts';
import type { KubeClient } from '../kube/client.ts';
import { ignoreNotFound, isConflict, isNotFound } from '../kube/errors.ts';
import type { Informer } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { Logger } from '../util/log.ts';
import { locationRepository } from './inputs.ts';

export interface RetentionDeps {
  client: KubeClient;
  records: Informer<MetadataBackupRecord>;
  secrets: Informer<Secret>;
  restic: Restic;
  recorder: EventRecorder;
  log: Logger;
  /** This cluster and install: a snapshot of another is never forgotten. */
  origin: BackupOrigin;
  /** Told how many snapshots of a location were forgotten (the pruner counts them). */
  onForgotten?: (location: BackupLocation, count: number) => void;
}

/** The policy's records at the location, `newest` included even if the cache has not seen it yet. */
function recordsOf(deps: RetentionDeps, policy: MetadataBackupPolicy, location: BackupLocation, newest: MetadataBackupRecord): MetadataBackupRecord[] {
  const mine = new Map<string, MetadataBackupRecord>();
  for (const r of deps.records.list()) {
    if (r.metadata.namespace === policy.metadata.namespace && r.spec.policy === policy.metadata.name &&
      r.spec.backuploc === location.metadata.name && !r.metadata.deletionTimestamp) mine.set(r.metadata.name, r);
  }
  mine.set(newest.metadata.name, newest);
  return [...mine.values()];
}

/** Forgets and deletes what is beyond retention. A failure is reported and retried after the next backup. */
export async function applyRetention(deps: RetentionDeps, policy: MetadataBackupPolicy, location: BackupLocation,
  newest: MetadataBackupRecord): Promise<void> {
  const ns = policy.metadata.namespace ?? '';
  const started = performance.now();
  const records = new Map(recordsOf(deps, policy, location, newest).map((r) => [r.metadata.name, r]));
  const expired = selectExpired([...records.values()].map((r) => ({
    name: r.metadata.name, snapshotId: r.spec.snapshotId, time: r.status?.backupTime ?? r.metadata.creationTimestamp ?? '',
  })), policy.spec.retainNumBackups ?? 120);
  const repo = locationRepository(location, deps.secrets);
  // A stale lock of an earlier, killed backup goes now, whatever follows: the next backups take non-exclusive locks,
  // which neither conflict with it nor remove it, and it would block every prune. Not in the repository's queue of
  // this process' writes: only dead writers' locks go, never ours, and a run that hangs on an endpoint going away must
  // not hold up the next backup's upload.
  await removeStaleLocks(deps.restic, repo);
  if (expired.length === 0) return;
  try {
    const { forgotten, foreign } = await forgetSnapshots(deps.restic, repo, expired.map((e) => e.snapshotId), { origin: deps.origin });
    deps.onForgotten?.(location, forgotten.length);
    for (const f of foreign) {
      await deps.recorder.event(policy, 'Warning', FOREIGN_SNAPSHOT_KEPT, messages.foreignSnapshotKept(f.id, f.cluster));
      deps.log.warn('record pointed at another cluster\'s snapshot: snapshot kept', { policy: policy.metadata.name, snapshotId: f.id, cluster: f.cluster });
    }
    for (const e of expired) await deleteForgottenRecord(deps, ns, records.get(e.name));
    await deps.recorder.event(policy, 'Normal', BACKUPS_EXPIRED,
      `Expired ${expired.length} backup(s) beyond retainNumBackups=${policy.spec.retainNumBackups}: ${expired.map((e) => e.name).join(', ')}`);
    deps.log.info('retention applied', { policy: policy.metadata.name, expired: expired.length, durationMs: Math.round(performance.now() - started) });
  } catch (err) {
    const message = `retention failed, old backups kept until the next backup: ${err instanceof Error ? err.message : String(err)}`;
    await deps.recorder.event(policy, 'Warning', RETENTION_FAILED, message);
    deps.log.warn('retention failed', { policy: policy.metadata.name, error: message });
    return;
  }
  await expireChangeSets(deps, policy, location, repo);
}

/**
 * Deletes the record of a snapshot retention forgot. It is marked forgotten and its forget finalizer taken off in the
 * same patch (guarded by the cached resourceVersion), so the delete removes it at once: left to the record reconciler,
 * a controller stopped right after retention left the record Terminating, listed beside the snapshots until the next
 * start (seen in the shared-bucket e2e). A record changed meanwhile is only marked: its finalizer then releases it
 * without a second forget.
 */
async function deleteForgottenRecord(deps: RetentionDeps, ns: string, record: MetadataBackupRecord | undefined): Promise<void> {
  if (!record) return;
  const name = record.metadata.name;
  const annotations = { [SNAPSHOT_FORGOTTEN_ANNOTATION]: 'true' };
  const finalizers = (record.metadata.finalizers ?? []).filter((f) => f !== RECORD_FINALIZER);
  try {
    await deps.client.patch(BACKUP_RECORD, ns, name, { metadata: { annotations, finalizers, resourceVersion: record.metadata.resourceVersion } });
  } catch (err) {
    if (isNotFound(err)) return;
    if (!isConflict(err)) throw err;
    await deps.client.patch(BACKUP_RECORD, ns, name, { metadata: { annotations } }).catch(ignoreNotFound);
  }
  await deps.client.delete(BACKUP_RECORD, ns, name).catch(ignoreNotFound);
}

/**
 * The change sets the forgotten full backups took out of every chain go too, whether or not the policy still records
 * changes (one whose continuous backup was turned off would otherwise keep them for ever). A failure is logged: the
 * recorder, while it runs, and the next retention try again.
 */
async function expireChangeSets(deps: RetentionDeps, policy: MetadataBackupPolicy, location: BackupLocation, repo: Repository): Promise<void> {
  try {
    const r = await forgetExpiredChangeSets(deps.restic, repo, policy.metadata.name, deps.origin);
    if (r.forgotten === 0) return;
    deps.onForgotten?.(location, r.forgotten);
    deps.log.info('change sets older than the oldest full backup forgotten', { policy: policy.metadata.name, count: r.forgotten,
      oldestFullRevision: r.oldestFullRevision });
  } catch (err) {
    deps.log.warn('forgetting old change sets failed; tried again after the next backup', { policy: policy.metadata.name,
      error: err instanceof Error ? err.message : String(err) });
  }
}
