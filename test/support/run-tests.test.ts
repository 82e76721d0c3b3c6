/** The totals of side-by-side runs are the sums of what each `bun test` printed: read its summary lines. */
import { expect, test } from 'bun:test';
import { counts, failureDetails } from '../../scripts/run-tests.ts';

test('a bun test summary: pass, fail, tests and files; absent lines count 0', () => {
  const out = 'test/e2e/x.test.ts:\n(pass) a [1.00ms]\n(fail) b [2.00ms]\n\n 1 pass\n 1 fail\n 3 expect() calls\nRan 2 tests across 1 file. [1.20s]\n';
  expect(counts(out)).toEqual({ pass: 1, fail: 1, tests: 2, files: 1 });
  expect(counts(' 836 pass\n 0 fail\nRan 836 tests across 107 files. [2817.89s]')).toEqual({ pass: 836, fail: 0, tests: 836, files: 107 });
  // A file that failed to load prints no summary.
  expect(counts('error: Cannot find module')).toEqual({ pass: 0, fail: 0, tests: 0, files: 0 });
});

test('each failed test comes with the error bun printed before its (fail) line, its last lines only', () => {
  const out = ['test/e2e/x.test.ts:', '(pass) a [1.00ms]', 'log of b', 'error: expect(received).toBe(expected)', '',
    'Expected: "Completed"', 'Received: "Failed"', '(fail) b [2.00ms]', '(pass) c [1.00ms]', ...Array.from({ length: 30 }, (_, i) => `line ${i}`),
    '(fail) d [3.00ms]'].join('\n');
  const [b, d, none] = failureDetails(out, 20);
  expect(b).toBe(['(fail) b [2.00ms]', '    log of b', '    error: expect(received).toBe(expected)', '    Expected: "Completed"',
    '    Received: "Failed"'].join('\n'));
  expect(d!.split('\n').slice(0, 3)).toEqual(['(fail) d [3.00ms]', '    … (10 lines above)', '    line 10']);
  expect(d!.split('\n').at(-1)).toBe('    line 29');
  expect(none).toBeUndefined();
});
