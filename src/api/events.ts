/** @module Event reasons and message templates users see in `kubectl get events`; KubeDR's reasons and shapes. */

/** BackupLocation: the restic repository was created or opened. */
export const INIT_SUCCEEDED = 'InitSucceeded';
/** BackupLocation: the repository could not be created or opened; the message says why. */
export const INIT_FAILED = 'InitFailed';
/** MetadataBackupPolicy: a backup completed. */
export const BACKUP_SUCCEEDED = 'BackupSucceeded';
/** MetadataBackupPolicy: a backup failed; the message says why. */
export const BACKUP_FAILED = 'BackupFailed';
/** MetadataRestore: the restore completed. */
export const RESTORE_SUCCEEDED = 'RestoreSucceeded';
/** MetadataRestore: the restore failed; the message says why. */
export const RESTORE_FAILED = 'RestoreFailed';

/** MetadataBackupPolicy: a due backup was skipped because the previous one is still running. */
export const BACKUP_SKIPPED = 'BackupSkipped';
/** MetadataBackupPolicy: old backups were expired by retention. */
export const BACKUPS_EXPIRED = 'BackupsExpired';
/** MetadataBackupPolicy: retention could not expire old backups; they are kept and retried after the next backup. */
export const RETENTION_FAILED = 'RetentionFailed';
/** MetadataBackupRecord: the restic snapshot could not be forgotten; the record stays until it can be. */
export const FORGET_FAILED = 'ForgetFailed';

export const messages = {
  initSucceeded: (repo: string) => `Repo at ${repo} is successfully initialized`,
  backupSucceeded: (snapshotId: string) => `Backup completed, snapshot ID: ${snapshotId}`,
  restoreSucceeded: (snapshotId: string) => `Restore from snapshot ${snapshotId} completed`,
};
