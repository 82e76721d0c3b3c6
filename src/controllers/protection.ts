/**
 * @module A protected bucket (spec.protection, docs/immutable-backups.md), as pure decisions: what the bucket's answers
 * mean for the Protected condition and status, how long its retention should be, whether a failed prune is what the
 * bucket is meant to refuse, and the command a person holding the maintenance keys runs in its place.
 */
import { PROTECTED, protectionReasons as R } from '../api/conditions.ts';
import { BUCKET_NOT_PROTECTED, BUCKET_PROTECTED, BUCKET_PROTECTION_UNKNOWN, RETENTION_TOO_SHORT } from '../api/events.ts';
import type { BackupLocation, BackupLocationStatus, MetadataBackupPolicySpec } from '../api/types.ts';
import type { BucketProtection } from '../engine/bucket-protection.ts';
import { EngineError } from '../engine/errors.ts';
import { parseSchedule } from '../schedule/schedule.ts';

export type ProtectionSpec = NonNullable<BackupLocation['spec']['protection']>;
export type ProtectionStatus = NonNullable<BackupLocationStatus['protection']>;

const DAY_MS = 86_400_000;
/** Firings of a schedule walked to measure retainNumBackups intervals; beyond it the walk is extrapolated. */
const MAX_STEPS = 1000;
const READ_GRANTS = 'grant the controller\'s user s3:GetBucketVersioning and s3:GetBucketObjectLockConfiguration to have it checked';

/**
 * How long a policy keeps a backup: its oldest kept backup is forgotten when the backup `retainNumBackups` firings later
 * is taken, so retainNumBackups intervals of its schedule, measured on the schedule's next firings (a cron schedule's
 * intervals need not be equal). Undefined for a schedule that does not parse (its policy reports that itself).
 */
export function policyKeepsMs(p: Pick<MetadataBackupPolicySpec, 'schedule' | 'timeZone' | 'retainNumBackups'>, now: Date): number | undefined {
  let schedule: ReturnType<typeof parseSchedule>;
  try {
    schedule = parseSchedule(p.schedule, p.timeZone);
  } catch {
    return undefined;
  }
  const n = p.retainNumBackups ?? 120;
  const steps = Math.min(n, MAX_STEPS);
  const first = schedule.next(now);
  let t = first;
  for (let i = 0; i < steps; i++) t = schedule.next(t);
  return (t.getTime() - first.getTime()) * (n / steps);
}

/**
 * Days the bucket's default retention should last: spec.protection.minRetentionDays when set, else the longest time a
 * policy of the location keeps a backup, in whole days rounded up; undefined without either.
 */
export function neededRetentionDays(spec: ProtectionSpec, policies: Pick<MetadataBackupPolicySpec, 'schedule' | 'timeZone' | 'retainNumBackups'>[],
  now: Date): number | undefined {
  if (spec.minRetentionDays) return spec.minRetentionDays;
  const kept = policies.map((p) => policyKeepsMs(p, now)).filter((ms): ms is number => ms !== undefined);
  return kept.length > 0 ? Math.ceil(Math.max(...kept) / DAY_MS) : undefined;
}

export interface ProtectionReport {
  /** status.protection without its checkTime. */
  status: Omit<ProtectionStatus, 'checkTime'>;
  condition: { status: 'True' | 'False' | 'Unknown'; reason: string; message: string };
  /** The event to record: Warning when the bucket falls short of the spec, Normal otherwise. */
  event: { type: 'Normal' | 'Warning'; reason: string; message: string };
}

/** What was found, in words: "versioning Enabled, object lock Enabled, default retention COMPLIANCE 30 days". */
export function describeBucket(found: BucketProtection): string {
  const retention = found.retention ? `, default retention ${found.retention.mode} ${found.retention.days} days`
    : found.objectLock === 'Enabled' ? ', no default retention' : '';
  return `versioning ${found.versioning}, object lock ${found.objectLock}${retention}`;
}

/** The bucket as status.protection describes it, for messages written later (a prune); "as declared" before a check. */
export function describeProtectionStatus(st: ProtectionStatus | undefined): string {
  if (!st?.versioning) return 'protected as declared';
  const retention = st.retentionMode && st.retentionMode !== 'None' ? `, default retention ${st.retentionMode} ${st.retentionDays ?? 0} days` : '';
  return `versioning ${st.versioning}, object lock ${st.objectLock ?? 'Unknown'}${retention}`;
}

