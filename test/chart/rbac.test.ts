/**
 * The chart's Role grants exactly the API calls the controller makes. The calls are read from the source: every
 * `client.<method>(REF, …)` of a KubeClient outside the CLI subcommands (which run with the user's own credentials; but
 * `release-records`, the chart's uninstall hook, runs under the chart's ServiceAccount and is scanned too), and every
 * informer the controller starts (list + watch). A new call, or a Role rule nobody uses, fails this test.
 */
import { describe, expect, test } from 'bun:test';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as group from '../../src/api/group.ts';
import { controllerFlags } from '../../src/config.ts';
import { render, repoRoot } from '../support/helm.ts';

const src = join(repoRoot, 'src');

/** KubeClient method → the RBAC verb of its HTTP request, and the subresource it writes. */
const METHOD_VERBS: Record<string, { verb: string; subresource?: string }> = {
  get: { verb: 'get' },
  list: { verb: 'list' },
  watch: { verb: 'watch' },
  create: { verb: 'create' },
  replace: { verb: 'update' },
  patch: { verb: 'patch' },
  delete: { verb: 'delete' },
  patchStatus: { verb: 'patch', subresource: 'status' },
};

/** The exported ResourceRef constants of api/group.ts, by name (POD, LEASE, BACKUP_RECORD, …). */
const refs = new Map(Object.entries(group).filter((e): e is [string, group.ResourceRef] => {
  const v = e[1] as Partial<group.ResourceRef> | undefined;
  return typeof v === 'object' && v !== null && typeof v.plural === 'string' && typeof v.group === 'string';
}));

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

/**
 * The code that runs under the chart's ServiceAccount: the controller (everything but the CLI's other subcommands and the
 * client itself) and `kubedr release-records`, which the chart's pre-delete hook runs.
 */
const UNDER_THE_CHARTS_ACCOUNT = ['cli/controller.ts', 'cli/release-records.ts'];
const controllerFiles = () => tsFiles(src).map((f) => relative(src, f))
  .filter((f) => f !== 'kube/client.ts' && (!f.startsWith('cli/') || UNDER_THE_CHARTS_ACCOUNT.includes(f)));

const triple = (ref: group.ResourceRef, verb: string, subresource?: string) =>
  `${ref.group}|${ref.plural}${subresource ? `/${subresource}` : ''}|${verb}`;

interface Use { grant: string; where: string }

