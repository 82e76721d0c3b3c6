/**
 * @module `kubedr restore-objects`: re-creates chosen objects of a backup in the live cluster (a namespace, named
 * objects, or a CRD with its objects), read from a browse of the backup (the cluster's own API server, so every kind
 * comes back as the cluster stored it). Never deletes anything live; an object that exists is left alone unless
 * --overwrite; --dry-run asks the API server to check every create without making it.
 */
import { writeFileSync } from 'node:fs';
import type { KubeObject } from '../api/types.ts';
import { type ApiResource, discover, groupOf, userFields } from '../kube/all-objects.ts';
import { isAlreadyExists, isNotFound } from '../kube/errors.ts';
import { planRestore, remapOwners } from '../kube/restore-plan.ts';
import { type FlagSpec, UsageError, helpText, parseFlags } from '../util/flags.ts';
import { sourceFlags, withBackupApi } from './browse-source.ts';
import { EXIT, exitCodesHelp } from './exit-codes.ts';
import { type Side, crdObjects, kindsOf, objectsIn, parseSelector, scopeFlags, side } from './object-scope.ts';
import { forProgram } from './program.ts';
import { cancelOnSignals } from './restore.ts';

const flags = {
  ...sourceFlags,
  ...scopeFlags,
  crd: { type: 'string', help: 'restore this CustomResourceDefinition (PLURAL.GROUP) and its objects (with -n: only that namespace\'s)' },
  overwrite: { type: 'boolean', default: false, help: 'replace objects that exist with the backup\'s version (default: leave them and report them)' },
  'dry-run': { type: 'boolean', default: false, help: 'only say what would be done; the API server checks each object (server-side dry run)' },
  prepared: { type: 'string', help: 'read the backup through the browse prepared in DIR (kubedr browse --prepare), served by a kube-apiserver that runs elsewhere (a restore pod\'s container)' },
  'termination-log': { type: 'string', help: 'also write the summary, or the error, to this file (a pod\'s /dev/termination-log)' },
} satisfies Record<string, FlagSpec>;

export const restoreObjectsHelp = helpText('kubedr restore-objects [--from ID|latest|--at TIME|--snapshot FILE] -n NAMESPACE [KIND/NAME ...] [flags]\n' +
  '       kubedr restore-objects [source flags] --crd PLURAL.GROUP [-n NAMESPACE]',
  'Re-creates objects of a backup in the live cluster: a whole namespace (-n NAMESPACE), the objects named (KIND/NAME,\n' +
  'as kubectl spells them: deployment/web, cm/settings), or a CRD and its objects (--crd). Created in dependency order\n' +
  '(namespace, CRDs, then the rest), without what the API server sets (uid, resourceVersion, managedFields, status);\n' +
  'owner references kept where the owner exists or is restored too; objects a restored controller makes again (a\n' +
  'Deployment\'s ReplicaSets and Pods) and ServiceAccount tokens are left to their controllers. Nothing live is deleted.\n' +
  'Uses the running browse (--name), or serves the backup named by --from/--at/--snapshot for the time of the restore.', flags) +
  `\n${exitCodesHelp}`;

type Outcome = 'created' | 'replaced' | 'exists' | 'skipped' | 'failed';

export async function runRestoreObjects(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(restoreObjectsHelp));
    return 0;
  }
  const f = parsed.flags;
  if (!f.namespace && !f.crd && parsed.args.every((a) => !a.includes('/'))) {
    throw new UsageError('choose what to restore: -n NAMESPACE (all of it, or with KIND/NAME arguments), or --crd PLURAL.GROUP');
  }
  const stop = cancelOnSignals('restore-objects');
  const say = (s: string) => process.stdout.write(`${f['dry-run'] ? '(dry run) ' : ''}${s}\n`);
  const outcome = (text: string) => f['termination-log'] && writeFileSync(f['termination-log'], text.slice(0, 4000));
  try {
    const counts = await withBackupApi(f, stop.signal, (s) => process.stderr.write(`kubedr restore-objects: ${s}\n`), async (kubeconfig) => {
      const [backup, live] = await Promise.all([side(kubeconfig, undefined), side(f.kubeconfig, f.context)]);
      const picked = await choose(backup, f.namespace, f.crd, parsed.args, f['all-kinds']);
      const chosen = picked.length ? [...picked, ...(await dependencies(picked, backup, live))] : picked;
      if (chosen.length === 0) throw new UsageError(`the backup holds nothing of ${f.crd ?? (f.namespace ? `namespace ${f.namespace}` : parsed.args.join(' '))}`);
      return apply(planRestore(chosen), backup, live, { overwrite: f.overwrite, dryRun: f['dry-run'], say });
    });
    const parts = (Object.entries(counts) as [Outcome, number][]).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`);
    const summary = `${f['dry-run'] ? '(dry run) ' : ''}${parts.join(', ') || 'nothing to do'}`;
    say(`Summary: ${parts.join(', ') || 'nothing to do'}`);
    outcome(counts.failed > 0 ? `${counts.failed} object(s) could not be restored (the pod's log names them): ${summary}` : summary);
    return counts.failed > 0 ? EXIT.failed : 0;
  } catch (err) {
    outcome(err instanceof Error ? err.message : String(err));
    throw err;
  } finally {
    stop.dispose();
  }
}

