/**
 * @module `kubedr diff`: what changed between a backup and the live cluster: objects added since, deleted since, and
 * changed (field by field, in what people set: server-set fields and status are left out). Secret and ConfigMap
 * values are never printed, only which keys changed.
 */
import type { KubeObject } from '../api/types.ts';
import { fieldChanges, objectKey, userFields } from '../kube/all-objects.ts';
import { type FlagSpec, helpText, parseFlags } from '../util/flags.ts';
import { sourceFlags, withBackupApi } from './browse-source.ts';
import { exitCodesHelp } from './exit-codes.ts';
import { type Side, crdObjects, kindsOf, objectsIn, scopeFlags, side } from './object-scope.ts';
import { forProgram } from './program.ts';
import { cancelOnSignals } from './restore.ts';

const flags = {
  ...sourceFlags,
  ...scopeFlags,
  crd: { type: 'string', help: 'only this CustomResourceDefinition\'s objects (PLURAL.GROUP)' },
  json: { type: 'boolean', default: false, help: 'print the result as JSON' },
} satisfies Record<string, FlagSpec>;

export const diffHelp = helpText('kubedr diff [--from ID|latest|--at TIME|--snapshot FILE] [-n NAMESPACE] [flags]',
  'Compares a backup with the live cluster: objects deleted since the backup, added since, and changed (each changed\n' +
  'field, as set by people: uid, resourceVersion, managedFields, timestamps and status are left out). Uses the running\n' +
  'browse (--name), or serves the backup named by --from/--at/--snapshot for the time of the comparison. Values of\n' +
  'Secrets and ConfigMaps are not printed.', flags) + `\n${exitCodesHelp}`;

export interface ObjectDiff {
  deleted: string[];
  added: string[];
  changed: { object: string; fields: { path: string; before?: string; after?: string }[] }[];
}

const HIDDEN = new Set(['Secret', 'ConfigMap']);
const shown = (v: unknown): string => {
  const s = v === undefined ? '(none)' : JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
};

/** The difference of two sets of objects, by identity, and field by field for those in both. */
export function diffObjects(backup: KubeObject[], live: KubeObject[], status: (o: KubeObject) => boolean): ObjectDiff {
  const b = new Map(backup.map((o) => [objectKey(o), o]));
  const l = new Map(live.map((o) => [objectKey(o), o]));
  const comparable = (o: KubeObject) => {
    const u = userFields(o, { statusSubresource: status(o) }) as KubeObject & { status?: unknown };
    delete u.status;
    return u;
  };
  const changed: ObjectDiff['changed'] = [];
  for (const [key, bo] of b) {
    const lo = l.get(key);
    if (!lo) continue;
    const fields = fieldChanges(comparable(bo), comparable(lo));
    if (fields.length === 0) continue;
    const hide = HIDDEN.has(bo.kind ?? '');
    changed.push({ object: key, fields: fields.map((c) => (hide ? { path: c.path } : { path: c.path, before: shown(c.before), after: shown(c.after) })) });
  }
  return {
    deleted: [...b.keys()].filter((k) => !l.has(k)).sort(),
    added: [...l.keys()].filter((k) => !b.has(k)).sort(),
    changed: changed.sort((x, y) => x.object.localeCompare(y.object)),
  };
}

export function diffReport(d: ObjectDiff, scope: string): string {
  const lines = [`Backup compared with the live cluster (${scope}): ${d.deleted.length} deleted since, ${d.added.length} added since, ` +
    `${d.changed.length} changed`];
  if (d.deleted.length) lines.push('', 'DELETED (in the backup, not in the cluster)', ...d.deleted.map((k) => `  ${k}`));
  if (d.added.length) lines.push('', 'ADDED (in the cluster, not in the backup)', ...d.added.map((k) => `  ${k}`));
  if (d.changed.length) {
    lines.push('', 'CHANGED (backup -> cluster)');
    for (const c of d.changed) {
      lines.push(`  ${c.object}`);
      for (const f of c.fields) lines.push(f.before === undefined ? `    ${f.path}: changed (value not shown)` : `    ${f.path}: ${f.before} -> ${f.after}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export async function runDiff(argv: string[]): Promise<number> {
  const parsed = parseFlags(flags, argv);
  if (parsed.help) {
    process.stdout.write(forProgram(diffHelp));
    return 0;
  }
  const f = parsed.flags;
  const stop = cancelOnSignals('diff');
  try {
    const d = await withBackupApi(f, stop.signal, (s) => process.stderr.write(`kubedr diff: ${s}\n`), async (kubeconfig) => {
      const [backup, live] = await Promise.all([side(kubeconfig, undefined), side(f.kubeconfig, f.context)]);
      const read = (s: Side) => (f.crd ? crdObjects(s, f.crd, f.namespace) : objectsIn(s, kindsOf(s, { allKinds: f['all-kinds'] }), f.namespace));
      const [bo, lo] = await Promise.all([read(backup), read(live)]);
      const statusKinds = new Set([...backup.resources, ...live.resources].filter((r) => r.statusSubresource).map((r) => r.ref.kind));
      return diffObjects(bo, lo, (o) => statusKinds.has(o.kind ?? ''));
    });
    const scope = f.crd ? `objects of ${f.crd}` : f.namespace ? `namespace ${f.namespace}` : 'all namespaces and cluster-scoped objects';
    process.stdout.write(f.json ? `${JSON.stringify(d, null, 2)}\n` : diffReport(d, scope));
    return 0;
  } finally {
    stop.dispose();
  }
}
