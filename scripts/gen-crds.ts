/**
 * @module Writes crds/<plural>.yaml, and the same files into the Helm chart's crds/, from the schemas in src/api/schema.ts
 * (the single definition of the API).
 *   bun scripts/gen-crds.ts          write the files
 *   bun scripts/gen-crds.ts --check  exit 1 if any file, in either directory, differs from the schemas
 */
import { dump } from 'js-yaml';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { GROUP } from '../src/api/group.ts';
import { crdManifest, kinds } from '../src/api/schema.ts';

const root = resolve(import.meta.dir, '..');
const dir = join(root, 'crds');
/** Helm installs a chart's crds/ before its templates, so the chart carries its own copy. */
const chartDir = join(root, 'helm', 'kubedr', 'crds');

/** crds/<file> -> contents. */
export function renderCrds(): Map<string, string> {
  const out = new Map<string, string>();
  for (const def of kinds) {
    const header = `# Generated from src/api/schema.ts by scripts/gen-crds.ts; do not edit.\n`;
    out.set(join(dir, `${GROUP}_${def.plural}.yaml`), header + dump(crdManifest(def), { lineWidth: 120, noRefs: true }));
  }
  return out;
}

/** renderCrds() plus the same files in the chart's crds/. */
function allCrdFiles(): Map<string, string> {
  const out = renderCrds();
  for (const [file, text] of [...out]) out.set(join(chartDir, basename(file)), text);
  return out;
}

if (import.meta.main) {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const [file, text] of allCrdFiles()) {
    if (!check) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, text);
    }
    else if ((() => { try { return readFileSync(file, 'utf8'); } catch { return ''; } })() !== text) {
      console.error(`stale: ${file}`);
      stale++;
    }
  }
  process.exit(stale ? 1 : 0);
}
