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
/** MetadataRestore with spec.browse: the backup is served; the message says how to reach it. */
export const BROWSE_READY = 'BrowseReady';

/** MetadataBackupPolicy: a due backup was skipped because the previous one is still running. */
export const BACKUP_SKIPPED = 'BackupSkipped';
/** MetadataBackupPolicy: old backups were expired by retention. */
export const BACKUPS_EXPIRED = 'BackupsExpired';
/** MetadataBackupPolicy: retention could not expire old backups; they are kept and retried after the next backup. */
export const RETENTION_FAILED = 'RetentionFailed';
/** MetadataBackupRecord: the restic snapshot could not be forgotten; the record stays until it can be. */
export const FORGET_FAILED = 'ForgetFailed';

/**
 * MetadataBackupPolicy: a snapshot of this policy was in the repository without a record (the controller stopped or the
 * API was unreachable after the backup stored it, or etcd was restored from a snapshot taken during the backup); its
 * record was made from the repository.
 */
export const BACKUP_ADOPTED = 'BackupAdopted';
/** MetadataBackupPolicy: a backup was read back from the repository, restored into a throwaway etcd and checked. */
export const BACKUP_VERIFIED = 'BackupVerified';
/** MetadataBackupPolicy: verifying a backup by restoring it failed; the message says what. */
export const BACKUP_VERIFICATION_FAILED = 'BackupVerificationFailed';
/**
 * MetadataBackupPolicy: a verification failed and a check of the repository found damaged data; restic repaired what it
 * could, the records of backups that lost data are marked (status.damage), and a new backup is taken at once.
 */
export const REPOSITORY_DAMAGED = 'RepositoryDamaged';
/** BackupLocation: a scheduled check of the repository's data did not run to its end; it is tried at the next interval. */
export const REPOSITORY_CHECK_FAILED = 'RepositoryCheckFailed';
/** BackupLocation: pruning the repository failed; it is tried again at the next prune check. */
export const PRUNE_FAILED = 'PruneFailed';
/**
 * BackupLocation (spec.protection): the bucket does not provide the protection its spec declares (versioning or object
 * lock off, no default retention). Backups go on; the controller's keys can destroy them.
 */
export const BUCKET_NOT_PROTECTED = 'BucketNotProtected';
/** BackupLocation (spec.protection): the bucket's default retention ends before the policies' oldest backups. */
export const RETENTION_TOO_SHORT = 'RetentionTooShort';
/** BackupLocation (spec.protection): the bucket provides the protection declared; the message says what was found. */
export const BUCKET_PROTECTED = 'BucketProtected';
/** BackupLocation (spec.protection): the controller's keys may not read the bucket's versioning or object lock settings. */
export const BUCKET_PROTECTION_UNKNOWN = 'BucketProtectionUnknown';
/**
 * BackupLocation (spec.protection), Normal: a prune did what the controller's keys may do and the bucket kept the rest
 * (old object versions), or the bucket refused it: expected on a protected bucket. The message has the command a person
 * holding the maintenance keys runs to free the space.
 */
export const PRUNE_LEFT_TO_MAINTENANCE = 'PruneLeftToMaintenance';
/**
 * MetadataBackupRecord: the record was deleted after its BackupLocation (e.g. with the namespace), so its snapshot
 * could not be forgotten; the record is released and the snapshot stays in S3.
 */
export const SNAPSHOT_KEPT = 'SnapshotKept';
/**
 * MetadataBackupPolicy: continuous backup lost changes (etcd compacted revisions before they were stored: the controller
 * was down or behind); no restore can reach the gap, and a full backup is taken at once so a new chain starts.
 */
