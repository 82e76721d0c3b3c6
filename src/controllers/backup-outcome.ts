/**
 * @module How a backup's end is told: its MetadataBackupRecord, the policy's final status (Completed or Failed, retried
 * through API outages until it lands), the LastBackupSucceeded condition, the event and the counters. One place, so a
 * backup run, the resolution of one another process left unfinished and an invalid schedule all report alike.
 */
import { LAST_BACKUP_SUCCEEDED, READY, setCondition } from '../api/conditions.ts';
import { BACKUP_FAILED, BACKUP_SUCCEEDED, messages } from '../api/events.ts';
import { BACKUP_POLICY } from '../api/group.ts';
import type { BackupLocation, Condition, MetadataBackupPolicy, MetadataBackupRecord } from '../api/types.ts';
import type { BackupResult } from '../engine/backup.ts';
import type { KubeClient } from '../kube/client.ts';
import { ignoreNotFound } from '../kube/errors.ts';
import type { Metrics } from '../metrics/registry.ts';
import { objectKey } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { Logger } from '../util/log.ts';
import { retryUntilDone } from '../util/retry.ts';
import { isPermanent, newRecord, writeRecord } from './records.ts';

export interface OutcomeDeps {
  client: KubeClient;
  recorder: EventRecorder;
  metrics: Metrics;
  log: Logger;
  now?: () => Date;
}

/** The backup stored its snapshot, but its record could not be written; a repository sync will make it. */
export class RecordNotWritten extends Error {
  constructor(readonly snapshotId: string, cause: unknown) {
    super(`snapshot ${snapshotId} stored, but its record could not be written`, { cause });
    this.name = 'RecordNotWritten';
  }
}

/** Seconds as KubeDR wrote them: a string with nanosecond precision, e.g. "0.318463127". */
export const seconds = (s: number): string => s.toFixed(9);

/** Fields of a successful backup that a failure must clear rather than leave beside its error. */
const SUCCESS_FIGURES = ['filesNew', 'filesChanged', 'dataAdded', 'totalBytesProcessed', 'snapshotId', 'mbrName'] as const;

export class BackupOutcomes {
  /** The LastBackupSucceeded condition this process last wrote, per policy: the cache may not show it yet. */
  private readonly health = new Map<string, Condition>();
  private readonly now: () => Date;

