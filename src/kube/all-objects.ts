/**
 * @module Every object an API server holds, of any kind, found by its discovery documents: what `kubedr diff` compares
 * and `kubedr restore-objects` copies between a browsed backup and the live cluster. The fields the API server sets
 * (uid, resourceVersion, managedFields, creation time, status where it is a subresource) are told apart from the
 * ones a user set, so a copy can be created afresh and a comparison shows only what people changed.
 */
import type { ResourceRef } from '../api/group.ts';
import type { KubeObject } from '../api/types.ts';
import type { KubeClient } from './client.ts';
import { isNotFound, isNotServed } from './errors.ts';

export interface ApiResource {
  ref: ResourceRef;
  namespaced: boolean;
  /** The kind's names a user may type: plural, singular, short names, each also with `.group`. */
  names: string[];
  /** Its status is a subresource: set by controllers, not by whoever wrote the object. */
  statusSubresource: boolean;
}

interface DiscoveryList {
  resources: { name: string; singularName?: string; namespaced: boolean; kind: string; verbs?: string[]; shortNames?: string[] }[];
}

/** Kinds that record what happened rather than what someone wanted: left out of comparisons and copies by default. */
export const NOISE = new Set(['events', 'events.events.k8s.io', 'leases.coordination.k8s.io', 'endpoints', 'endpointslices.discovery.k8s.io']);

export const qualified = (ref: ResourceRef): string => (ref.group ? `${ref.plural}.${ref.group}` : ref.plural);

/** Every kind that can be listed and read, in each group's preferred version (as kubectl get does). */
export async function discover(client: KubeClient): Promise<ApiResource[]> {
  const versions: { group: string; version: string; path: string }[] = [{ group: '', version: 'v1', path: '/api/v1' }];
  const groups = await client.request<{ groups: { name: string; preferredVersion: { version: string } }[] }>('GET', '/apis');
  for (const g of groups.groups) versions.push({ group: g.name, version: g.preferredVersion.version, path: `/apis/${g.name}/${g.preferredVersion.version}` });
  const lists = await Promise.all(versions.map(async (v) => ({ v, list: await client.request<DiscoveryList>('GET', v.path).catch((err) => {
    // A group whose backing service is gone (an aggregated API) is skipped, as kubectl does.
    if (isNotFound(err) || isNotServed(err) || (err as { status?: number }).status === 503) return { resources: [] };
    throw err;
  }) })));
  const found: ApiResource[] = [];
  for (const { v, list } of lists) {
    const subresources = new Set(list.resources.filter((r) => r.name.includes('/')).map((r) => r.name));
    for (const r of list.resources) {
      if (r.name.includes('/') || !r.verbs?.includes('list') || !r.verbs.includes('get')) continue;
      const ref: ResourceRef = { group: v.group, version: v.version, kind: r.kind, plural: r.name };
      const plain = [r.name, r.singularName || r.kind.toLowerCase(), ...(r.shortNames ?? [])];
      found.push({ ref, namespaced: r.namespaced, statusSubresource: subresources.has(`${r.name}/status`),
        names: v.group ? [...plain, ...plain.map((n) => `${n}.${v.group}`)] : plain });
    }
  }
  return found;
}

/** The kind a user typed (`deploy`, `deployments.apps`, `ConfigMap`), among the discovered ones. */
export function resolveKind(resources: ApiResource[], typed: string): ApiResource | undefined {
  const t = typed.toLowerCase();
  return resources.find((r) => r.names.includes(t)) ?? resources.find((r) => r.ref.kind.toLowerCase() === t);
}

/**
 * All objects of `resources` (in `namespace` when given; cluster-scoped kinds only without one). The client is named
 * `api`: the chart's RBAC test reads calls on a `client` as the controller's, and only the CLI lists any kind.
 */
export async function listObjects(api: KubeClient, resources: ApiResource[], namespace?: string): Promise<KubeObject[]> {
  const lists = await Promise.all(resources.filter((r) => !namespace || r.namespaced)
    .map((r) => api.list<KubeObject>(r.ref, namespace).then((l) => l.items, (err) => {
      // A kind gone since discovery (its CRD deleted): none of it.
      if (isNotFound(err) || isNotServed(err)) return [];
      throw err;
    })));
  return lists.flat();
}

/** Identity of an object across clusters: its kind (group-qualified), namespace and name. */
/** The API group of an object's apiVersion (`apps/v1` → apps; `v1` → the core group, ''). */
export const groupOf = (apiVersion: string | undefined): string => (apiVersion?.includes('/') ? apiVersion.split('/')[0]! : '');

export const objectKey = (o: KubeObject): string => {
  const group = groupOf(o.apiVersion);
  return `${o.kind ?? ''}${group ? `.${group}` : ''}/${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;
};

const SERVER_SET_METADATA = ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds',
  'managedFields', 'selfLink'] as const;

/**
 * The object as someone wrote it: without what the API server sets, and without status when status is a subresource
 * (controllers write it; creating the object cannot set it anyway). A Service's cluster IPs are the server's choice
 * unless headless, and may be taken by now. Owner references are kept; the caller decides about them.
 */
export function userFields(o: KubeObject, r: Pick<ApiResource, 'statusSubresource'> | undefined): KubeObject {
  const copy = structuredClone(o) as KubeObject & { status?: unknown; spec?: Record<string, unknown> };
  for (const f of SERVER_SET_METADATA) delete (copy.metadata as unknown as Record<string, unknown>)[f];
  if (r?.statusSubresource) delete copy.status;
  if (copy.kind === 'Service' && copy.apiVersion === 'v1' && copy.spec && copy.spec.clusterIP !== 'None') {
    delete copy.spec.clusterIP;
    delete copy.spec.clusterIPs;
  }
  return copy;
}

export interface FieldChange {
  path: string;
  before: unknown;
  after: unknown;
}

/** Field-level differences of two objects, as dotted paths (list items by index). */
export function fieldChanges(before: unknown, after: unknown, path = ''): FieldChange[] {
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObj(before) && isObj(after)) {
    return [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()
      .flatMap((k) => fieldChanges(before[k], after[k], path ? `${path}.${k}` : k));
  }
  if (Array.isArray(before) && Array.isArray(after) && before.length === after.length) {
    return before.flatMap((b, i) => fieldChanges(b, after[i], `${path}[${i}]`));
  }
  return [{ path: path || '.', before, after }];
}

/**
 * The order to create objects in: namespaces, then CRDs (their kinds must exist first), then what others refer to
 * (service accounts, secrets, config maps, RBAC, storage), then the rest.
 */
export function creationRank(o: KubeObject): number {
  const order = ['Namespace', 'CustomResourceDefinition', 'ServiceAccount', 'Secret', 'ConfigMap', 'ClusterRole', 'Role', 'ClusterRoleBinding',
    'RoleBinding', 'StorageClass', 'PersistentVolume', 'PersistentVolumeClaim', 'LimitRange', 'ResourceQuota', 'Service'];
  const i = order.indexOf(o.kind ?? '');
  return i === -1 ? order.length : i;
}
