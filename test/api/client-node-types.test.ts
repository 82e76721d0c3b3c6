/**
 * client-node is a devDependency for its model types only (src/api/types.ts): a bundle of the program, as
 * scripts/build-binary.sh compiles it, must hold none of its code. A value import (`import { V1Pod }` instead of
 * `import type`) would pull in its generated API, undici and more, and fail here.
 */
import { expect, test } from 'bun:test';
import { join } from 'node:path';
import { repoRoot } from '../support/helm.ts';

test('the bundle of src/main.ts holds no module of @kubernetes/client-node, and its other dependencies are there', async () => {
  const out = await Bun.build({ entrypoints: [join(repoRoot, 'src/main.ts')], target: 'bun', format: 'esm', metafile: true });
  expect(out.success).toBe(true);
  const inputs = Object.keys(out.metafile?.inputs ?? {});
  // The control: the bundle does list the packages the program imports, so the check below looks at the right list.
  expect(inputs.some((i) => i.includes('node_modules/prom-client/'))).toBe(true);
  expect(inputs.filter((i) => i.includes('node_modules/@kubernetes/'))).toEqual([]);
});
