/**
 * @module Renders helm/kubedr with scripts/helm-render (Helm's template engine; there is no helm binary here), built by
 * scripts/build-helm-render.sh into the cache on first use.
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { dump, loadAll } from 'js-yaml';

export const repoRoot = resolve(import.meta.dir, '../..');
export const chartDir = join(repoRoot, 'helm/kubedr');

/** A rendered Kubernetes object, loosely typed: tests index into it. */
export type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: any };

let binary: string | undefined;
function renderer(): string {
  if (!binary) {
    const r = spawnSync(join(repoRoot, 'scripts/build-helm-render.sh'), { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`build-helm-render.sh failed: ${r.stderr}`);
    binary = r.stdout.trim();
  }
  return binary;
}

export interface Rendered {
  /** Everything, as `helm template` prints it: hooks included. */
  text: string;
  docs: Obj[];
  /**
   * What `helm install` applies and `helm uninstall` deletes: every document but the hooks, which Helm runs only at
   * their events (the chart's only hook is pre-delete). Tests that install the chart apply this, never `text`.
   */
  manifest: string;
  /** The hooks Helm runs at `event` (e.g. pre-delete), in the order rendered. */
  hooks(event: string): Obj[];
  /** The one object of this kind (and name, if given); throws if there is not exactly one. */
  one(kind: string, name?: string): Obj;
  all(kind: string): Obj[];
}

/** `helm template`-like: args such as ['--name', 'kubedr', '--namespace', 'x', '-f', file, '--set', 'a=b']. */
export function render(args: string[]): Rendered {
  const r = spawnSync(renderer(), [...args, chartDir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`helm-render failed: ${r.stderr}`);
  const docs = (loadAll(r.stdout) as Obj[]).filter((d) => d);
  const all = (kind: string) => docs.filter((d) => d.kind === kind);
  const hookEvents = (d: Obj) => (d.metadata.annotations?.['helm.sh/hook'] ?? '').split(',').map((e) => e.trim()).filter(Boolean);
  return {
    text: r.stdout, docs, all,
    manifest: docs.filter((d) => hookEvents(d).length === 0).map((d) => dump(d)).join('---\n'),
    hooks: (event) => docs.filter((d) => hookEvents(d).includes(event)),
    one(kind, name) {
      const found = all(kind).filter((d) => !name || d.metadata.name === name);
      if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
      return found[0]!;
    },
  };
}
