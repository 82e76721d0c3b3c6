/**
 * @module The four custom resources, defined once as OpenAPI schemas. The CRD manifests in `crds/` are generated
 * from these (`bun scripts/gen-crds.ts`, checked by a test) and the TypeScript types in `types.ts` are derived from them.
 * Schemas stay structural and valid on Kubernetes 1.20 (no CEL rules).
 */
import { GROUP, VERSION } from './group.ts';

export type Schema =
  | { type: 'string'; description?: string; minLength?: number; default?: string; enum?: readonly string[]; format?: string }
  | { type: 'integer'; description?: string; minimum?: number; default?: number; format?: string }
  | { type: 'boolean'; description?: string; default?: boolean }
  | { type: 'array'; description?: string; items: Schema; 'x-kubernetes-list-type'?: string; 'x-kubernetes-list-map-keys'?: readonly string[] }
  | {
      type: 'object';
      description?: string;
      properties?: Readonly<Record<string, Schema>>;
      required?: readonly string[];
      additionalProperties?: Schema;
    };

const str = (description: string, extra: { minLength?: number; default?: string; format?: string } = {}) =>
  ({ type: 'string', description, ...extra }) as const;
const int = (description: string, extra: { minimum?: number; default?: number } = {}) =>
  ({ type: 'integer', format: 'int64', description, ...extra }) as const;
const required = (description: string) => str(description, { minLength: 1 });

/** Standard Kubernetes conditions (metav1.Condition), so `kubectl wait --for=condition=Ready` works. */
const conditions = {
  type: 'array',
  description: 'Standard conditions; Ready is True when the resource is usable.',
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
  items: {
    type: 'object',
    required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
    properties: {
      type: required('Condition type, e.g. Ready.'),
      status: { type: 'string', enum: ['True', 'False', 'Unknown'], description: 'True, False or Unknown.' },
      observedGeneration: int('The .metadata.generation the condition was set for.'),
      lastTransitionTime: str('When the status last changed.', { format: 'date-time' }),
      reason: str('CamelCase reason.'),
      message: str('Human-readable detail.'),
    },
  },
} as const;

