/**
 * @module Which cluster, and which install in it, took a backup. Several clusters (or several installs in one cluster)
 * may share a bucket; each must act only on its own snapshots: adopt, forget and "latest" never reach across. The
 * origin travels as restic tags on every snapshot, so the repository alone says whose a snapshot is, also when the
 * cluster is gone. Plain values: the caller says what identifies its cluster (the controller uses the `kube-system`
 * namespace's UID, which survives an etcd restore and is unique per cluster).
 */

/** The cluster and install a backup belongs to. */
export interface BackupOrigin {
  /** Stable, unique id of the cluster: the UID of its `kube-system` namespace. */
  clusterId: string;
  /** A readable name for people (`kubedr snapshots`); not used to decide ownership. */
  clusterName: string;
  /** The namespace of the install whose policies took the backup. */
  namespace: string;
}

/** Tag prefixes; restic tags may hold any character but the comma, which no Kubernetes UID, name or namespace has. */
export const CLUSTER_ID_TAG = 'kubedr-cluster-id=';
export const CLUSTER_NAME_TAG = 'kubedr-cluster=';
export const NAMESPACE_TAG = 'kubedr-namespace=';
/**
 * First tag of a change set of continuous backup (engine/continuous), followed by its policy's name. A Kubernetes name
 * holds no "=", so no policy's full backups (whose first tag is the policy's name) can be taken for one.
 */
export const CHANGES_TAG = 'kubedr-changes=';
/** The etcd revision a full backup's snapshot was taken at (at least: the revision etcd reported just before it). */
export const REVISION_TAG = 'kubedr-etcd-revision=';

/**
 * The Kubernetes version of the cluster's API server when the backup was taken (`v1.20.2`): which kube-apiserver may
 * serve the backup's objects (engine/browse/version.ts). Absent on backups taken before it was recorded.
 */
export const KUBERNETES_VERSION_TAG = 'kubedr-kubernetes=';

/** Whether a restic snapshot is a change set of continuous backup rather than a full backup. */
export const isChangeSet = (tags: readonly string[]): boolean => tags[0]?.startsWith(CHANGES_TAG) ?? false;

/** The tags that carry `origin`, after the policy's name (which stays the first tag, as KubeDR wrote it). */
export function originTags(origin: BackupOrigin): string[] {
  return [`${CLUSTER_ID_TAG}${origin.clusterId}`, `${CLUSTER_NAME_TAG}${origin.clusterName}`, `${NAMESPACE_TAG}${origin.namespace}`];
}

const tagValue = (tags: readonly string[], prefix: string): string | undefined =>
  tags.find((t) => t.startsWith(prefix))?.slice(prefix.length);

/** A full backup's tags: the policy's name first (as KubeDR wrote it), its origin, and the cluster's version when known. */
export function backupTags(policy: string, origin: BackupOrigin, kubernetesVersion: string | undefined): string[] {
  return [policy, ...originTags(origin), ...(kubernetesVersion ? [`${KUBERNETES_VERSION_TAG}${kubernetesVersion}`] : [])];
}

/** The cluster's Kubernetes version a snapshot's tags record, if any. */
export const kubernetesVersionOf = (tags: readonly string[]): string | undefined => tagValue(tags, KUBERNETES_VERSION_TAG);

/**
 * The origin a snapshot's tags carry, or undefined for a snapshot without one: taken by kubedr before origins were
 * recorded, by KubeDR, or by hand.
 */
export function originOf(tags: readonly string[]): BackupOrigin | undefined {
  const clusterId = tagValue(tags, CLUSTER_ID_TAG);
  if (!clusterId) return undefined;
  return { clusterId, clusterName: tagValue(tags, CLUSTER_NAME_TAG) ?? '', namespace: tagValue(tags, NAMESPACE_TAG) ?? '' };
}

/**
 * Whose a snapshot is, seen from `origin`: `own` (this cluster and install), `foreign` (another cluster, or another
 * install of this one) or `unmarked` (no origin recorded: it cannot be told apart, so it is never taken as ours unless
 * the person says so).
 */
export type Ownership = 'own' | 'foreign' | 'unmarked';

export function ownership(tags: readonly string[], origin: BackupOrigin): Ownership {
  const o = originOf(tags);
  if (!o) return 'unmarked';
  return o.clusterId === origin.clusterId && o.namespace === origin.namespace ? 'own' : 'foreign';
}

/** How a person names a snapshot's cluster: its name and the start of its id, or "-" without an origin. */
export function clusterLabel(tags: readonly string[]): string {
  const o = originOf(tags);
  if (!o) return '-';
  return o.clusterName ? `${o.clusterName} (${o.clusterId.slice(0, 8)})` : o.clusterId;
}

/**
 * Whether `tags` name the cluster a person means by `wanted`: its name, its id, or a prefix of its id (4+ characters),
 * optionally followed by `/<namespace>` for one install of several in a cluster; "-" means "no origin recorded".
 */
export function matchesCluster(tags: readonly string[], wanted: string): boolean {
  const o = originOf(tags);
  if (!o) return wanted === '-';
  const [cluster = '', namespace] = wanted.split('/', 2);
  if (namespace !== undefined && namespace !== o.namespace) return false;
  return o.clusterName === cluster || o.clusterId === cluster || (cluster.length >= 4 && o.clusterId.startsWith(cluster));
}
