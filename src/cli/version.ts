/** @module `kubedr version`: what this binary is and which restic it finds. */
import pkg from '../../package.json' with { type: 'json' };
import { Restic } from '../engine/restic.ts';
import { forProgram } from './program.ts';

/** Set at build time by `bun build --define`; "dev" when run from source. */
declare const KUBEDR_COMMIT: string | undefined;

export async function runVersion(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(forProgram('Usage: kubedr version\n\nPrints the version, commit, Bun version and the restic found on PATH.\n'));
    return 0;
  }
  const commit = typeof KUBEDR_COMMIT === 'string' ? KUBEDR_COMMIT : 'dev';
  const restic = await new Restic().version().catch((err: Error) => `not found (${err.message})`);
  process.stdout.write(`kubedr ${pkg.version}\ncommit: ${commit}\nbun: ${Bun.version}\nrestic: ${restic}\n`);
  return 0;
}
