/**
 * @module Verification of backups by restoring them (engine/verify.ts), run by the policy reconciler after a backup's
 * record exists (or on the policy's own verification schedule), one at a time and apart from backups. Its outcome
 * goes to the record (`status.verification`), the policy (`lastVerifiedTime`, `lastVerifiedSnapshotId`), an event and
 * metrics; it never changes the backup's own Completed or Failed, and never throws.
 */
import { BACKUP_VERIFICATION_FAILED, BACKUP_VERIFIED } from '../api/events.ts';
import { BACKUP_POLICY, BACKUP_RECORD } from '../api/group.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord, Secret } from '../api/types.ts';
import { earliestExpiry } from '../engine/certificates.ts';
import type { Restic } from '../engine/restic.ts';
import { verifyBackup } from '../engine/verify.ts';
import type { KubeClient } from '../kube/client.ts';
import { ignoreNotFound, isNotFound } from '../kube/errors.ts';
import type { Metrics } from '../metrics/registry.ts';
import type { Informer } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { Logger } from '../util/log.ts';
import { retryUntilDone } from '../util/retry.ts';
import { locationRepository } from './inputs.ts';
import { RepositoryRepair } from './repository-repair.ts';
import type { VerificationPods } from './verification-pod.ts';
import { isPermanent } from './records.ts';

export interface VerifierDeps {
  client: KubeClient;
  secrets: Informer<Secret>;
  restic: Restic;
  recorder: EventRecorder;
  metrics: Metrics;
  log: Logger;
  /** Takes a verification slot (they run one at a time, apart from backups); returns its release. */
  acquire: (signal: AbortSignal) => Promise<() => void>;
  /** After a failure that may be damaged data: check and repair the repository (in the same verification slot). */
  repair?: RepositoryRepair;
  /** The engine's verification (a stand-in in unit tests). */
  verifyBackup?: typeof verifyBackup;
  /** Verifications run in pods of their own (verification-pod.ts) rather than in this process. */
  inPod?: Pick<VerificationPods, 'verify'>;
  timeoutMs?: number;
  now?: () => Date;
}

export type VerifyMode = 'AfterBackup' | 'Schedule' | 'Never';
export const verifyMode = (p: MetadataBackupPolicy): VerifyMode => p.spec.verification?.mode ?? 'AfterBackup';

export class Verifier {
  constructor(private readonly deps: VerifierDeps) {}

  /** Verifies the record's backup and reports the outcome. Resolves with whether it verified. */
  async verify(policy: MetadataBackupPolicy, location: BackupLocation, record: MetadataBackupRecord, signal: AbortSignal): Promise<boolean> {
    const { client, metrics, recorder } = this.deps;
    const ns = policy.metadata.namespace ?? '';
    const name = policy.metadata.name;
    const log = this.deps.log.child({ policy: `${ns}/${name}`, record: record.metadata.name });
    const now = () => (this.deps.now ?? (() => new Date()))().toISOString();
    let release: (() => void) | undefined;
    const started = performance.now();
    try {
      release = await this.deps.acquire(signal);
      // Verifications wait for their slot behind backups, whose retention may expire this very backup meanwhile.
      if (await this.expired(ns, record)) {
        log.info('backup expired before its verification could run; nothing to verify');
        return false;
      }
      const r = this.deps.inPod ? await this.deps.inPod.verify(location, record, signal) : await (this.deps.verifyBackup ?? verifyBackup)(this.deps.restic, {
        repo: locationRepository(location, this.deps.secrets), snapshot: record.spec.snapshotId,
        expectSha256: record.status?.etcdSnapshotSha256, signal, timeoutMs: this.deps.timeoutMs,
        // The pruner may run meanwhile: a repack under the reading restore gave false failures.
        sharedLock: true,
      });
      const message = `restored into a throwaway etcd: revision ${r.revision}, ${r.keyCount} keys, SHA-256 ${r.sha256.slice(0, 12)}…`;
      // A record adopted from the repository has no facts of its own backup: they are read from the snapshot here.
      const facts = record.status?.etcdSnapshotSha256 ? {} : {
        etcdSnapshotSha256: r.sha256, etcdSnapshotSize: r.etcdSnapshotSize, etcdRevision: r.revision,
        ...(r.certificates ? { certificates: r.certificates, earliestCertificateExpiry: earliestExpiry(r.certificates) } : {}),
      };
      await this.write(() => client.patchStatus(BACKUP_RECORD, ns, record.metadata.name, { ...facts, verification: {
        time: now(), result: 'Succeeded', revision: r.revision, keyCount: r.keyCount, durationSecs: r.durationSecs.toFixed(3), message,
      } }), signal);
      await this.write(() => client.patchStatus(BACKUP_POLICY, ns, name, {
        lastVerifiedTime: now(), lastVerifiedSnapshotId: record.spec.snapshotId,
      }), signal);
      await recorder.event(policy, 'Normal', BACKUP_VERIFIED, `Backup ${record.spec.snapshotId} verified: ${message}`);
      log.info('backup verified', { revision: r.revision, keyCount: r.keyCount, durationSecs: r.durationSecs });
      return true;
    } catch (err) {
      if (signal.aborted) return false;
      // Retention forgot the snapshot while it was being read: not a failure of the backup, which no longer exists.
      if (await this.expired(ns, record)) {
        log.info('backup expired while it was being verified; not verified', { error: err instanceof Error ? err.message : String(err) });
        return false;
      }
      const message = `verifying backup ${record.spec.snapshotId} failed: ${err instanceof Error ? err.message : String(err)}`;
      metrics.verificationFailures.inc({ policyName: name });
      await this.write(() => client.patchStatus(BACKUP_RECORD, ns, record.metadata.name, { verification: {
        // A success's figures from an earlier verification of this record no longer hold.
        time: now(), result: 'Failed', durationSecs: ((performance.now() - started) / 1000).toFixed(3), message, revision: null, keyCount: null,
      } }), signal).catch(() => undefined);
      await recorder.event(policy, 'Warning', BACKUP_VERIFICATION_FAILED, message).catch(() => undefined);
      log.warn('backup verification failed', { error: message });
      if (this.deps.repair && RepositoryRepair.concernsData(err)) await this.deps.repair.checkAndRepair(location, signal);
      return false;
    } finally {
      release?.();
    }
  }

  /** Whether the record is gone or going (retention deleted it; its finalizer forgets the snapshot). */
  private async expired(ns: string, record: MetadataBackupRecord): Promise<boolean> {
    try {
      return !!(await this.deps.client.get<MetadataBackupRecord>(BACKUP_RECORD, ns, record.metadata.name)).metadata.deletionTimestamp;
    } catch (err) {
      // Any other answer (an API outage) is not proof the backup went: the verification runs and reports as before.
      return isNotFound(err);
    }
  }

  private write(fn: () => Promise<unknown>, signal: AbortSignal): Promise<unknown> {
    return retryUntilDone(() => fn().catch(ignoreNotFound), { signal, permanent: isPermanent });
  }
}
