/**
 * `kubedr rotate-key`, the disaster-recovery path's key rotation, against the real S3 server with real restic: the new
 * password opens the repository after the first run while the old one still does; after `--remove-old` the old one
 * opens nothing; each run repeated finds its work done; no password in what the command prints.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cluster, repoRoot, resticAt, uniqueBucket } from '../support/e2e.ts';
import { createS3User, newS3Keys } from '../support/s3.ts';

const keys = newS3Keys('rotcli');
const bucket = uniqueBucket('rotcli');
const oldPassword = `old-${crypto.randomUUID()}`;
const newPassword = `new-${crypto.randomUUID()}`;
let dir: string;

beforeAll(() => {
  createS3User(keys);
  dir = mkdtempSync(join(tmpdir(), 'rotate-cli-'));
  writeFileSync(join(dir, 'creds'), `access_key=${keys.accessKey}\nsecret_key=${keys.secretKey}\nrestic_repo_password=${oldPassword}\n`, { mode: 0o600 });
  // A trailing newline, as `echo … > file` leaves it: the password is the line, as restic reads it.
  writeFileSync(join(dir, 'new'), `${newPassword}\n`, { mode: 0o600 });
  const init = resticAt(bucket, oldPassword, ['init'], keys);
  if (init.code !== 0) throw new Error(init.stderr);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function rotate(...extra: string[]) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), 'rotate-key', '--url', cluster().s3Url, '--bucket', bucket,
    '--credentials', join(dir, 'creds'), '--ca-cert', join(cluster().pki, 'ca.crt'), '--new-password-file', join(dir, 'new'), ...extra],
  { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: dir, TMPDIR: dir } });
  for (const secret of [oldPassword, newPassword, keys.secretKey]) expect(r.stdout + r.stderr).not.toContain(secret);
  return { code: r.status, out: r.stdout + r.stderr };
}
function expectRun(r: { code: number | null; out: string }, says: string) {
  expect(r.out).toContain(says);
  expect(r.code).toBe(0);
}
const opens = (password: string) => resticAt(bucket, password, ['cat', 'config'], keys).code === 0;

test('adds the new key, then removes the old one; each run repeated is a no-op; the old password is refused at the end', () => {
  const first = rotate();
  expect(first.out).toContain('Added the new password as key');
  expect(first.out).toContain('run again with --remove-old');
  expect(first.code).toBe(0);
  expect(opens(newPassword) && opens(oldPassword)).toBe(true);

  expectRun(rotate(), 'already opens the repository');
  expect(JSON.parse(resticAt(bucket, newPassword, ['key', 'list', '--json'], keys).stdout)).toHaveLength(2);

  expectRun(rotate('--remove-old'), 'the old password opens nothing now');
  expect(opens(oldPassword)).toBe(false);
  expect(opens(newPassword)).toBe(true);

  expectRun(rotate('--remove-old'), 'Nothing to do');
  // Without --remove-old, a rotation already finished is reported as such, not as a wrong password to fix blindly.
  const after = rotate();
  expect(after.code).not.toBe(0);
  expect(after.out).toContain('the rotation is done, put the new password in the Secret');
}, 120_000);
