/**
 * @module MetadataBackupRecord reconciler: a record carries a finalizer, so deleting it (by a user or by retention)
 * first forgets its restic snapshot. A snapshot that is already gone, or that retention already forgot, releases the
 * record at once; an unreachable repository keeps the record, with the reason in its status, until it can be done.
 */
import { BACKUP_RECORD, RECORD_FINALIZER, SNAPSHOT_FORGOTTEN_ANNOTATION } from '../api/group.ts';
import { FOREIGN_SNAPSHOT_KEPT, FORGET_FAILED, SNAPSHOT_KEPT, messages } from '../api/events.ts';
import type { BackupLocation, MetadataBackupRecord, Secret } from '../api/types.ts';
import type { BackupOrigin } from '../engine/origin.ts';
import type { Restic } from '../engine/restic.ts';
import { repositoryAddress } from '../engine/repository.ts';
import { forgetSnapshots } from '../engine/snapshots.ts';
import type { KubeClient } from '../kube/client.ts';
import { isConflict, isNotFound } from '../kube/errors.ts';
import type { Reconciler, Result } from '../runtime/controller.ts';
import type { Informer } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { Logger } from '../util/log.ts';
import { locationRepository, readyLocation } from './inputs.ts';
import { namespaceBeingDeleted } from './namespace-deletion.ts';

export interface BackupRecordDeps {
  client: KubeClient;
  records: Informer<MetadataBackupRecord>;
  locations: Informer<BackupLocation>;
  secrets: Informer<Secret>;
  recorder: EventRecorder;
  restic: Restic;
  log: Logger;
  /** This cluster and install: a snapshot of another is never forgotten. */
  origin: BackupOrigin;
  /** Retry delay while the snapshot cannot be forgotten. */
  retryMs?: number;
  /** Told about each forgotten snapshot (the pruner removes its data later). */
  onForgotten?: (location: BackupLocation, count: number) => void;
}

export class BackupRecordReconciler implements Reconciler {
  /** Records (by uid) whose snapshot this process forgot: a retried finalizer release need not run restic again. */
  private readonly forgottenHere = new Set<string>();

  constructor(private readonly deps: BackupRecordDeps) {}

  async reconcile(key: string, signal: AbortSignal): Promise<Result | void> {
    // 1. Load the record, or stop if it is gone.
    const record = this.deps.records.get(key);
    if (!record) return;
    const finalizers = record.metadata.finalizers ?? [];
    const ns = record.metadata.namespace ?? '';

    // 2. Not being deleted: make sure the finalizer is there (records made by KubeDR or by hand lack it). Not in a
    // namespace being deleted: its records were just released on purpose (namespace-deletion.ts), and a finalizer put
    // back before the namespace controller deletes them would keep the namespace Terminating (seen in the e2e).
    if (!record.metadata.deletionTimestamp) {
      if (!finalizers.includes(RECORD_FINALIZER) && !await namespaceBeingDeleted(this.deps.client, ns, signal)) {
        return this.setFinalizers(record, [...finalizers, RECORD_FINALIZER]);
      }
      return;
    }
    if (!finalizers.includes(RECORD_FINALIZER)) return;

    // 3. Being deleted: forget the snapshot unless retention already did, then release the record. A location that is
    // gone (or going, as with its namespace) will not come back for this record: release it, saying the snapshot stays.
    const log = this.deps.log.child({ record: key, snapshotId: record.spec.snapshotId });
    const location = this.deps.locations.get(`${ns}/${record.spec.backuploc}`);
    const forgotten = record.metadata.annotations?.[SNAPSHOT_FORGOTTEN_ANNOTATION] === 'true' ||
      this.forgottenHere.has(record.metadata.uid ?? '');
    const locationGone = !location || location.metadata.deletionTimestamp;
    if (!forgotten && (locationGone || await namespaceBeingDeleted(this.deps.client, ns, signal))) {
      const repository = location ? repositoryAddressOrUndefined(location) : undefined;
      await this.deps.recorder.event(record, 'Warning', SNAPSHOT_KEPT, locationGone
        ? messages.snapshotKept(record.spec.snapshotId, record.spec.backuploc, repository)
        : messages.snapshotKeptNamespaceDeleted(record.spec.snapshotId, ns));
      log.warn(locationGone ? 'location gone: record released, snapshot kept' : 'namespace is being deleted: record released, snapshot kept',
        { backupLocation: record.spec.backuploc });
      return this.setFinalizers(record, finalizers.filter((f) => f !== RECORD_FINALIZER));
    }
    if (!forgotten) {
      try {
        const location = readyLocation(ns, record.spec.backuploc, this.deps.locations);
        const { forgotten, foreign } = await forgetSnapshots(this.deps.restic, locationRepository(location, this.deps.secrets),
          [record.spec.snapshotId], { run: { signal }, origin: this.deps.origin });
        this.deps.onForgotten?.(location, forgotten.length);
        if (record.metadata.uid) this.forgottenHere.add(record.metadata.uid);
        for (const f of foreign) {
          await this.deps.recorder.event(record, 'Warning', FOREIGN_SNAPSHOT_KEPT, messages.foreignSnapshotKept(f.id, f.cluster));
          log.warn('record pointed at another cluster\'s snapshot: snapshot kept', { cluster: f.cluster });
        }
        if (forgotten.length > 0) log.info('snapshot forgotten');
      } catch (err) {
        if (signal.aborted) throw err;
        const message = `cannot forget snapshot ${record.spec.snapshotId} yet, the record stays until it can: ${err instanceof Error ? err.message : String(err)}`;
        if (record.status?.message !== message) {
          await this.deps.client.patchStatus(BACKUP_RECORD, ns, record.metadata.name, { message });
          await this.deps.recorder.event(record, 'Warning', FORGET_FAILED, message);
        }
        log.warn('forget failed; will retry', { error: message });
        return { requeueAfter: this.deps.retryMs ?? 60_000 };
      }
    }
    return this.setFinalizers(record, finalizers.filter((f) => f !== RECORD_FINALIZER));
  }

  /**
   * Replaces the finalizer list, guarded by resourceVersion so a concurrent change is not overwritten. On a conflict it
   * asks to look again soon: the change that won may touch only status (a verification's result), which does not
   * bring the record back to this reconciler, and a record being deleted would then wait for the next resync.
   */
  private async setFinalizers(record: MetadataBackupRecord, finalizers: string[]): Promise<Result | void> {
    try {
      await this.deps.client.patch(BACKUP_RECORD, record.metadata.namespace ?? '', record.metadata.name, {
        metadata: { finalizers, resourceVersion: record.metadata.resourceVersion },
      });
    } catch (err) {
      if (isNotFound(err)) return;
      if (isConflict(err)) return { requeueAfter: 200 };
      throw err;
    }
  }
}

/** The location's restic address for a message, or undefined if its spec does not make one. */
function repositoryAddressOrUndefined(loc: BackupLocation): string | undefined {
  try {
    return repositoryAddress(loc.spec.url, loc.spec.bucketName);
  } catch {
    return undefined;
  }
}
