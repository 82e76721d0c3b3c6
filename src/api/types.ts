/** @module TypeScript types of the four custom resources, derived from the schemas in `schema.ts` (never written twice). */
import type { backupLocationSchema, backupPolicySchema, backupRecordSchema, restoreSchema } from './schema.ts';

type Simplify<T> = { [K in keyof T]: T[K] } & {};

type ObjectOf<P, R> = Simplify<
  { -readonly [K in keyof P as K extends R ? K : never]: FromSchema<P[K]> } &
  { -readonly [K in keyof P as K extends R ? never : K]?: FromSchema<P[K]> }
>;

/** Maps an OpenAPI schema (as a const) to the TypeScript type of the values it admits. */
export type FromSchema<S> =
  S extends { type: 'string'; enum: readonly (infer E)[] } ? E :
  S extends { type: 'string' } ? string :
  S extends { type: 'integer' } ? number :
  S extends { type: 'boolean' } ? boolean :
  S extends { type: 'array'; items: infer I } ? FromSchema<I>[] :
  S extends { type: 'object'; properties: infer P } ? ObjectOf<P, S extends { required: readonly (infer R)[] } ? R : never> :
  S extends { type: 'object'; additionalProperties: infer A } ? Record<string, FromSchema<A>> :
  never;

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** Any Kubernetes object as it comes from the API. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

type Resource<S> = KubeObject & FromSchema<S>;

export type BackupLocation = Resource<typeof backupLocationSchema>;
export type BackupLocationSpec = BackupLocation['spec'];
export type BackupLocationStatus = NonNullable<BackupLocation['status']>;

export type MetadataBackupPolicy = Resource<typeof backupPolicySchema>;
export type MetadataBackupPolicySpec = MetadataBackupPolicy['spec'];
export type MetadataBackupPolicyStatus = NonNullable<MetadataBackupPolicy['status']>;

export type MetadataBackupRecord = Resource<typeof backupRecordSchema>;
export type MetadataBackupRecordStatus = NonNullable<MetadataBackupRecord['status']>;

export type MetadataRestore = Resource<typeof restoreSchema>;
export type MetadataRestoreStatus = NonNullable<MetadataRestore['status']>;

export type Condition = NonNullable<BackupLocationStatus['conditions']>[number];

export interface Secret extends KubeObject {
  type?: string;
  /** Base64-encoded values. */
  data?: Record<string, string>;
}

/** The parts of a Pod the restore reconciler reads (it writes Pods from a literal, see controllers/restore-pod.ts). */
export interface Pod extends KubeObject {
  spec?: Record<string, unknown>;
  status?: {
    phase?: 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';
    reason?: string;
    message?: string;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    containerStatuses?: ContainerStatus[];
  };
}

export interface ContainerStatus {
  name: string;
  state?: {
    waiting?: { reason?: string; message?: string };
    running?: { startedAt?: string };
    terminated?: { exitCode: number; reason?: string; message?: string };
  };
}

/** A pod's toleration of node taints (core/v1 Toleration); an empty key with operator Exists tolerates every taint. */
export interface Toleration {
  key?: string;
  /** Default Equal. */
  operator?: 'Exists' | 'Equal';
  value?: string;
  /** Empty: every effect. */
  effect?: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
  /** Only with effect NoExecute: how long the pod stays bound after the taint appears. */
  tolerationSeconds?: number;
}

export interface PersistentVolumeClaim extends KubeObject {
  status?: { phase?: 'Pending' | 'Bound' | 'Lost' };
}

/** The parts of a core/v1 Event that `kubedr status` reads (the controller writes Events from a literal, see runtime/recorder.ts). */
export interface KubeEvent extends KubeObject {
  type?: 'Normal' | 'Warning';
  reason?: string;
  message?: string;
  count?: number;
  involvedObject: { apiVersion?: string; kind?: string; name?: string; namespace?: string };
  firstTimestamp?: string;
  lastTimestamp?: string;
  eventTime?: string;
}
