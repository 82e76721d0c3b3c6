/** @module How to run this program again, as a child: the same binary, and the same script when run from source. */
import { existsSync } from 'node:fs';

/** argv that starts this program: a compiled binary is its own script; under `bun src/main.ts` the script comes first. */
export function selfCommand(): string[] {
  const script = process.argv[1];
  return script && !script.startsWith('/$bunfs') && existsSync(script) ? [process.execPath, script] : [process.execPath];
}