export const backupLocationSchema = {
  type: 'object',
  required: ['spec'],
  properties: {
    spec: {
      type: 'object',
      description: 'An S3 bucket holding a restic repository.',
      required: ['url', 'bucketName', 'credentials'],
      properties: {
        url: required('S3 endpoint, e.g. https://s3.example.com:9000 (no bucket in the path).'),
        bucketName: required('Bucket for the restic repository; created if missing.'),
        credentials: required(
          'Secret in the same namespace with access_key, secret_key, restic_repo_password and optionally ca.crt.'),
        protection: {
          type: 'object',
          description: 'Declares that the bucket keeps old object versions, so the controller\'s keys cannot destroy backups (docs/immutable-backups.md). The controller checks it at init and reports status.protection and the Protected condition; pruning then leaves the space of old versions to the bucket\'s owner. Optional.',
          required: ['expected'],
          properties: {
            expected: { type: 'string', enum: ['Versioning', 'ObjectLock'],
              description: 'What the bucket provides: Versioning (versioning enabled: a delete only adds a delete marker), or ObjectLock (object lock with a default retention: versions cannot be deleted before it ends).' },
            minRetentionDays: int('With ObjectLock: warn when the bucket\'s default retention is shorter than this many days. Default: the longest time a policy of this location keeps a backup (retainNumBackups × its schedule\'s interval).', { minimum: 1 }),
          },
        },
      },
    },
    status: {
      type: 'object',
      properties: {
        initStatus: { type: 'string', enum: ['Initializing', 'Completed', 'Failed'], description: 'Repository initialisation state.' },
        initErrorMessage: str('Why initialisation failed; empty on success.'),
        initTime: str('When initialisation last finished (RFC 3339).'),
        lastPruneTime: str('When the repository was last pruned (data of forgotten snapshots removed), RFC 3339.'),
        lastPruneResult: { type: 'string', enum: ['Succeeded', 'LeftToMaintenance', 'Failed'], description: 'Outcome of the last prune: Succeeded; LeftToMaintenance (spec.protection: the bucket keeps old versions, or refused the prune, and a person with the maintenance keys frees the space); Failed (retried; forgotten snapshots keep their space meanwhile).' },
        lastPruneMessage: str('What the last prune did, what it left to a person holding the maintenance keys (with the command they run), or why it failed.'),
        lastCheckTime: str('When a scheduled check last read the repository\'s data (restic check --read-data-subset), RFC 3339.'),
        lastCheckResult: { type: 'string', enum: ['Passed', 'Damaged', 'Failed'], description: 'Outcome of that check: Passed, Damaged (found damage; repaired as far as restic can, see the RepositoryDamaged events), or Failed (the check did not run to its end).' },
        lastCheckMessage: str('What the last check read or found.'),
        observedGeneration: int('The .metadata.generation this status describes.'),
        observedCredentialsVersion: str('resourceVersion of the credentials Secret this status describes.'),
        protection: {
          type: 'object',
          description: 'What the bucket was found to provide, when spec.protection declares it protected (read at init with the controller\'s keys).',
          properties: {
            versioning: { type: 'string', enum: ['Enabled', 'Suspended', 'Off', 'Unknown'], description: 'The bucket\'s versioning (GetBucketVersioning); Unknown: the keys may not read it (see message).' },
            objectLock: { type: 'string', enum: ['Enabled', 'Off', 'Unknown'], description: 'The bucket\'s object lock (GetObjectLockConfiguration); Unknown: the keys may not read it (see message).' },
            retentionMode: { type: 'string', enum: ['GOVERNANCE', 'COMPLIANCE', 'None'], description: 'Mode of the default retention of new object versions; None: no default retention (or no object lock).' },
            retentionDays: int('Days of the default retention (years count 365 days); 0 without one.'),
            neededRetentionDays: int('Days the retention should last: spec.protection.minRetentionDays, else the longest retainNumBackups × schedule interval of the location\'s policies; 0 when unknown.'),
            message: str('What was found and what to do about it.'),
            checkTime: str('When the bucket was checked (RFC 3339).'),
          },
        },
        keyRotation: {
          type: 'object',
          description: 'The last rotation of the repository password (restic_repo_new_password in the credentials Secret; docs/key-rotation.md).',
          properties: {
            phase: { type: 'string', enum: ['Switched', 'Completed', 'Cancelled', 'Failed'], description: 'Switched: the new key is in the repository and in use, the old one still opens it; Completed: the old key is removed; Cancelled: restic_repo_new_password was removed before restic_repo_password changed, and the new key is removed; Failed: the next step failed (message).' },
            message: str('What happened, or what the user does next.'),
            oldKeyId: str('restic key id of the password being replaced.'),
            newKeyId: str('restic key id of the new password.'),
            time: str('When the phase was set (RFC 3339).'),
          },
        },
        conditions,
      },
    },
  },
} as const;