/** Pure: the Protected condition, status.protection and the event, from what the spec declares and the bucket answered. */
export function protectionReport(spec: ProtectionSpec, found: BucketProtection, neededDays: number | undefined): ProtectionReport {
  const seen = describeBucket(found);
  const unread = found.unreadable.length > 0 ? ` (${found.unreadable.join('; ')})` : '';
  const verdict = (status: 'True' | 'False' | 'Unknown', reason: string, message: string): ProtectionReport => ({
    status: {
      versioning: found.versioning, objectLock: found.objectLock, retentionMode: found.retention?.mode ?? 'None',
      retentionDays: found.retention?.days ?? 0, neededRetentionDays: neededDays ?? 0, message,
    },
    condition: { status, reason, message },
    event: status === 'False' ? { type: 'Warning', reason: BUCKET_NOT_PROTECTED, message }
      : reason === R.retentionTooShort ? { type: 'Warning', reason: RETENTION_TOO_SHORT, message }
        : status === 'Unknown' ? { type: 'Normal', reason: BUCKET_PROTECTION_UNKNOWN, message }
          : { type: 'Normal', reason: BUCKET_PROTECTED, message },
  });
  const notVersioned = found.versioning === 'Off' || found.versioning === 'Suspended';
  if (notVersioned) {
    // Object lock cannot be on without versioning, so this settles both expectations.
    return verdict('False', R.notVersioned, `spec.protection expects ${spec.expected}, but the bucket has ${seen}${unread}: ` +
      'a delete with the controller\'s keys destroys backups. Enable versioning (and object lock) on the bucket, as its owner');
  }
  if (spec.expected === 'Versioning') {
    if (found.versioning === 'Enabled') return verdict('True', R.versioned, `The bucket keeps old versions: ${seen}${unread}`);
    return verdict('Unknown', R.unknown, `Cannot tell whether the bucket is versioned${unread}; ${READ_GRANTS}`);
  }
  if (found.objectLock === 'Unknown') {
    return verdict('Unknown', R.unknown, `Cannot tell whether the bucket has object lock: ${seen}${unread}; ${READ_GRANTS}`);
  }
  if (found.objectLock === 'Off' || !found.retention) {
    return verdict('False', R.notLocked, `spec.protection expects ObjectLock, but the bucket has ${seen}${unread}: ` +
      'object versions are not locked. Set object lock with a default retention on the bucket, as its owner (docs/immutable-backups.md)');
  }
  if (neededDays !== undefined && found.retention.days < neededDays) {
    return verdict('True', R.retentionTooShort, `The bucket's default retention (${found.retention.days} days) is shorter than the ` +
      `${neededDays} days this location keeps backups (${seen}): a version of an old backup can be deleted before the backup expires. ` +
      `Raise the default retention to at least ${neededDays} days, as the bucket's owner`);
  }
  return verdict('True', R.objectLocked, `Object versions are locked: ${seen}${unread}`);
}

/**
 * What kubedr_backup_location_protected shows for a location: its Protected condition as true or false; undefined (no
 * series) without spec.protection or while the condition is Unknown or not yet set.
 */
export function protectedForMetric(loc: Pick<BackupLocation, 'spec' | 'status'>): boolean | undefined {
  const status = loc.spec.protection ? loc.status?.conditions?.find((c) => c.type === PROTECTED)?.status : undefined;
  return status === 'True' ? true : status === 'False' ? false : undefined;
}

/**
 * Pure: whether a failed prune is what a protected bucket is meant to refuse: its keys may not delete (AccessDenied).
 * Anything else (endpoint away, a lock, damage) is a failure, protected or not.
 */
export function refusedByProtection(spec: ProtectionSpec | undefined, err: unknown): boolean {
  return spec !== undefined && err instanceof EngineError && err.kind === 'AccessDenied';
}

/**
 * What a person holding the maintenance keys runs where the controller's keys stop. In a versioned bucket a delete only
 * adds a delete marker, whoever makes it, so space is freed by a lifecycle rule that removes versions once they are no
 * longer current and their retention has ended. When the bucket refused the prune (`refused`), the prune itself is run
 * first, with the maintenance keys.
 */
export function maintenanceCommand(loc: Pick<BackupLocation, 'spec' | 'status'>, refused: boolean): string {
  const days = Math.max(loc.status?.protection?.retentionDays ?? 0, loc.status?.protection?.neededRetentionDays ?? 0, 1);
  const rule = `{"Rules":[{"ID":"kubedr-noncurrent-versions","Status":"Enabled","Filter":{},"NoncurrentVersionExpiration":{"NoncurrentDays":${days}}}]}`;
  const lifecycle = `aws s3api put-bucket-lifecycle-configuration --endpoint-url ${loc.spec.url} --bucket ${loc.spec.bucketName} --lifecycle-configuration '${rule}'`;
  const prune = `restic -r s3:${loc.spec.url.replace(/\/+$/, '')}/${loc.spec.bucketName} prune`;
  return refused ? `${prune} with the maintenance keys, and once: ${lifecycle}` : `once, with the maintenance keys: ${lifecycle}`;
}
