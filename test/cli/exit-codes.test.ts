import { expect, test } from 'bun:test';
import { EXIT, exitCodeFor } from '../../src/cli/exit-codes.ts';
import { EngineError } from '../../src/engine/errors.ts';
import { classifyResticError } from '../../src/engine/restic-output.ts';

/** The exit code of a command whose restic run failed with this stderr. */
const exitFor = (stderr: string) => {
  const c = classifyResticError(stderr);
  return exitCodeFor(new EngineError(c.kind, c.message));
};

// Issue 19: a script that restores or verifies tells damaged data from everything else by the documented exit code 6.
test('damaged data in the repository exits with the integrity code, as a bad SHA-256 of the etcd snapshot does', () => {
  // restic 0.18 restoring a snapshot whose pack was damaged in S3 (the verification e2e's damage).
  expect(exitFor('restoring snapshot 1a2b3c4d of [/tmp/x/data] at 2026-12-04 to /tmp/r\n' +
    'ignoring error for /data/etcd-snapshot.db: decrypting blob 87d5985a from f681fe07 failed: ciphertext verification failed\n' +
    'Fatal: There were 1 errors\n')).toBe(EXIT.integrity);
  expect(exitCodeFor(new EngineError('IntegrityError', 'etcd snapshot SHA-256 does not match its trailer'))).toBe(EXIT.integrity);
  // Not every failure is damage: a wrong password and a crash of restic itself are not.
  expect(exitFor('Fatal: wrong password or no key found\n')).toBe(EXIT.credentials);
  expect(exitFor('panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n\tcmd/restic/main.go:179 +0x45\n'))
    .toBe(EXIT.failed);
});