export const backupPolicySchema = {
  type: 'object',
  required: ['spec'],
  properties: {
    spec: {
      type: 'object',
      description: 'What to back up (etcd and certificates), where, when and how many to keep.',
      required: ['destination', 'schedule'],
      properties: {
        destination: required('Name of the BackupLocation.'),
        certsDir: str('Directory of certificates to back up, e.g. /etc/kubernetes/pki. Optional.'),
        extraPaths: {
          type: 'array',
          description: 'More host paths (absolute; files or directories) to store with the snapshot, restored under data/extra/<path>, e.g. the directory of the API server\'s --encryption-provider-config. Each must be mounted into the controller\'s pod. Optional.',
          items: str('An absolute path, e.g. /etc/kubernetes/enc.', { minLength: 1 }),
        },
        etcdEndpoint: str('etcd client URL.', { default: 'https://127.0.0.1:2379' }),
        etcdCreds: str('Secret with ca.crt, client.crt and client.key for etcd.', { default: 'etcd-creds' }),
        schedule: required('Cron schedule (5 fields, or @hourly, @daily, ...), as in a CronJob.'),
        timeZone: str('IANA time zone for the schedule, e.g. Europe/Berlin. Default: the controller\'s (UTC in the image).'),
        retainNumBackups: int('Successful backups to keep.', { minimum: 1, default: 120 }),
        suspend: { type: 'boolean', description: 'Pause scheduled backups.', default: false },
        options: { type: 'object', description: 'Free-form options.', additionalProperties: { type: 'string' } },
        verification: {
          type: 'object',
          description: 'Proving that backups restore: each is read back from the repository, its etcd snapshot restored into a throwaway etcd and checked.',
          properties: {
            mode: { type: 'string', enum: ['AfterBackup', 'Schedule', 'Never'], default: 'AfterBackup',
              description: 'AfterBackup (default): verify each backup once stored; Schedule: verify the newest backup on `schedule`; Never.' },
            schedule: str('Cron schedule of verification in Schedule mode (5 fields, or @daily, ...).'),
          },
        },
        continuous: {
          type: 'object',
          description: 'Continuous backup: every change to etcd between full backups is stored in the same location, so a restore can go to any second (kubedr restore --at). Optional; off by default.',
          properties: {
            enabled: { type: 'boolean', description: 'Store every change of etcd from the newest full backup on.', default: false },
            flushInterval: str('Longest time a received change waits before it is stored (Go duration: 30s, 1m).', { default: '30s' }),
          },
        },
      },
    },
    status: {
      type: 'object',
      properties: {
        backupStatus: { type: 'string', enum: ['Running', 'Completed', 'Failed'], description: 'State of the most recent backup.' },
        backupTime: str('When the most recent backup finished (RFC 3339).'),
        backupErrorMessage: str('Why the most recent backup failed; empty on success.'),
        filesNew: int('restic: new files.'),
        filesChanged: int('restic: changed files.'),
        dataAdded: int('restic: bytes added to the repository.'),
        totalBytesProcessed: int('restic: bytes read.'),
        totalDurationSecs: str('Wall time of the whole backup, seconds (fractional).'),
        snapshotId: str('restic snapshot id of the most recent backup, if it succeeded.'),
        mbrName: str('MetadataBackupRecord of the most recent backup, if it succeeded.'),
        lastSuccessfulBackupTime: str('When the last successful backup finished (RFC 3339); kept across failures.'),
        lastSuccessfulSnapshotId: str('restic snapshot id of the last successful backup; kept across failures.'),
        backupTrigger: { type: 'string', enum: ['Scheduled', 'OnDemand'], description: 'What started the most recent backup.' },
        lastScheduleTime: str('The most recent scheduled slot served (run or skipped), RFC 3339.'),
        nextBackupTime: str('When the schedule fires next (RFC 3339); empty while suspended.'),
        lastVerifiedTime: str('When a backup of this policy was last verified by restoring it (RFC 3339).'),
        lastVerifiedSnapshotId: str('The snapshot that verification proved restorable.'),
        backupNowServed: str('The value of the backup-now annotation last served, so each value runs once.'),
        progress: {
          type: 'object',
          description: 'Progress of the running backup.',
          properties: {
            phase: { type: 'string', enum: ['Queued', 'Snapshot', 'Upload'], description: 'Queued (waiting for a slot), Snapshot (etcd), Upload (restic; with restic ≥ 0.17 it stores etcd\'s stream as it arrives).' },
            bytesDone: int('Bytes done in this phase.'),
            totalBytes: int('Bytes in this phase, when known.'),
            percent: { type: 'integer', description: 'Upload progress, 0 to 100.' },
            waitingFor: str('What the backup waits for, when it waits: another writer\'s repository lock, with its holder.'),
            updateTime: str('When this progress was written.'),
          },
        },
        continuous: {
          type: 'object',
          description: 'Continuous backup of the policy, when enabled.',
          properties: {
            state: { type: 'string', enum: ['Recording', 'Retrying', 'Stopped'], description: 'Recording (the watch runs and changes are stored), Retrying (etcd or S3 failed: see message), Stopped.' },
            message: str('What happens now, or why it failed.'),
            fromRevision: int('The revision the watch started from.'),
            lastStoredRevision: int('The newest etcd revision stored.'),
            lastStoredTime: str('When the newest stored change was received (RFC 3339): the newest time a restore can reach.'),
            lastChangeSet: str('restic snapshot id of the newest change set.'),
            gaps: int('Gaps recorded by this controller: stretches no restore can reach (etcd compacted what was not yet stored).'),
            lastGap: str('The newest gap, in words.'),
            lastVerifiedTime: str('When the chain was last proven (rebuilt from S3 and compared with etcd), RFC 3339.'),
            lastVerifiedRevision: int('The revision that proof rebuilt.'),
            lastVerificationResult: { type: 'string', enum: ['Passed', 'Failed'], description: 'Passed: the rebuilt revision has exactly the history etcd had; Failed: see lastVerificationMessage.' },
            lastVerificationMessage: str('What the last proof found.'),
            updateTime: str('When this was written.'),
          },
        },
        observedGeneration: int('The .metadata.generation this status describes.'),
        conditions,
      },
    },
  },
} as const;

