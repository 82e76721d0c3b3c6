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

export const messages = {
  initSucceeded: (repo: string) => `Repo at ${repo} is successfully initialized`,
  backupSucceeded: (snapshotId: string) => `Backup completed, snapshot ID: ${snapshotId}`,
  restoreSucceeded: (snapshotId: string) => `Restore from snapshot ${snapshotId} completed`,
};
