/** @module TypeScript types of the four custom resources, derived from the schemas in `schema.ts` (never written twice). */
import type {
  CoreV1Event, V1ContainerStatus, V1Deployment, V1Lease, V1PersistentVolumeClaim, V1Pod, V1Secret, V1Toleration,
} from '@kubernetes/client-node';
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

/**
 * A built-in object as our transport returns it: @kubernetes/client-node's model type (type-only: nothing of that
 * package runs; see the README's architecture paragraph) with every Date field as the RFC 3339 string the API sends
 * (client-node's own client would convert them; ours passes JSON through), and our ObjectMeta, in which an object
 * read from the API always has its name.
 */
export type Builtin<T> = Omit<Wire<T>, 'metadata' | 'apiVersion' | 'kind'> & KubeObject;

/** `T` as JSON carries it: Date fields are strings, recursively. */
export type Wire<T> =
  T extends Date ? string :
  T extends (infer E)[] ? Wire<E>[] :
  T extends object ? { [K in keyof T]: Wire<T[K]> } :
  T;

export type Secret = Builtin<V1Secret>;
export type Pod = Builtin<V1Pod>;
export type ContainerStatus = Wire<V1ContainerStatus>;
/** A pod's toleration of node taints; an empty key with operator Exists tolerates every taint. */
export type Toleration = Wire<V1Toleration>;
export type PersistentVolumeClaim = Builtin<V1PersistentVolumeClaim>;
export type Lease = Builtin<V1Lease>;
export type Deployment = Builtin<V1Deployment>;
/** A core/v1 Event, as `kubedr status` reads them and the recorder writes them. */
export type KubeEvent = Builtin<CoreV1Event>;