async function choose(backup: Side, namespace: string | undefined, crd: string | undefined, named: string[], allKinds: boolean): Promise<KubeObject[]> {
  if (crd) return crdObjects(backup, crd, namespace);
  if (named.length === 0) return objectsIn(backup, kindsOf(backup, { allKinds }), namespace);
  const found: KubeObject[] = [];
  for (const typed of named) {
    const { resource, name } = parseSelector(backup, typed);
    if (resource.namespaced && !namespace) throw new UsageError(`${typed}: a ${resource.ref.kind} lives in a namespace: give -n NAMESPACE`);
    try {
      found.push(await backup.client.get<KubeObject>(resource.ref, resource.namespaced ? namespace! : '', name)
        .then((o) => ({ ...o, apiVersion: resource.ref.group ? `${resource.ref.group}/${resource.ref.version}` : resource.ref.version, kind: resource.ref.kind })));
    } catch (err) {
      if (isNotFound(err)) throw new UsageError(`${typed} is not in the backup${resource.namespaced ? ` (namespace ${namespace})` : ''}`);
      throw err;
    }
  }
  return found;
}

/**
 * What the chosen objects need that the cluster lacks and the backup has: the Namespace they live in, and the CRD
 * of their kind. They come along (and are reported like the rest), so a namespace's custom resources or a CRD's
 * objects in a deleted namespace can be restored in one go.
 */
async function dependencies(chosen: KubeObject[], backup: Side, live: Side): Promise<KubeObject[]> {
  const have = new Set(chosen.map((o) => `${o.kind}/${o.metadata.name}`));
  const namespaces = [...new Set(chosen.map((o) => o.metadata.namespace).filter((n): n is string => Boolean(n)))]
    .filter((n) => !have.has(`Namespace/${n}`));
  const nsRef = backup.resources.find((r) => r.ref.group === '' && r.ref.plural === 'namespaces')!.ref;
  const needed: KubeObject[] = [];
  for (const n of namespaces) {
    if (await live.client.get(nsRef, '', n).then(() => true, () => false)) continue;
    const ns = await backup.client.get<KubeObject>(nsRef, '', n).catch(() => undefined);
    if (ns) needed.push({ ...ns, apiVersion: 'v1', kind: 'Namespace' });
  }
  const crdRef = backup.resources.find((r) => r.ref.group === 'apiextensions.k8s.io' && r.ref.plural === 'customresourcedefinitions')?.ref;
  const missingKinds = [...new Map(chosen.filter((o) => !resourceFor(live, o) && o.kind !== 'CustomResourceDefinition')
    .map((o) => [`${o.apiVersion}/${o.kind}`, o])).values()];
  for (const o of missingKinds) {
    const r = resourceFor(backup, o);
    if (!crdRef || !r?.ref.group) continue;
    const name = `${r.ref.plural}.${r.ref.group}`;
    if (have.has(`CustomResourceDefinition/${name}`)) continue;
    const crd = await backup.client.get<KubeObject>(crdRef, '', name).catch(() => undefined);
    if (crd) needed.push({ ...crd, apiVersion: `${crdRef.group}/${crdRef.version}`, kind: 'CustomResourceDefinition' });
  }
  return needed;
}

const resourceFor = (s: Side, o: Pick<KubeObject, 'apiVersion' | 'kind'>): ApiResource | undefined => {
  const group = groupOf(o.apiVersion);
  return s.resources.find((r) => r.ref.group === group && r.ref.kind === o.kind);
};

