/** @module Standard conditions (metav1.Condition) and a pure helper to set one. */
import type { Condition } from './types.ts';

/** True when the resource is usable: a location's repository is open, a policy can run. */
export const READY = 'Ready';

/**
 * On a MetadataBackupPolicy: how its most recent backup ended (reason Succeeded, Adopted, BackupFailed or Interrupted),
 * apart from `Ready`, which says whether the policy can run (schedule valid: Scheduled, Suspended; or InvalidSchedule).
 */
export const LAST_BACKUP_SUCCEEDED = 'LastBackupSucceeded';

/**
 * On a MetadataRestore, as on a Job: `Complete` True once it restored, `Failed` True once it failed, so
 * `kubectl wait --for=condition=Complete mr/NAME` works.
 */
export const COMPLETE = 'Complete';
export const FAILED = 'Failed';

/** On a MetadataBackupRecord: whether its snapshot is still in the repository (checked by each repository sync). */
export const SNAPSHOT_AVAILABLE = 'SnapshotAvailable';

/**
 * On a BackupLocation whose spec.protection declares its bucket protected: whether the bucket provides what it declares
 * (True), does not (False), or the controller's keys may not read its settings (Unknown). Absent without spec.protection.
 */
export const PROTECTED = 'Protected';

/** Reasons (CamelCase) for the Protected condition. */
export const protectionReasons = {
  /** Versioning is on (spec.protection.expected Versioning). */
  versioned: 'Versioned',
  /** Object lock with a default retention at least as long as needed. */
  objectLocked: 'ObjectLocked',
  /** Object lock with a default retention shorter than the policies keep backups: protected, but not for long enough. */
  retentionTooShort: 'RetentionTooShort',
  /** Versioning is off or suspended: a delete destroys data. */
  notVersioned: 'NotVersioned',
  /** Object lock is off, or on without a default retention: versions can be deleted. */
  notLocked: 'NotLocked',
  /** The controller's keys may not read the settings (AccessDenied), or the request failed: nothing is known. */
  unknown: 'SettingsUnreadable',
} as const;

/** Reasons (CamelCase) for the Ready condition. */
export const reasons = {
  initializing: 'Initializing',
  repositoryReady: 'RepositoryReady',
  initFailed: 'InitFailed',
} as const;

/**
 * Returns a new list with `next` in place of the condition of the same type. The transition time moves only when the
 * status changes, as Kubernetes API conventions ask.
 */
export function setCondition(list: readonly Condition[] | undefined, next: Omit<Condition, 'lastTransitionTime'>, now: Date): Condition[] {
  const old = list?.find((c) => c.type === next.type);
  const lastTransitionTime = old && old.status === next.status ? old.lastTransitionTime : now.toISOString();
  const others = (list ?? []).filter((c) => c.type !== next.type);
  return [...others, { ...next, lastTransitionTime }];
}