/** Every (apiGroup, resource, verb) the controller's source uses, with where it is used. */
function usedByCode(): Use[] {
  const uses: Use[] = [];
  const call = /\bclient\.(get|list|watch|create|replace|patch|patchStatus|delete)(?:<[^>()]*>)?\(\s*([A-Za-z_]\w*)/g;
  for (const file of controllerFiles()) {
    const text = readFileSync(join(src, file), 'utf8');
    for (const m of text.matchAll(call)) {
      const [, method, arg] = m as unknown as [string, string, string];
      const line = text.slice(0, m.index).split('\n').length;
      const ref = refs.get(arg);
      // informer.ts passes a ResourceRef through for the informers, counted below where they are made.
      if (file === 'runtime/informer.ts' && arg === 'ref') continue;
      if (!ref) throw new Error(`${file}:${line}: client.${method}(${arg}, …) does not name a ResourceRef of api/group.ts`);
      const { verb, subresource } = METHOD_VERBS[method]!;
      uses.push({ grant: triple(ref, verb, subresource), where: `${file}:${line}` });
    }
  }
  // A list-watch made directly (an informer of one object: controllers/namespace-deletion.ts).
  for (const file of controllerFiles()) {
    const text = readFileSync(join(src, file), 'utf8');
    for (const m of text.matchAll(/\blistWatch(?:<[^>()]*>)?\(\s*client,\s*([A-Z_]+)/g)) {
      const ref = refs.get(m[1]!);
      if (!ref) throw new Error(`${file}: listWatch over ${m[1]} is not a ResourceRef of api/group.ts`);
      for (const verb of ['list', 'watch']) uses.push({ grant: triple(ref, verb), where: `${file} listWatch ${m[1]}` });
    }
  }
  const root = readFileSync(join(src, 'cli/controller.ts'), 'utf8');
  for (const m of root.matchAll(/\binformer<\w+>\(\s*([A-Z_]+)/g)) {
    const ref = refs.get(m[1]!);
    if (!ref) throw new Error(`cli/controller.ts: informer over ${m[1]} is not a ResourceRef of api/group.ts`);
    for (const verb of ['list', 'watch']) uses.push({ grant: triple(ref, verb), where: `cli/controller.ts informer ${m[1]}` });
  }
  return uses;
}

/**
 * Grants no API call of the controller uses, each with its reason: the restore pod's ownerReference sets
 * blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement admission plugin allows only to whoever may update
 * the owner's finalizers (restore-pod.ts).
 */
const NOT_CALLS = [triple(group.RESTORE, 'update', 'finalizers')];

interface Rule { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }

const grantsOf = (rules: Rule[]) => rules.flatMap((r) =>
  r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}|${res}|${v}`))));

describe('the Role against the API calls in src/', () => {
  const uses = usedByCode();
  const chart = render(['--name', 'kubedr', '--namespace', 'kubedr-system']);
  const rules = chart.one('Role').rules as Rule[];
  const clusterRules = chart.one('ClusterRole').rules as Rule[];

  test('the scan finds the calls it must (the scan itself works)', () => {
    const found = new Set(uses.map((u) => u.grant));
    // One of each kind of call: a status patch, a replace (Lease renewal), an informer, a core-group create, and the
    // uninstall hook's scaling of the Deployment.
    for (const g of ['kubedr.catalogicsoftware.com|metadatabackuppolicies/status|patch', 'coordination.k8s.io|leases|update',
      '|secrets|watch', '|pods|create', 'apps|deployments|patch']) expect(found).toContain(g);
  });

  test('every rule is used by the code, and every call the code makes is granted', () => {
    const needed = [...new Set([...uses.map((u) => u.grant), ...NOT_CALLS])].sort();
    expect([...new Set(grantsOf([...rules, ...clusterRules]))].sort()).toEqual(needed);
    // No grant is given twice (a rule restricted by name must not be shadowed by an unrestricted one).
    expect(grantsOf(rules).length).toBe(new Set(grantsOf(rules)).size);
  });

  test('status is only patched, never updated; no spec of a user\'s object is written', () => {
    const status = grantsOf(rules).filter((g) => g.includes('/status|'));
    expect(status.length).toBe(4);
    for (const g of status) expect(g).toEndWith('|patch');
    for (const plural of ['backuplocations', 'metadatabackuppolicies', 'metadatarestores']) {
      for (const verb of ['create', 'update', 'patch', 'delete']) expect(grantsOf(rules)).not.toContain(`kubedr.catalogicsoftware.com|${plural}|${verb}`);
    }
  });

  test('cluster-wide, only two namespaces may be read: kube-system (the cluster\'s identity) and its own (watched: being deleted?)', () => {
    expect(clusterRules).toEqual([
      { apiGroups: [''], resources: ['namespaces'], resourceNames: ['kube-system'], verbs: ['get'] },
      { apiGroups: [''], resources: ['namespaces'], resourceNames: ['kubedr-system'], verbs: ['get', 'list', 'watch'] },
    ]);
    const binding = chart.one('ClusterRoleBinding');
    expect(binding.metadata.name).toBe('kubedr-kubedr-system');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'kubedr', namespace: 'kubedr-system' }]);
    const given = render(['--name', 'kubedr', '--namespace', 'kubedr-system', '--set', 'clusterId=0b9d2c7e-aaaa', '--set', 'clusterName=prod']);
    expect(given.one('Deployment').spec.template.spec.containers[0].args).toEqual(expect.arrayContaining(['--cluster-id=0b9d2c7e-aaaa', '--cluster-name=prod']));
  });

  test('the Lease may be created by any name, but read and renewed only by the controller\'s own name', () => {
    const leaseRules = rules.filter((r) => r.resources.includes('leases'));
    expect(leaseRules).toEqual([
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['kubedr-controller'], verbs: ['get', 'update'] },
    ]);
    // The chart's default is the controller's own default, so a controller run without the chart's flag still fits.
    expect(controllerFlags['leader-elect-lease-name'].default).toBe('kubedr-controller');
    const renamed = render(['--name', 'kubedr', '--namespace', 'x', '--set', 'leaderElection.leaseName=dr-leader']);
    expect((renamed.one('Role').rules as Rule[]).find((r) => r.resourceNames)?.resourceNames).toEqual(['dr-leader']);
    expect(renamed.one('Deployment').spec.template.spec.containers[0].args).toContain('--leader-elect-lease-name=dr-leader');
  });
});
