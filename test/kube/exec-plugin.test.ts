/**
 * Exec credential plugins as real child processes (shell scripts): the time limit of a run and of a wait, the kill of
 * a plugin that overruns, and when a credential is used again (expiry, no expiry, a client certificate's notAfter,
 * a 401). The same plugins through a client against the real API server: test/e2e/kube-client.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CredentialError } from '../../src/kube/errors.ts';
import { type ExecConfig, execCredentials, stopPluginRuns } from '../../src/kube/exec-plugin.ts';
import { isAlive } from '../../src/util/process.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'exec-plugin-unit-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A plugin script; `$n` in its body is how many times it has run, counting this run. */
function plugin(name: string, body: string): ExecConfig {
  const path = join(dir, name);
  const count = `${path}.count`;
  writeFileSync(count, '');
  writeFileSync(path, `#!/bin/sh\necho run >> ${count}\nn=$(wc -l < ${count})\n${body}\n`);
  chmodSync(path, 0o755);
  return { command: path };
}
const runs = (exec: ExecConfig) => readFileSync(`${exec.command}.count`, 'utf8').split('\n').filter(Boolean).length;
/** Prints an ExecCredential; `$n` in it becomes the run's number. */
const credential = (status: object) =>
  `echo '${JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status }).replaceAll('$n', `'"$n"'`)}'`;

