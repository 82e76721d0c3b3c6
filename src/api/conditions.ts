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
