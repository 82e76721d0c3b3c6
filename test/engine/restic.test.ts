/**
 * The restic runner's contract with the child process. A stand-in script plays restic here (it records argv and env),
 * because these are facts about what we pass, not about restic; the e2e tests run the real restic.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EngineError } from '../../src/engine/errors.ts';
import { type Repository, Restic } from '../../src/engine/restic.ts';
import { type SilentEndpoint, silentEndpoint } from '../support/listener.ts';

let endpoint: SilentEndpoint;

let dir: string;
let fake: string;
const repo: Repository = {
  address: 's3:https://127.0.0.1:9/bucket', password: 'repo-pass-123', accessKey: 'AKIA-TEST', secretKey: 'sk-secret-456',
  caCert: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
};

beforeAll(async () => {
  endpoint = await silentEndpoint();
  repo.address = `s3:https://127.0.0.1:${endpoint.port}/bucket`;
  dir = mkdtempSync(join(tmpdir(), 'restic-test-'));
  fake = join(dir, 'restic');
  // Records argv, env and the CA file's content; behaves per FAKE_MODE in its argv.
  writeFileSync(fake, `#!/bin/sh
out="${dir}/call"
printf '%s\\n' "$@" > "$out.argv"
env > "$out.env"
for a in "$@"; do case "$prev" in --cacert) cp "$a" "$out.ca"; echo "$a" > "$out.capath";; --new-password-file) cp "$a" "$out.newpw"; stat -c %a "$a" > "$out.newpwmode";; esac; prev="$a"; done
rm -f "$out.pw" "$out.pwmode"
if [ -n "$RESTIC_PASSWORD_FILE" ]; then cp "$RESTIC_PASSWORD_FILE" "$out.pw"; stat -c %a "$RESTIC_PASSWORD_FILE" > "$out.pwmode"; echo "$RESTIC_PASSWORD_FILE" > "$out.pwpath"; fi
case "$*" in
  *fail-password*) echo "Fatal: wrong password or no key found" >&2; exit 1;;
  *sleep*) exec sleep 30;;
  *refused*) echo 'Load(<config/0000000000>, 0, 0) returned error, retrying after 720ms: Access Denied.' >&2; exec sleep 30;;
  *lines*) printf '{"a":1}\\n{"b":2}\\n'; exit 0;;
esac
echo ok
`);
  chmodSync(fake, 0o755);
});
afterAll(() => {
  endpoint.close();
  rmSync(dir, { recursive: true, force: true });
});

const read = (f: string) => readFileSync(join(dir, f), 'utf8');

describe('Restic.run', () => {
  test('the password is in a private file that is gone afterwards, never in argv or the environment', async () => {
    await new Restic({ binary: fake }).run(repo, ['cat', 'config']);
    expect(read('call.pw')).toBe(repo.password);
    expect(read('call.pwmode').trim()).toBe('600');
    expect(existsSync(read('call.pwpath').trim())).toBe(false);
    expect(read('call.env')).not.toContain(repo.password);
    expect(read('call.argv')).not.toContain(repo.password);
  });

  test('a password restic would trim from a file still opens: it travels in RESTIC_PASSWORD', async () => {
    await new Restic({ binary: fake }).run({ ...repo, password: 'pw-with-newline\n' }, ['cat', 'config']);
    expect(existsSync(join(dir, 'call.pw'))).toBe(false);
    expect(read('call.env')).toContain('RESTIC_PASSWORD=pw-with-newline\n');
  });

  test('key add: the new password goes in a private --new-password-file, not in argv', async () => {
    await new Restic({ binary: fake }).run(repo, ['key', 'add'], { newPassword: 'the-new-one' });
    expect(read('call.newpw')).toBe('the-new-one');
    expect(read('call.newpwmode').trim()).toBe('600');
    expect(read('call.argv')).not.toContain('the-new-one');
    expect(read('call.env')).not.toContain('the-new-one');
    const err = await new Restic({ binary: fake }).run(repo, ['key', 'add'], { newPassword: ' padded ' }).catch((e) => e);
    expect(err.kind).toBe('InvalidInput');
    expect(err.message).not.toContain('padded');
  });

  test('S3 keys go through the environment, never argv', async () => {
    await new Restic({ binary: fake }).run(repo, ['cat', 'config']);
    const argv = read('call.argv');
    for (const secret of [repo.password, repo.accessKey, repo.secretKey]) expect(argv).not.toContain(secret);
    const env = read('call.env');
    expect(env).toContain(`AWS_ACCESS_KEY_ID=${repo.accessKey}`);
    expect(env).toContain(`AWS_SECRET_ACCESS_KEY=${repo.secretKey}`);
    expect(argv.split('\n').slice(0, 3)).toEqual(['-r', repo.address, '--no-cache']);
  });

  test('the controller\'s own AWS_/RESTIC_ variables do not reach restic', async () => {
    process.env.RESTIC_REPOSITORY = 'should-not-leak';
    try {
      await new Restic({ binary: fake }).run(repo, ['snapshots']);
    } finally {
      delete process.env.RESTIC_REPOSITORY;
    }
    expect(read('call.env')).not.toContain('should-not-leak');
  });

  test('the CA bundle is passed as a private file that is gone afterwards', async () => {
    await new Restic({ binary: fake }).run(repo, ['cat', 'config']);
    expect(read('call.ca')).toBe(repo.caCert!);
    expect(existsSync(read('call.capath').trim())).toBe(false);
  });

  test('a failure becomes an EngineError with the cause, and the temp dir is still removed', async () => {
    const err = await new Restic({ binary: fake }).run(repo, ['fail-password']).catch((e) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err.kind).toBe('WrongPassword');
    expect(existsSync(read('call.capath').trim())).toBe(false);
  });

  test('a time limit stops restic with SIGINT and says so', async () => {
    const err = await new Restic({ binary: fake }).run(repo, ['sleep'], { timeoutMs: 300 }).catch((e) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err.kind).toBe('Timeout');
    expect(err.message).toBe('restic sleep did not finish within 0 s');
  });

  test('the S3 server refusing the credentials ends the run at once, in its words (restic would retry for 15 minutes)', async () => {
    const started = performance.now();
    const err = await new Restic({ binary: fake }).run(repo, ['refused'], { timeoutMs: 20_000 }).catch((e) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err.kind).toBe('AccessDenied');
    expect(err.message).toBe('S3 endpoint refused the credentials: Load(<config/0000000000>, 0, 0) returned error, retrying after 720ms: Access Denied.');
    expect(performance.now() - started).toBeLessThan(6_000);
  });

  test('an abort cancels the run', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const err = await new Restic({ binary: fake }).run(repo, ['sleep'], { signal: ac.signal }).catch((e) => e);
    expect(err.kind).toBe('Cancelled');
  });

  test('stdout lines stream to onLine as they arrive', async () => {
    const lines: string[] = [];
    await new Restic({ binary: fake }).run(repo, ['lines'], { onLine: (l) => lines.push(l) });
    expect(lines).toEqual(['{"a":1}', '{"b":2}']);
  });

  test('a missing binary is a clear error', async () => {
    const err = await new Restic({ binary: join(dir, 'nope') }).run(repo, ['version']).catch((e) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err.message).toContain('cannot start restic');
  });
});

describe('maintenance of a repository, waited for before a backup takes its slot', () => {
  const repoA: Repository = { ...repo, address: 's3:https://s3.example.com/a' };
  const repoB: Repository = { ...repo, address: 's3:https://s3.example.com/b' };

  test('a prune queued or running on a repository holds a backup of that repository, not of another; the wait says what it is', async () => {
    const restic = new Restic();
    let endPrune!: () => void;
    const prune = restic.exclusive(repoA, () => new Promise<void>((ok) => { endPrune = ok; }), 'a prune of s3:https://s3.example.com/a');
    const told: string[] = [];
    let doneA = false;
    const waitA = restic.maintenanceDone(repoA, new AbortController().signal, (w) => told.push(w)).then(() => { doneA = true; });
    await restic.maintenanceDone(repoB, new AbortController().signal, (w) => told.push(`B: ${w}`));
    await Bun.sleep(10);
    expect(doneA).toBe(false);
    expect(told).toEqual(['a prune of s3:https://s3.example.com/a']);
    endPrune();
    await prune;
    await waitA;
    expect(doneA).toBe(true);
  });

  test('another backup\'s upload (exclusive without a label) is not maintenance: no wait', async () => {
    const restic = new Restic();
    let endUpload!: () => void;
    const upload = restic.exclusive(repoA, () => new Promise<void>((ok) => { endUpload = ok; }));
    await restic.maintenanceDone(repoA, new AbortController().signal);
    while (!endUpload) await Bun.sleep(1);
    endUpload();
    await upload;
  });

  test('a cancelled backup stops waiting at once', async () => {
    const restic = new Restic();
    let endPrune!: () => void;
    const prune = restic.exclusive(repoA, () => new Promise<void>((ok) => { endPrune = ok; }), 'a prune');
    const abort = new AbortController();
    const waiting = restic.maintenanceDone(repoA, abort.signal);
    abort.abort();
    await expect(waiting).rejects.toThrow('cancelled while waiting');
    while (!endPrune) await Bun.sleep(1);
    endPrune();
    await prune;
  });
});

test('no restic outlives the process that started it: one still running when it exits is killed', () => {
  // A process that starts a restic which does not end (the stand-in sleeps, as a hung or stopped restic would), then
  // exits, as the controller does when its shutdown time limit is up.
  const main = join(dir, 'exits.ts');
  writeFileSync(main, `import { Restic } from ${JSON.stringify(join(import.meta.dir, '../../src/engine/restic.ts'))};
const r = new Restic({ binary: ${JSON.stringify(fake)} });
void r.run(${JSON.stringify(repo)}, ['sleep']).catch(() => undefined);
setTimeout(() => process.exit(0), 1000);
`);
  const child = Bun.spawnSync([process.execPath, main], { stdout: 'pipe', stderr: 'pipe' });
  expect(child.exitCode).toBe(0);
  // The stand-in's `exec sleep 30` keeps its pid; its argv file shows it ran.
  expect(read('call.argv')).toContain('sleep');
  const sleeping = Bun.spawnSync(['pgrep', '-f', '^sleep 30$']).stdout.toString().trim();
  expect(sleeping).toBe('');
});
