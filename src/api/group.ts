/** @module API group, version, kinds and the names the controller puts on objects. */

export const GROUP = 'kubedr.catalogicsoftware.com';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Where KubeDR ran and where users keep their objects. */
export const DEFAULT_NAMESPACE = 'kubedr-system';

/** Name under which the controller writes (server-side field manager) and reports events. */
export const COMPONENT = 'kubedr';

export interface ResourceRef {
  group: string;
  version: string;
  kind: string;
  plural: string;
}

const kubedr = (kind: string, plural: string): ResourceRef => ({ group: GROUP, version: VERSION, kind, plural });

export const BACKUP_LOCATION = kubedr('BackupLocation', 'backuplocations');
export const BACKUP_POLICY = kubedr('MetadataBackupPolicy', 'metadatabackuppolicies');
export const BACKUP_RECORD = kubedr('MetadataBackupRecord', 'metadatabackuprecords');
export const RESTORE = kubedr('MetadataRestore', 'metadatarestores');

export const SECRET: ResourceRef = { group: '', version: 'v1', kind: 'Secret', plural: 'secrets' };
export const EVENT: ResourceRef = { group: '', version: 'v1', kind: 'Event', plural: 'events' };
export const POD: ResourceRef = { group: '', version: 'v1', kind: 'Pod', plural: 'pods' };
export const PVC: ResourceRef = { group: '', version: 'v1', kind: 'PersistentVolumeClaim', plural: 'persistentvolumeclaims' };
/** Cluster-scoped: read once, for the cluster's identity (kube/cluster-identity.ts). */
export const NAMESPACE: ResourceRef = { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces' };
/** The chart's controller Deployment, stopped by the uninstall hook (`kubedr release-records --stop-deployment`). */
export const DEPLOYMENT: ResourceRef = { group: 'apps', version: 'v1', kind: 'Deployment', plural: 'deployments' };
export const LEASE: ResourceRef = { group: 'coordination.k8s.io', version: 'v1', kind: 'Lease', plural: 'leases' };

/** Keys of the BackupLocation credentials Secret. */
export const LOCATION_SECRET_KEYS = {
  accessKey: 'access_key',
  secretKey: 'secret_key',
  repoPassword: 'restic_repo_password',
  /**
   * Optional: a new repository password. Its presence starts a key rotation (docs/key-rotation.md): the controller adds
   * it as a key and uses it; replacing restic_repo_password with it and removing this key ends the rotation.
   */
  newRepoPassword: 'restic_repo_new_password',
  /** Optional: CA bundle for an endpoint with a private CA. */
  caCert: 'ca.crt',
} as const;

/** Setting this annotation on a MetadataBackupPolicy to a new value starts one backup now (suspended or not). */
export const BACKUP_NOW_ANNOTATION = `${GROUP}/backup-now`;

/** Label on a MetadataBackupRecord naming its policy. */
export const POLICY_LABEL = `${GROUP}/policy`;

/** Finalizer on a MetadataBackupRecord: its restic snapshot is forgotten before the record goes. */
export const RECORD_FINALIZER = `${GROUP}/forget-snapshot`;

/** Set on a record whose snapshot retention has already forgotten, so deleting it needs no restic run. */
export const SNAPSHOT_FORGOTTEN_ANNOTATION = `${GROUP}/snapshot-forgotten`;

/**
 * Set on a record that was made from the repository after the fact (the backup stored its snapshot, but its record
 * was never written or was lost with a restored etcd), not by the backup itself.
 */
export const ADOPTED_ANNOTATION = `${GROUP}/adopted`;

/** Keys of the etcd credentials Secret (`etcdCreds`). */
export const ETCD_SECRET_KEYS = { ca: 'ca.crt', cert: 'client.crt', key: 'client.key' } as const;

/** Label on a restore pod naming its MetadataRestore; the pod informer watches only pods that carry it. */
export const RESTORE_LABEL = `${GROUP}/restore`;

/** Annotation on a restore pod: the MetadataRestore generation it restores, so a pod of an older spec is replaced. */
export const RESTORE_GENERATION_ANNOTATION = `${GROUP}/restore-generation`;

/** The image's non-root user and group (scripts/build-image.sh): restore pods run as it unless told otherwise. */
export const RESTORE_UID = 65532;
