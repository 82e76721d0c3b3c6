/** A pipe's capacity, enlarged through libc (bun:ffi): on a pipe it takes, on a file it is refused and nothing breaks. */
import { describe, expect, test } from 'bun:test';
import { closeSync, openSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';

const module = resolve(import.meta.dir, '../../src/util/libc.ts');
const script = `import { enlargePipe } from '${module}'; console.error(String(enlargePipe(1, 1 << 20)));`;
/**
 * The capacity a child process gets for its standard output, asking for 1 MiB: a pipe made by the shell, as restic's
 * is (Bun.spawn's 'pipe' is a socket pair, which has no pipe capacity), or a file descriptor given.
 */
const capacityOfStdout = async (stdout: 'pipe' | number) => {
  const argv = stdout === 'pipe' ? ['sh', '-c', `"$0" -e "$1" | cat`, process.execPath, script] : [process.execPath, '-e', script];
  const child = Bun.spawn(argv, { stdout: stdout === 'pipe' ? 'ignore' : stdout, stderr: 'pipe' });
  const said = (await new Response(child.stderr).text()).trim();
  await child.exited;
  return said;
};

describe('enlargePipe', () => {
  test('a pipe grows from 64 KiB to the 1 MiB asked for (what an unprivileged process may have by default)', async () => {
    expect(await capacityOfStdout('pipe')).toBe(String(1 << 20));
  });

  test('a descriptor that is no pipe is left as it is', async () => {
    const file = `/tmp/pipe-test-${process.pid}`;
    const fd = openSync(file, 'w');
    try {
      expect(await capacityOfStdout(fd)).toBe('undefined');
    } finally {
      closeSync(fd);
      rmSync(file, { force: true });
    }
  });
});
