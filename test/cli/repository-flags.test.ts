import { afterEach, describe, expect, test } from 'bun:test';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCredentials, repositoryFromFlags } from '../../src/cli/repository-flags.ts';
import { clearSecrets, redact } from '../../src/util/redact.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const want = { access_key: 'AKIAEXAMPLE', secret_key: 'secret-key-value', restic_repo_password: 'repo-password-value' };

describe('parseCredentials', () => {
  test('a Secret saved with kubectl get secret -o yaml', () => {
    const yaml = `apiVersion: v1\nkind: Secret\nmetadata:\n  name: s3-creds\ndata:\n  access_key: ${b64(want.access_key)}\n` +
      `  secret_key: ${b64(want.secret_key)}\n  restic_repo_password: ${b64(want.restic_repo_password)}\ntype: Opaque\n`;
    expect(parseCredentials(yaml)).toEqual(want);
  });
  test('a Secret as JSON, with stringData', () => {
    expect(parseCredentials(JSON.stringify({ kind: 'Secret', stringData: want }))).toEqual(want);
  });
  test('KEY=VALUE lines, with comments, export and quotes, and restic\'s own variable names', () => {
    const env = `# saved for DR\nexport AWS_ACCESS_KEY_ID=${want.access_key}\nAWS_SECRET_ACCESS_KEY="${want.secret_key}"\n` +
      `restic_repo_password='${want.restic_repo_password}'\n`;
    expect(parseCredentials(env)).toEqual(want);
  });
});

describe('repositoryFromFlags', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    clearSecrets();
  });

  test('a mounted Secret directory (with its ..data links) gives the credentials; the environment wins', () => {
    dir = mkdtempSync(join(tmpdir(), 'creds-'));
    const data = join(dir, '..2026_11_25');
    mkdirSync(data);
    for (const [k, v] of Object.entries(want)) {
      writeFileSync(join(data, k), `${v}\n`);
      symlinkSync(join(data, k), join(dir, k));
    }
    const repo = repositoryFromFlags({ url: 'https://s3.example.com', bucket: 'backups', credentials: dir }, { RESTIC_PASSWORD: 'from-the-environment' });
    expect(repo).toEqual({
      address: 's3:https://s3.example.com/backups', accessKey: want.access_key, secretKey: want.secret_key,
      password: 'from-the-environment', caCert: undefined,
    });
    expect(redact(`error with ${want.secret_key}`)).toBe('error with [REDACTED]');
  });

  test('RESTIC_PASSWORD_FILE (a restore or verification pod\'s mounted Secret key): its content, exactly; unreadable is named', () => {
    const d = mkdtempSync(join(tmpdir(), 'pwfile-'));
    writeFileSync(join(d, 'restic_repo_password'), 'from-a-file');
    const env = { AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 's', RESTIC_PASSWORD_FILE: join(d, 'restic_repo_password') };
    expect(repositoryFromFlags({ url: 'https://s3.example.com', bucket: 'backups' }, env).password).toBe('from-a-file');
    expect(redact('said from-a-file')).toBe('said [REDACTED]');
    expect(() => repositoryFromFlags({ url: 'https://s3.example.com', bucket: 'backups' }, { ...env, RESTIC_PASSWORD_FILE: join(d, 'gone') }))
      .toThrow(`cannot read the repository password from RESTIC_PASSWORD_FILE ${join(d, 'gone')}: ENOENT`);
    rmSync(d, { recursive: true, force: true });
  });

  test('missing pieces are named', () => {
    expect(() => repositoryFromFlags({ bucket: 'b' }, {})).toThrow('--url is required');
    expect(() => repositoryFromFlags({ url: 'https://s3.example.com', bucket: 'backups' }, { AWS_ACCESS_KEY_ID: 'x' }))
      .toThrow('missing credentials: secret_key (or AWS_SECRET_ACCESS_KEY), restic_repo_password (or RESTIC_PASSWORD)');
    expect(() => repositoryFromFlags({ url: 'https://s3.example.com', bucket: 'b', credentials: '/nonexistent' }, {}))
      .toThrow('--credentials /nonexistent: no such file or directory');
  });
});