export const backupRecordSchema = {
  type: 'object',
  required: ['spec'],
  properties: {
    spec: {
      type: 'object',
      description: 'One successful backup.',
      required: ['snapshotId', 'policy', 'backuploc'],
      properties: {
        snapshotId: required('restic snapshot id.'),
        policy: required('MetadataBackupPolicy that took the backup.'),
        backuploc: required('BackupLocation holding the snapshot.'),
      },
    },
    status: {
      type: 'object',
      properties: {
        backupTime: str('When the backup finished (RFC 3339).'),
        etcdRevision: int('etcd revision of the snapshot.'),
        etcdSnapshotSize: int('Size of the etcd snapshot in bytes.'),
        etcdSnapshotSha256: str('SHA-256 of the etcd snapshot without its last 32 bytes: the value of its own integrity trailer.'),
        dataAdded: int('restic: bytes added to the repository.'),
        totalBytesProcessed: int('restic: bytes read.'),
        totalDurationSecs: str('Wall time of the backup, seconds (fractional).'),
        message: str('Why the record cannot be removed yet, if so.'),
        certificates: {
          type: 'array',
          description: 'The X.509 certificates the backup holds: each file under certsDir with at least one certificate, and the earliest expiry in it.',
          items: {
            type: 'object',
            required: ['file', 'notAfter'],
            properties: {
              file: str('Path of the file relative to certsDir, e.g. etcd/server.crt.'),
              notAfter: str('The earliest notAfter among the file\'s certificates (RFC 3339).'),
            },
          },
        },
        earliestCertificateExpiry: str('The earliest notAfter among all the certificates the backup holds (RFC 3339).'),
        verification: {
          type: 'object',
          description: 'The proof that this backup restores: read back from the repository, restored into a throwaway etcd, checked.',
          properties: {
            time: str('When the verification finished (RFC 3339).'),
            result: { type: 'string', enum: ['Succeeded', 'Failed'], description: 'Whether the backup restored and held a Kubernetes etcd.' },
            revision: int('etcd revision of the restored snapshot.'),
            keyCount: int('Keys in the restored etcd.'),
            durationSecs: str('Wall time of the verification, seconds (fractional).'),
            message: str('What was checked, or why it failed.'),
          },
        },
        damage: {
          type: 'object',
          description: 'Set when a check of the repository found that this backup references data that was damaged and could not be salvaged: it does not restore.',
          properties: {
            time: str('When the damage was found (RFC 3339).'),
            message: str('What was damaged, and what was done.'),
          },
        },
        conditions,
      },
    },
  },
} as const;

export const restoreSchema = {
  type: 'object',
  required: ['spec'],
  properties: {
    spec: {
      type: 'object',
      description: 'Restore a recorded backup into a PersistentVolumeClaim (pvcName), chosen objects of it into the live cluster (objects), or serve it as a read-only API (browse).',
      required: ['mbrName'],
      properties: {
        mbrName: required('MetadataBackupRecord to restore.'),
        pvcName: str('PersistentVolumeClaim in the same namespace to restore the backup\'s files into. Give one of pvcName, objects and browse.', { minLength: 1 }),
        objects: {
          type: 'object',
          description: 'Re-create chosen objects of the backup in the live cluster, as kubedr restore-objects does: the backup is served by the cluster\'s own kube-apiserver image in the restore pod. Needs the controller\'s --object-restore-service-account (the Helm chart\'s objectRestore.enabled). Give one of pvcName, objects and browse.',
          properties: {
            namespace: str('Namespace whose objects (all of them, or those in names) are restored, with the Namespace itself when the cluster lacks it.', { minLength: 1 }),
            names: { type: 'array', description: 'Only these objects of the namespace, as KIND/NAME the way kubectl spells them (deployment/web, cm/settings).', items: { type: 'string', minLength: 1 } },
            crd: str('A CustomResourceDefinition (PLURAL.GROUP) to restore with its objects (with namespace: only that namespace\'s).', { minLength: 1 }),
            overwrite: { type: 'boolean', description: 'Replace objects that exist with the backup\'s version (default: leave them and report them).' },
            dryRun: { type: 'boolean', description: 'Only say what would be done (the API server checks each object); nothing is changed.' },
          },
        },
        browse: {
          type: 'object',
          description: 'Serve the backup as a read-only Kubernetes API in the restore pod, for kubectl through a port-forward (kubedr browse --restore NAME does both). The pod uses the cluster\'s own kube-apiserver image. Ends at timeLimit, or when the MetadataRestore is deleted. Give this, pvcName or objects.',
          required: ['tokenSecret'],
          properties: {
            tokenSecret: required('Secret in the same namespace whose key "token" is the bearer token the browse accepts (its only user; read-only).'),
            timeLimit: str('How long the browse serves, e.g. 30m or 2h. Default 1h.', { default: '1h' }),
          },
        },
        at: str('Restore the record\'s policy to this point instead of the record\'s backup: a time (RFC 3339 with a zone, e.g. 2026-12-04T14:03:27Z) or "latest" (its last stored change). Continuous policies only (spec.continuous). Optional.'),
      },
    },
    status: {
      type: 'object',
      properties: {
        restoreStatus: { type: 'string', enum: ['Running', 'Completed', 'Failed'], description: 'Restore state.' },
        restoreErrorMessage: str('Why the restore failed; empty on success.'),
        objectsRestored: str('For an objects restore: what was done, e.g. "212 created, 3 exists" (each object in the restore pod\'s log).'),
        restoreTime: str('When the restore finished (RFC 3339).'),
        observedGeneration: int('The .metadata.generation this status describes.'),
        conditions,
      },
    },
  },
} as const;

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
}

