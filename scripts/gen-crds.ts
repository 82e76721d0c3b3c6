/**
 * @module Writes crds/<plural>.yaml from the schemas in src/api/schema.ts (the single definition of the API).
 *   bun scripts/gen-crds.ts          write the files
 *   bun scripts/gen-crds.ts --check  exit 1 if the files differ from the schemas
 */
import { dump } from 'js-yaml';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { GROUP } from '../src/api/group.ts';
import { crdManifest, kinds } from '../src/api/schema.ts';

const dir = resolve(import.meta.dir, '..', 'crds');

export function renderCrds(): Map<string, string> {
  const out = new Map<string, string>();
  for (const def of kinds) {
    const header = `# Generated from src/api/schema.ts by scripts/gen-crds.ts; do not edit.\n`;
    out.set(join(dir, `${GROUP}_${def.plural}.yaml`), header + dump(crdManifest(def), { lineWidth: 120, noRefs: true }));
  }
  return out;
}

if (import.meta.main) {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const [file, text] of renderCrds()) {
    if (!check) writeFileSync(file, text);
    else if ((() => { try { return readFileSync(file, 'utf8'); } catch { return ''; } })() !== text) {
      console.error(`stale: ${file}`);
      stale++;
    }
  }
  process.exit(stale ? 1 : 0);
}