describe('time limits', () => {
  test('a hung plugin: a request waits only until its signal aborts, and is told so; the plugin is killed at the run\'s limit', async () => {
    const exec = plugin('hang.sh', `echo $$ > ${join(dir, 'hang.pid')}\nexec sleep 60`);
    const creds = execCredentials(exec, { timeoutMs: 1_500, now: Date.now });
    const t0 = performance.now();
    const err = await creds.get(AbortSignal.timeout(200)).catch((e) => e);
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(err).toBeInstanceOf(CredentialError);
    expect(err.message).toBe(`the kubeconfig's credential plugin ${exec.command} gave no credential within the request's time limit ` +
      '(it may run for up to 1.5 s before it is stopped)');
    const pid = Number(readFileSync(join(dir, 'hang.pid'), 'utf8'));
    expect(isAlive(pid)).toBe(true);
    // A request without a time limit of its own still gets an answer: the run's, when the plugin is killed.
    const overrun = await creds.get().catch((e) => e);
    expect(overrun).toBeInstanceOf(CredentialError);
    expect(overrun.message).toBe(`the kubeconfig's credential plugin ${exec.command} gave no credential within 1.5 s and was stopped`);
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect(isAlive(pid)).toBe(false);
    // Both waited for one run; the next request starts another.
    expect(runs(exec)).toBe(1);
    await creds.get(AbortSignal.timeout(100)).catch(() => undefined);
    expect(runs(exec)).toBe(2);
  });

  test('a run still in flight when the controller stops is killed and reaped, not left running orphaned', async () => {
    const exec = plugin('orphan.sh', `echo $$ > ${join(dir, 'orphan.pid')}\nexec sleep 60`);
    const creds = execCredentials(exec, { timeoutMs: 30_000, now: Date.now });
    await creds.get(AbortSignal.timeout(300)).catch(() => undefined);
    const pid = Number(readFileSync(join(dir, 'orphan.pid'), 'utf8'));
    expect(isAlive(pid)).toBe(true);
    const t0 = performance.now();
    await stopPluginRuns();
    expect(isAlive(pid)).toBe(false);
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  test('a plugin slower than one request\'s limit is not started over: its credential serves the next request', async () => {
    const exec = plugin('slow.sh', `sleep 0.5\n${credential({ token: 'slow-$n' })}`);
    const creds = execCredentials(exec, { timeoutMs: 5_000, now: Date.now });
    await expect(creds.get(AbortSignal.timeout(100))).rejects.toBeInstanceOf(CredentialError);
    await Bun.sleep(700);
    expect((await creds.get(AbortSignal.timeout(100))).token).toBe('slow-1');
    expect(runs(exec)).toBe(1);
  });

  test('a command that cannot be run says so, with the kubeconfig\'s install hint', async () => {
    const creds = execCredentials({ command: join(dir, 'no-such-plugin'), installHint: 'install it with: apt install thing' },
      { timeoutMs: 1_000, now: Date.now });
    const err = await creds.get().catch((e) => e);
    expect(err).toBeInstanceOf(CredentialError);
    expect(err.message).toStartWith(`cannot run the kubeconfig's credential plugin ${join(dir, 'no-such-plugin')}: `);
    expect(err.message).toEndWith('\ninstall it with: apt install thing');
  });
});

describe('when the plugin runs again', () => {
  test('no expirationTimestamp: the credential is used until it is discarded after a 401, as client-go does', async () => {
    const exec = plugin('forever.sh', credential({ token: 'tok-$n' }));
    let now = Date.now();
    const creds = execCredentials(exec, { timeoutMs: 5_000, now: () => now });
    const first = await creds.get();
    expect(first.token).toBe('tok-1');
    now += 365 * 24 * 3_600_000;
    expect((await creds.get()).token).toBe('tok-1');
    creds.discard(first);
    const second = await creds.get();
    expect(second.token).toBe('tok-2');
    // A late 401 to the old credential must not throw away the new one (two requests failed with it at once).
    creds.discard(first);
    expect((await creds.get()).token).toBe('tok-2');
    expect(runs(exec)).toBe(2);
  });

  test('a client certificate without expirationTimestamp is used until its notAfter', async () => {
    const key = join(dir, 'cert.key');
    const crt = join(dir, 'cert.crt');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', crt,
      '-days', '2', '-subj', '/CN=exec-user'], { stdio: 'ignore' });
    const notAfter = Date.parse(execFileSync('openssl', ['x509', '-noout', '-enddate', '-in', crt], { encoding: 'utf8' }).replace('notAfter=', ''));
    const exec = plugin('cert.sh', `printf '{"kind":"ExecCredential","status":{"clientCertificateData":"%s","clientKeyData":"%s"}}' "$(awk '{printf "%s\\\\n", $0}' ${crt})" "$(awk '{printf "%s\\\\n", $0}' ${key})"`);
    let now = Date.now();
    const creds = execCredentials(exec, { timeoutMs: 5_000, now: () => now });
    expect((await creds.get()).clientCertificateData).toBe(readFileSync(crt, 'utf8'));
    now = notAfter - 1_000;
    await creds.get();
    expect(runs(exec)).toBe(1);
    now = notAfter;
    await creds.get();
    expect(runs(exec)).toBe(2);
  });

  test('an expirationTimestamp that is not a time is an error, not a plugin run for every request', async () => {
    const exec = plugin('bad-time.sh', credential({ token: 't', expirationTimestamp: 'tomorrow' }));
    const err = await execCredentials(exec, { timeoutMs: 5_000, now: Date.now }).get().catch((e) => e);
    expect(err).toBeInstanceOf(CredentialError);
    expect(err.message).toContain('printed an expirationTimestamp that is not an RFC 3339 time: "tomorrow"');
  });

  test('provideClusterInfo: the plugin is told the cluster in KUBERNETES_EXEC_INFO', async () => {
    const exec = { ...plugin('info.sh', 'printf \'{"status":{"token":"%s"}}\' "$(echo "$KUBERNETES_EXEC_INFO" | base64 -w0)"'), provideClusterInfo: true };
    const cluster = { server: 'https://api.example:6443', 'certificate-authority-data': 'Q0E=', 'tls-server-name': 'kubernetes' };
    const info = JSON.parse(Buffer.from((await execCredentials(exec, { timeoutMs: 5_000, now: Date.now, cluster }).get()).token!, 'base64').toString());
    expect(info).toEqual({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', spec: { interactive: false, cluster } });
    const without = { ...exec, provideClusterInfo: false };
    const plain = JSON.parse(Buffer.from((await execCredentials(without, { timeoutMs: 5_000, now: Date.now, cluster }).get()).token!, 'base64').toString());
    expect(plain.spec).toEqual({ interactive: false });
  });
});
