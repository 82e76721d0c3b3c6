/** The totals of side-by-side runs are the sums of what each `bun test` printed: read its summary lines. */
import { expect, test } from 'bun:test';
import { counts } from '../../scripts/run-tests.ts';

test('a bun test summary: pass, fail, tests and files; absent lines count 0', () => {
  const out = 'test/e2e/x.test.ts:\n(pass) a [1.00ms]\n(fail) b [2.00ms]\n\n 1 pass\n 1 fail\n 3 expect() calls\nRan 2 tests across 1 file. [1.20s]\n';
  expect(counts(out)).toEqual({ pass: 1, fail: 1, tests: 2, files: 1 });
  expect(counts(' 836 pass\n 0 fail\nRan 836 tests across 107 files. [2817.89s]')).toEqual({ pass: 836, fail: 0, tests: 836, files: 107 });
  // A file that failed to load prints no summary.
  expect(counts('error: Cannot find module')).toEqual({ pass: 0, fail: 0, tests: 0, files: 0 });
});
