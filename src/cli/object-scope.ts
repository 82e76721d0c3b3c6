/**
 * @module Which objects `kubedr diff` and `kubedr restore-objects` work on, read from both API servers: the backup's
 * (a browse) and the live cluster's. One namespace (and the Namespace object itself), named objects, the objects of one
 * CRD, or everything; kinds that only record what happened (events, leases, endpoints) unless asked for.
 */
import { KubeClient } from '../kube/client.ts';
import { type ApiResource, NOISE, discover, listObjects, qualified, resolveKind } from '../kube/all-objects.ts';
import type { KubeObject } from '../api/types.ts';
import { type FlagSpec, UsageError } from '../util/flags.ts';

export const scopeFlags = {
  namespace: { type: 'string', short: 'n', help: 'only this namespace\'s objects, and the Namespace itself (default: every namespace and the cluster-scoped objects)' },
  kubeconfig: { type: 'string', help: 'kubeconfig of the live cluster (default: $KUBECONFIG, then ~/.kube/config)' },
  context: { type: 'string', help: 'kubeconfig context of the live cluster' },
  'all-kinds': { type: 'boolean', default: false, help: 'include events, leases, endpoints and endpoint slices (left out: they record what happened, not what someone wanted)' },
} satisfies Record<string, FlagSpec>;

export interface Side {
  client: KubeClient;
  resources: ApiResource[];
}

export async function side(kubeconfig: string | undefined, context: string | undefined): Promise<Side> {
  const client = KubeClient.load({ kubeconfig, context, fieldManager: 'kubedr-restore-objects', requestTimeoutMs: 60_000 });
  return { client, resources: await discover(client) };
}

/** The kinds to read on one side: all of them, or those of the one CRD named; no noise unless asked. */
export function kindsOf(s: Side, opts: { allKinds: boolean; crdKind?: { group: string; plural: string } }): ApiResource[] {
  return s.resources.filter((r) => {
    if (opts.crdKind) return r.ref.group === opts.crdKind.group && r.ref.plural === opts.crdKind.plural;
    return opts.allKinds || !NOISE.has(qualified(r.ref));
  });
}

/** The objects in scope on one side: a namespace's (and its Namespace), or everything. */
export async function objectsIn(s: Side, kinds: ApiResource[], namespace: string | undefined): Promise<KubeObject[]> {
  if (!namespace) return listObjects(s.client, kinds);
  const objects = await listObjects(s.client, kinds, namespace);
  const ns = (await listObjects(s.client, s.resources.filter((r) => r.ref.group === '' && r.ref.plural === 'namespaces')))
    .filter((o) => o.metadata.name === namespace);
  return [...ns, ...objects];
}

/** `KIND/NAME` as typed, resolved against one side's kinds. */
export function parseSelector(s: Side, typed: string): { resource: ApiResource; name: string } {
  const slash = typed.indexOf('/');
  if (slash <= 0 || slash === typed.length - 1) throw new UsageError(`"${typed}": name objects as KIND/NAME, e.g. deployment/web or configmaps/settings`);
  const resource = resolveKind(s.resources, typed.slice(0, slash));
  if (!resource) throw new UsageError(`"${typed.slice(0, slash)}" is no kind the backup knows (kubectl api-resources against the browse lists them)`);
  return { resource, name: typed.slice(slash + 1) };
}

/** The kind a CRD defines, from its name (`widgets.example.com`). */
export function crdKindOf(name: string): { group: string; plural: string } {
  const dot = name.indexOf('.');
  if (dot <= 0) throw new UsageError(`--crd "${name}": give the CustomResourceDefinition's name, PLURAL.GROUP (e.g. widgets.example.com)`);
  return { plural: name.slice(0, dot), group: name.slice(dot + 1) };
}

/** A CRD and every object of its kind (all namespaces, or one), on one side; none when the side does not have it. */
export async function crdObjects(s: Side, crd: string, namespace: string | undefined): Promise<KubeObject[]> {
  const crds = s.resources.filter((r) => r.ref.group === 'apiextensions.k8s.io' && r.ref.plural === 'customresourcedefinitions');
  const def = (await listObjects(s.client, crds)).filter((o) => o.metadata.name === crd);
  const kinds = kindsOf(s, { allKinds: true, crdKind: crdKindOf(crd) });
  return [...def, ...(await listObjects(s.client, kinds, namespace))];
}
