/** @module Small filesystem questions shared by the engine's restore steps. */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';

/** True when `path` holds something a restore must not overwrite unasked: a non-empty directory, or any other file. */
export async function holdsData(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length > 0;
  } catch {
    return existsSync(path);
  }
}