  constructor(private readonly deps: OutcomeDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  /** Forgets what it knew of a policy that is gone. */
  forget(key: string): void {
    this.health.delete(key);
  }

  async patchStatus(policy: MetadataBackupPolicy, status: Record<string, unknown>): Promise<void> {
    await this.deps.client.patchStatus(BACKUP_POLICY, policy.metadata.namespace ?? '', policy.metadata.name, status);
  }

  /**
   * A final status (Completed, Failed) must land, or the policy would read `Running` while nothing runs: retried
   * through API outages until it does, the policy is gone, or `signal` aborts (then the next controller resolves it).
   */
  private async patchStatusUntilDone(policy: MetadataBackupPolicy, status: Record<string, unknown>, signal?: AbortSignal): Promise<void> {
    await retryUntilDone(() => this.patchStatus(policy, status).catch(ignoreNotFound), {
      signal, permanent: isPermanent,
      onRetry: (err, attempt, delayMs) => this.deps.log.warn('status write failed; retrying', { policy: policy.metadata.name, attempt, delayMs, err }),
    });
  }

  /**
   * Creates `mbr-<snapshotId>` and its status, retrying through API outages until they land. Throws RecordNotWritten
   * when they cannot (a permanent error, or the controller is stopping): the snapshot is stored either way.
   */
  async createRecord(policy: MetadataBackupPolicy, location: BackupLocation, r: BackupResult, signal: AbortSignal): Promise<MetadataBackupRecord> {
    const record = newRecord({
      namespace: policy.metadata.namespace ?? '', policy: policy.metadata.name, location: location.metadata.name,
      snapshotId: r.summary.snapshotId,
      status: {
        backupTime: this.now().toISOString(), etcdRevision: r.etcd.revision, etcdSnapshotSize: r.etcd.size, etcdSnapshotSha256: r.etcd.sha256,
        dataAdded: r.summary.dataAdded, totalBytesProcessed: r.summary.totalBytesProcessed, totalDurationSecs: seconds(r.durationSecs),
        certificates: r.certificates, earliestCertificateExpiry: r.earliestCertificateExpiry,
      },
    });
    try {
      await writeRecord(this.deps.client, record, this.deps.log, signal);
    } catch (err) {
      throw new RecordNotWritten(r.summary.snapshotId, err);
    }
    return record;
  }

  async reportSuccess(policy: MetadataBackupPolicy, r: BackupResult, record: MetadataBackupRecord, signal: AbortSignal): Promise<void> {
    const name = policy.metadata.name;
    const s = r.summary;
    const time = record.status?.backupTime ?? this.now().toISOString();
    await this.patchStatusUntilDone(policy, {
      backupStatus: 'Completed', backupTime: time, backupErrorMessage: '',
      filesNew: s.filesNew, filesChanged: s.filesChanged, dataAdded: s.dataAdded, totalBytesProcessed: s.totalBytesProcessed,
      totalDurationSecs: seconds(r.durationSecs), snapshotId: s.snapshotId, mbrName: record.metadata.name,
      lastSuccessfulBackupTime: time, lastSuccessfulSnapshotId: s.snapshotId, progress: null,
      conditions: this.backupHealth(policy, 'True', 'Succeeded', messages.backupSucceeded(s.snapshotId)),
    }, signal);
    this.deps.metrics.numSuccessful.inc({ policyName: name });
    this.deps.metrics.backupDuration.observe({ policyName: name }, r.durationSecs);
    await this.deps.recorder.event(policy, 'Normal', BACKUP_SUCCEEDED, messages.backupSucceeded(s.snapshotId));
  }

  /**
   * A backup another process ran, found complete in the repository: Completed status from its adopted record (restic's
   * per-backup figures are not known), the success count, and the usual event.
   */
  async reportAdopted(policy: MetadataBackupPolicy, record: MetadataBackupRecord, signal: AbortSignal): Promise<void> {
    const time = record.status?.backupTime ?? this.now().toISOString();
    const cleared = Object.fromEntries(SUCCESS_FIGURES.map((f) => [f, null]));
    await this.patchStatusUntilDone(policy, {
      ...cleared, backupStatus: 'Completed', backupTime: time, backupErrorMessage: '', snapshotId: record.spec.snapshotId,
      mbrName: record.metadata.name, lastSuccessfulBackupTime: time, lastSuccessfulSnapshotId: record.spec.snapshotId, progress: null,
      conditions: this.backupHealth(policy, 'True', 'Adopted', `${messages.backupSucceeded(record.spec.snapshotId)} (recorded from the repository)`),
    }, signal);
    this.deps.metrics.numSuccessful.inc({ policyName: policy.metadata.name });
    await this.deps.recorder.event(policy, 'Normal', BACKUP_SUCCEEDED, messages.backupSucceeded(record.spec.snapshotId));
  }

  /** Failed status (clearing the previous success's figures), a Warning event and the failure count. */
  async reportFailure(policy: MetadataBackupPolicy, message: string, reason: string, extra: Record<string, unknown>,
    signal?: AbortSignal): Promise<void> {
    const now = this.now();
    const cleared = Object.fromEntries(SUCCESS_FIGURES.map((f) => [f, null]));
    await this.patchStatusUntilDone(policy, {
      ...cleared, ...extra,
      backupStatus: 'Failed', backupTime: now.toISOString(), backupErrorMessage: message, progress: null,
      observedGeneration: policy.metadata.generation ?? 0,
      // An invalid schedule makes the policy not Ready; any other failure is about this backup, not the policy.
      conditions: reason === 'InvalidSchedule'
        ? setCondition(policy.status?.conditions, { type: READY, status: 'False', observedGeneration: policy.metadata.generation ?? 0, reason, message }, now)
        : this.backupHealth(policy, 'False', reason, message),
    }, signal);
    this.deps.metrics.numFailed.inc({ policyName: policy.metadata.name });
    await this.deps.recorder.event(policy, 'Warning', BACKUP_FAILED, message);
  }

  /**
   * Conditions for a status write made from the cache: the cache may not show the LastBackupSucceeded this process
   * wrote a moment ago, and a merge patch replaces the whole list, so put back the newest one known here.
   */
  withHealth(key: string, list: Condition[]): Condition[] {
    const mine = this.health.get(key);
    return mine ? [...list.filter((c) => c.type !== LAST_BACKUP_SUCCEEDED), mine] : list;
  }

  /** The LastBackupSucceeded condition after a backup ended, the other conditions as they are. */
  private backupHealth(policy: MetadataBackupPolicy, status: 'True' | 'False', reason: string, message: string): Condition[] {
    const list = setCondition(policy.status?.conditions, {
      type: LAST_BACKUP_SUCCEEDED, status, reason, message, observedGeneration: policy.metadata.generation ?? 0,
    }, this.now());
    this.health.set(objectKey(policy), list.find((c) => c.type === LAST_BACKUP_SUCCEEDED)!);
    return list;
  }
}