export const CONTINUOUS_BACKUP_GAP = 'ContinuousBackupGap';
/** MetadataBackupPolicy: the chain was proven: a revision rebuilt from S3 has exactly the history etcd had. */
export const CONTINUOUS_BACKUP_VERIFIED = 'ContinuousBackupVerified';
/** MetadataBackupPolicy: the chain did not rebuild, or rebuilt to another history than etcd's: restores to a time are not to be trusted. */
export const CONTINUOUS_BACKUP_VERIFICATION_FAILED = 'ContinuousBackupVerificationFailed';
/** MetadataBackupPolicy: continuous backup's watch of etcd or a store to S3 failed; it is retried, nothing is dropped yet. */
export const CONTINUOUS_BACKUP_FAILED = 'ContinuousBackupFailed';
/** MetadataBackupRecord: the record's snapshot is no longer in the repository (forgotten or pruned by hand). */
export const SNAPSHOT_MISSING = 'SnapshotMissing';
/**
 * MetadataBackupRecord or MetadataBackupPolicy: the snapshot a record points at was taken by another cluster (or
 * another install) sharing the bucket, so it was not forgotten: only its own cluster may expire it.
 */
export const FOREIGN_SNAPSHOT_KEPT = 'ForeignSnapshotKept';
/**
 * BackupLocation: its repository holds snapshots of this namespace's policy names without a cluster identity (taken by
 * an earlier version, by KubeDR, or by hand): they are not adopted, forgotten or restored as "latest" unless the
 * controller is told to (--adopt-unmarked-snapshots).
 */
export const UNMARKED_SNAPSHOTS = 'UnmarkedSnapshotsIgnored';

/** BackupLocation: a new repository password was added to the repository as a key (restic key add). */
export const KEY_ADDED = 'RepositoryKeyAdded';
/** BackupLocation: the new key opens the repository, and the controller now uses it; the old one still opens it too. */
export const KEY_SWITCHED = 'RepositoryKeySwitched';
/** BackupLocation: the old repository key was removed: its password no longer opens the repository. */
export const KEY_REMOVED = 'RepositoryKeyRemoved';
/** BackupLocation: a key rotation could not take its next step; the message says why and what to do. */
export const KEY_ROTATION_FAILED = 'RepositoryKeyRotationFailed';

export const messages = {
  initSucceeded: (repo: string) => `Repo at ${repo} is successfully initialized`,
  backupSucceeded: (snapshotId: string) => `Backup completed, snapshot ID: ${snapshotId}`,
  restoreSucceeded: (snapshotId: string) => `Restore from snapshot ${snapshotId} completed`,
  backupAdopted: (snapshotId: string, time: string) =>
    `Snapshot ${snapshotId} (taken ${time}) was in the repository without a record: record mbr-${snapshotId.slice(0, 8)} made from it`,
  snapshotKept: (snapshotId: string, location: string, repository?: string) =>
    `BackupLocation "${location}" is gone, so snapshot ${snapshotId} could not be forgotten: it stays in that location's ` +
    `repository. If it is no longer needed, remove it with: restic -r ${repository ?? '<repository>'} forget ${snapshotId} --prune`,
  snapshotKeptNamespaceDeleted: (snapshotId: string, namespace: string) =>
    `Namespace "${namespace}" is being deleted, so snapshot ${snapshotId} was not forgotten: it stays in S3 for a new ` +
    'install (or `kubedr snapshots`) to find',
  foreignSnapshotKept: (snapshotId: string, cluster: string) =>
    `Snapshot ${snapshotId} belongs to cluster ${cluster}, which shares this bucket: it was not forgotten (only its own ` +
    'cluster expires it); the record that pointed at it is released',
  unmarkedSnapshots: (count: number, policies: string[]) =>
    `${count} snapshot(s) tagged with this namespace's policy names (${policies.join(', ')}) carry no cluster identity ` +
    '(taken before kubedr recorded one, by KubeDR, or by hand) and have no record: they are left alone, neither adopted ' +
    'nor expired. If they are this cluster\'s, start the controller with --adopt-unmarked-snapshots (Helm value ' +
    'adoptUnmarkedSnapshots=true) once',
  snapshotMissing: (snapshotId: string, location: string) =>
    `Snapshot ${snapshotId} is no longer in BackupLocation "${location}"'s repository: this backup cannot be restored; delete the record`,
};