export interface KindDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  schema: Schema;
  printerColumns: PrinterColumn[];
}

const age: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

export const kinds: KindDefinition[] = [
  {
    kind: 'BackupLocation', plural: 'backuplocations', singular: 'backuplocation', shortNames: ['bl', 'backuploc'],
    schema: backupLocationSchema,
    printerColumns: [
      { name: 'URL', type: 'string', jsonPath: '.spec.url' },
      { name: 'Bucket', type: 'string', jsonPath: '.spec.bucketName' },
      { name: 'Status', type: 'string', jsonPath: '.status.initStatus' },
      { name: 'Message', type: 'string', jsonPath: '.status.initErrorMessage', priority: 1 },
      age,
    ],
  },
  {
    kind: 'MetadataBackupPolicy', plural: 'metadatabackuppolicies', singular: 'metadatabackuppolicy', shortNames: ['mbp'],
    schema: backupPolicySchema,
    printerColumns: [
      { name: 'Schedule', type: 'string', jsonPath: '.spec.schedule' },
      { name: 'Suspended', type: 'boolean', jsonPath: '.spec.suspend' },
      { name: 'Last Status', type: 'string', jsonPath: '.status.backupStatus' },
      { name: 'Healthy', type: 'string', jsonPath: '.status.conditions[?(@.type=="LastBackupSucceeded")].status' },
      { name: 'Last Backup', type: 'date', jsonPath: '.status.backupTime' },
      { name: 'Snapshot', type: 'string', jsonPath: '.status.snapshotId' },
      { name: 'Location', type: 'string', jsonPath: '.spec.destination', priority: 1 },
      { name: 'Message', type: 'string', jsonPath: '.status.backupErrorMessage', priority: 1 },
      // Continuous backup (-o wide): the newest time a restore can reach, and whether the watch records now.
      { name: 'Continuous', type: 'string', jsonPath: '.status.continuous.state', priority: 1 },
      { name: 'Last Change Stored', type: 'date', jsonPath: '.status.continuous.lastStoredTime', priority: 1 },
      age,
    ],
  },
  {
    kind: 'MetadataBackupRecord', plural: 'metadatabackuprecords', singular: 'metadatabackuprecord', shortNames: ['mbr'],
    schema: backupRecordSchema,
    printerColumns: [
      { name: 'Snapshot', type: 'string', jsonPath: '.spec.snapshotId' },
      { name: 'Policy', type: 'string', jsonPath: '.spec.policy' },
      { name: 'Location', type: 'string', jsonPath: '.spec.backuploc' },
      { name: 'Backup Time', type: 'date', jsonPath: '.status.backupTime' },
      age,
    ],
  },
  {
    kind: 'MetadataRestore', plural: 'metadatarestores', singular: 'metadatarestore', shortNames: ['mr'],
    schema: restoreSchema,
    printerColumns: [
      { name: 'Record', type: 'string', jsonPath: '.spec.mbrName' },
      { name: 'PVC', type: 'string', jsonPath: '.spec.pvcName' },
      { name: 'Status', type: 'string', jsonPath: '.status.restoreStatus' },
      { name: 'Message', type: 'string', jsonPath: '.status.restoreErrorMessage', priority: 1 },
      age,
    ],
  },
];

/** The apiextensions.k8s.io/v1 CustomResourceDefinition for one kind. */
export function crdManifest(def: KindDefinition): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${def.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: {
        kind: def.kind, listKind: `${def.kind}List`, plural: def.plural, singular: def.singular,
        shortNames: def.shortNames, categories: ['kubedr'],
      },
      versions: [{
        name: VERSION,
        served: true,
        storage: true,
        subresources: { status: {} },
        additionalPrinterColumns: def.printerColumns,
        schema: { openAPIV3Schema: def.schema },
      }],
    },
  };
}