async function apply(plan: ReturnType<typeof planRestore>, backup: Side, live: Side, opts: { overwrite: boolean; dryRun: boolean; say: (s: string) => void }) {
  const counts: Record<Outcome, number> = { created: 0, replaced: 0, exists: 0, skipped: 0, failed: 0 };
  const newUids = new Map<string, string>();
  // A dry run creates nothing, so the server cannot check an object whose namespace or CRD this run would create first.
  const dryMade = new Set<string>();
  const dryReason = (o: KubeObject) => {
    const group = groupOf(o.apiVersion);
    if (dryMade.has(`kind:${group}/${o.kind}`)) return 'its CRD is created first';
    if (o.metadata.namespace && dryMade.has(`ns:${o.metadata.namespace}`)) return 'its namespace is created first';
    return undefined;
  };
  const ownerUid = async (o: KubeObject, kind: string, name: string) => {
    const key = `${kind}/${o.metadata.namespace ?? ''}/${name}`;
    if (newUids.has(key)) return;
    const ref = o.metadata.ownerReferences?.find((r) => r.kind === kind && r.name === name);
    const res = ref && resourceFor(live, { apiVersion: ref.apiVersion, kind });
    const uid = res && (await live.client.get<KubeObject>(res.ref, res.namespaced ? o.metadata.namespace ?? '' : '', name).then((x) => x.metadata.uid, () => undefined));
    if (uid) newUids.set(key, uid);
  };
  for (const p of plan) {
    if (p.skip) {
      counts.skipped++;
      opts.say(`skipped   ${p.key}: ${p.skip}`);
      continue;
    }
    const unchecked = opts.dryRun ? dryReason(p.object) : undefined;
    if (unchecked) {
      counts.created++;
      opts.say(`created   ${p.key} (not checked by the server: ${unchecked})`);
      continue;
    }
    let res = resourceFor(live, p.object);
    if (!res && p.object.kind !== 'CustomResourceDefinition') {
      // A kind a CRD restored just now defines: ask the cluster again.
      live.resources = await discover(live.client);
      res = resourceFor(live, p.object);
    }
    if (!res) {
      counts.failed++;
      opts.say(`failed    ${p.key}: the cluster has no kind ${p.object.kind} (${p.object.apiVersion}); restore its CRD first (--crd)`);
      continue;
    }
    for (const r of p.object.metadata.ownerReferences ?? []) await ownerUid(p.object, r.kind, r.name);
    const copy = userFields(p.object, resourceFor(backup, p.object));
    const owners = remapOwners(copy, (kind, name) => newUids.get(`${kind}/${copy.metadata.namespace ?? ''}/${name}`));
    copy.metadata.ownerReferences = owners.ownerReferences;
    const note = owners.dropped.length ? ` (owner ${owners.dropped.join(', ')} exists nowhere: reference dropped)` : '';
    const ns = res.namespaced ? copy.metadata.namespace ?? '' : '';
    const query = opts.dryRun ? '&dryRun=All' : '';
    try {
      const made = await live.client.request<KubeObject>('POST', `${live.client.path(res.ref, ns || undefined)}?fieldManager=kubedr-restore-objects${query}`, copy);
      if (made.metadata.uid) newUids.set(`${p.object.kind}/${p.object.metadata.namespace ?? ''}/${p.object.metadata.name}`, made.metadata.uid);
      counts.created++;
      if (opts.dryRun) dryMade.add(dryKey(p.object));
      opts.say(`created   ${p.key}${note}`);
    } catch (err) {
      if (!isAlreadyExists(err)) {
        counts.failed++;
        opts.say(`failed    ${p.key}: ${(err as Error).message}`);
        continue;
      }
      const current = await live.client.get<KubeObject>(res.ref, ns, copy.metadata.name);
      if (current.metadata.uid) newUids.set(`${p.object.kind}/${p.object.metadata.namespace ?? ''}/${p.object.metadata.name}`, current.metadata.uid);
      if (!opts.overwrite) {
        counts.exists++;
        opts.say(`exists    ${p.key}: left as it is (--overwrite replaces it)`);
        continue;
      }
      const replacement = { ...copy, metadata: { ...copy.metadata, resourceVersion: current.metadata.resourceVersion } };
      await live.client.request('PUT', `${live.client.path(res.ref, ns || undefined, copy.metadata.name)}?fieldManager=kubedr-restore-objects${query}`, replacement);
      counts.replaced++;
      opts.say(`replaced  ${p.key}${note}`);
    }
    if (p.object.kind === 'CustomResourceDefinition' && !opts.dryRun) await established(live, p.object.metadata.name);
  }
  return counts;
}

/** What a dry run noted as made: a namespace, or the kind a CRD defines. */
function dryKey(o: KubeObject): string {
  if (o.kind === 'Namespace') return `ns:${o.metadata.name}`;
  const spec = (o as KubeObject & { spec?: { group?: string; names?: { kind?: string } } }).spec;
  return o.kind === 'CustomResourceDefinition' ? `kind:${spec?.group}/${spec?.names?.kind}` : '';
}

/** Waits (up to 30 s) until a CRD is served, so its objects can be created next. */
async function established(live: Side, name: string): Promise<void> {
  const crds = live.resources.find((r) => r.ref.group === 'apiextensions.k8s.io' && r.ref.plural === 'customresourcedefinitions');
  if (!crds) return;
  for (let i = 0; i < 60; i++) {
    const crd = await live.client.get<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>(crds.ref, '', name);
    if (crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) {
      live.resources = await discover(live.client);
      return;
    }
    await Bun.sleep(500);
  }
}
