/**
 * The shape of src/ as the developers' guide draws it, read from the import lines: no import circle, and dependencies
 * point down (the engine knows nothing of Kubernetes; nothing imports the controllers, the CLI or the composition root).
 */
import { describe, expect, test } from 'bun:test';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const src = join(import.meta.dir, '../../src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [join(dir, e.name)] : []);
}

/** Each file of src/ (relative path) → the files of src/ it imports, type-only imports included. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of tsFiles(src)) {
    const text = readFileSync(file, 'utf8');
    const deps = [...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom '(\.[^']+)'/gms)]
      .map((m) => relative(src, normalize(join(dirname(file), m[1]!))));
    graph.set(relative(src, file), deps);
  }
  return graph;
}

/** Every import circle, each as the files on it. */
function circles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const visit = (file: string, path: string[]) => {
    state.set(file, 'open');
    for (const dep of graph.get(file) ?? []) {
      if (state.get(dep) === 'open') found.push([...path.slice(path.indexOf(dep)), dep]);
      else if (!state.has(dep)) visit(dep, [...path, dep]);
    }
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file, [file]);
  return found;
}

/** What each room of src/ may import (besides itself and util/, which imports nothing of the others; package.json aside). */
const allowed: Record<string, string[]> = {
  util: [],
  api: [],
  engine: [],
  kube: ['api'],
  runtime: ['api', 'kube'],
  schedule: [],
  // The policy gauges read the schedule's next run; the metrics server is a Runnable.
  metrics: ['api', 'schedule', 'runtime'],
  controllers: ['api', 'engine', 'kube', 'runtime', 'schedule', 'metrics'],
  cli: ['api', 'engine', 'kube', 'runtime', 'schedule', 'metrics', 'controllers', 'config.ts'],
};
const room = (file: string) => (file.includes('/') ? file.split('/')[0]! : file);

describe('imports in src/', () => {
  const graph = importGraph();

  test('the scan reads the imports (a known edge is found)', () => {
    expect(graph.get('controllers/retention.ts')).toContain('engine/snapshots.ts');
  });

  test('no import circle', () => {
    expect(circles(graph).map((c) => c.join(' → '))).toEqual([]);
  });

  test('dependencies point down: each room imports only the rooms below it', () => {
    const wrong: string[] = [];
    for (const [file, deps] of graph) {
      const from = room(file);
      const may = allowed[from];
      if (!may) continue;
      for (const dep of deps.filter((d) => !d.startsWith('..'))) {
        const to = room(dep);
        if (to !== from && to !== 'util' && !may.includes(to)) wrong.push(`${file} → ${dep}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
