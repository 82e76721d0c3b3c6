/**
 * Finding the API server and credentials, as kubectl does: kubeconfig files (one, $KUBECONFIG's list merged, or
 * ~/.kube/config), contexts, every kind of credential, and the in-cluster ServiceAccount. Files in a temp dir; the exec
 * plugin is a real script. That the credentials work against a real API server is test/e2e/kube-client.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { loadClusterAccess } from '../../src/kube/kubeconfig.ts';

let dir: string;
const b64 = (s: string) => Buffer.from(s).toString('base64');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kubeconfig-unit-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string, mode = 0o600): string {
  const path = join(dir, name);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text, { mode });
  chmodSync(path, mode);
  return path;
}

function kubeconfig(name: string, o: { cluster?: string; user?: string; current?: string; contexts?: string; clusters?: string; users?: string }): string {
  return file(name, `apiVersion: v1
kind: Config
clusters:
${o.clusters ?? `- name: ${o.cluster ?? 'c1'}
  cluster: { server: "https://api.one.example:6443/", certificate-authority-data: ${b64('CA ONE')} }`}
users:
${o.users ?? `- name: ${o.user ?? 'u1'}
  user: { token: token-one }`}
contexts:
${o.contexts ?? `- name: one
  context: { cluster: ${o.cluster ?? 'c1'}, user: ${o.user ?? 'u1'} }`}
${o.current === undefined ? 'current-context: one' : o.current ? `current-context: ${o.current}` : ''}
`);
}

const noEnv = { env: {}, home: '/nonexistent', serviceAccountDir: '/nonexistent' };

describe('which kubeconfig', () => {
  test('the file given: its current context, server without trailing slash, CA and token', async () => {
    const a = loadClusterAccess({ ...noEnv, kubeconfig: kubeconfig('given.yaml', {}) });
    expect(a.server).toBe('https://api.one.example:6443');
    expect(await a.auth()).toEqual({ tls: { ca: 'CA ONE' }, headers: { Authorization: 'Bearer token-one' } });
  });

  test('$KUBECONFIG\'s files are merged as kubectl does: the first to name a context, cluster or user wins, and the first current-context', async () => {
    const first = kubeconfig('merge-1.yaml', { current: 'two', contexts: '- name: one\n  context: { cluster: c1, user: u1 }' });
    const second = file('merge-2.yaml', `clusters:
- name: c1
  cluster: { server: "https://shadowed.example" }
- name: c2
  cluster: { server: "https://api.two.example" }
users:
- name: u2
  user: { token: token-two }
contexts:
- name: two
  context: { cluster: c2, user: u2 }
- name: one
  context: { cluster: c2, user: u2 }
current-context: one
`);
    const env = { KUBECONFIG: `${first}:${join(dir, 'missing.yaml')}:${second}` };
    expect(loadClusterAccess({ ...noEnv, env }).server).toBe('https://api.two.example');
    const one = loadClusterAccess({ ...noEnv, env, context: 'one' });
    expect(one.server).toBe('https://api.one.example:6443');
    expect((await one.auth()).headers.Authorization).toBe('Bearer token-one');
  });

  test('the controller hands $KUBECONFIG over as kubectl\'s list, not as one file named "a:b"', () => {
    const first = kubeconfig('ctl-1.yaml', { current: '' });
    const env = { KUBECONFIG: `${join(dir, 'ctl-missing.yaml')}:${first}:${kubeconfig('ctl-2.yaml', { cluster: 'c2' })}` };
    const config = loadConfig([], env);
    if (config === 'help') throw new Error('unexpected help');
    expect(config.kubeconfig).toBeUndefined();
    // ctl-1 sets no current-context; ctl-2's "one" names c2, but ctl-1's "one" came first and names c1.
    expect(loadClusterAccess({ ...noEnv, kubeconfig: config.kubeconfig, env }).server).toBe('https://api.one.example:6443');
  });

  test('~/.kube/config when $KUBECONFIG is unset', () => {
    kubeconfig('home/.kube/config', {});
    expect(loadClusterAccess({ ...noEnv, home: join(dir, 'home') }).server).toBe('https://api.one.example:6443');
  });

  test('what cannot be used is said plainly', () => {
    expect(() => loadClusterAccess(noEnv)).toThrow(/^no Kubernetes configuration: give --kubeconfig FILE, set KUBECONFIG/);
    const path = kubeconfig('plain.yaml', {});
    expect(() => loadClusterAccess({ ...noEnv, kubeconfig: path, context: 'prod' })).toThrow(`the kubeconfig ${path} has no context "prod"`);
    const none = kubeconfig('no-current.yaml', { current: '' });
    expect(() => loadClusterAccess({ ...noEnv, kubeconfig: none })).toThrow('sets no current-context; give a context (--context)');
    const noUser = kubeconfig('no-user.yaml', { users: '  []' });
    expect(() => loadClusterAccess({ ...noEnv, kubeconfig: noUser })).toThrow('context "one" of the kubeconfig');
    expect(() => loadClusterAccess({ ...noEnv, kubeconfig: join(dir, 'absent.yaml') })).toThrow(/^cannot read kubeconfig .*absent\.yaml/);
    const bad = file('bad.yaml', 'clusters: [unclosed\n');
    expect(() => loadClusterAccess({ ...noEnv, kubeconfig: bad })).toThrow(/^cannot read kubeconfig .*bad\.yaml/);
  });
});

describe('credentials', () => {
  test('client certificate and key files, relative to the kubeconfig; a CA file; a TLS server name; skip-verify', async () => {
    file('pki/client.crt', 'CERT');
    file('pki/client.key', 'KEY');
    file('pki/ca.crt', 'CA FILE');
    const path = kubeconfig('files.yaml', {
      clusters: '- name: c1\n  cluster: { server: "https://10.0.0.1:6443", certificate-authority: pki/ca.crt, tls-server-name: kubernetes, insecure-skip-tls-verify: true }',
      users: '- name: u1\n  user: { client-certificate: pki/client.crt, client-key: pki/client.key }',
    });
    expect(await loadClusterAccess({ ...noEnv, kubeconfig: path }).auth()).toEqual({
      tls: { ca: 'CA FILE', cert: 'CERT', key: 'KEY', serverName: 'kubernetes', rejectUnauthorized: false }, headers: {},
    });
  });

  test('inline certificate data; an IP address as TLS server name is left to the address check', async () => {
    const path = kubeconfig('inline.yaml', {
      clusters: '- name: c1\n  cluster: { server: "https://10.0.0.1:6443", tls-server-name: 10.0.0.1 }',
      users: `- name: u1\n  user: { client-certificate-data: ${b64('CERT DATA')}, client-key-data: ${b64('KEY DATA')} }`,
    });
    expect(await loadClusterAccess({ ...noEnv, kubeconfig: path }).auth()).toEqual({ tls: { cert: 'CERT DATA', key: 'KEY DATA' }, headers: {} });
  });

  test('basic auth', async () => {
    const path = kubeconfig('basic.yaml', { users: '- name: u1\n  user: { username: admin, password: "p:w" }' });
    expect((await loadClusterAccess({ ...noEnv, kubeconfig: path }).auth()).headers).toEqual({ Authorization: `Basic ${b64('admin:p:w')}` });
  });

  test('a token file is read again after a minute (a rotated token is picked up)', async () => {
    const token = file('token-file', 'first\n');
    const path = kubeconfig('token-file.yaml', { users: '- name: u1\n  user: { tokenFile: token-file }' });
    let now = 0;
    const a = loadClusterAccess({ ...noEnv, kubeconfig: path }, () => now);
    expect((await a.auth()).headers.Authorization).toBe('Bearer first');
    writeFileSync(token, 'second\n');
    now = 59_000;
    expect((await a.auth()).headers.Authorization).toBe('Bearer first');
    now = 60_000;
    expect((await a.auth()).headers.Authorization).toBe('Bearer second');
  });

  test('an exec plugin runs with its env and is asked again only once its credential expires', async () => {
    const count = join(dir, 'exec-count');
    writeFileSync(count, '');
    const plugin = file('plugin.sh', `#!/bin/sh
echo run >> ${count}
n=$(wc -l < ${count})
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s-%s-%s","expirationTimestamp":"%s"}}' "$1" "$PLUGIN_VAR" "$n" "$EXPIRES"
test "$(echo "$KUBERNETES_EXEC_INFO" | grep -c '"interactive":false')" = 1
`, 0o755);
    const expires = new Date(Date.now() + 60_000).toISOString();
    const path = kubeconfig('exec.yaml', {
      users: `- name: u1
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ${plugin}
      args: [arg]
      env: [{ name: PLUGIN_VAR, value: var }, { name: EXPIRES, value: "${expires}" }]`,
    });
    let now = Date.now();
    const a = loadClusterAccess({ ...noEnv, kubeconfig: path }, () => now);
    expect((await a.auth()).headers.Authorization).toBe('Bearer arg-var-1');
    expect((await a.auth()).headers.Authorization).toBe('Bearer arg-var-1');
    now += 61_000;
    expect((await a.auth()).headers.Authorization).toBe('Bearer arg-var-2');
    // Requests at the same moment after expiry share one run of the plugin.
    now += 61_000;
    const together = await Promise.all([a.auth(), a.auth(), a.auth()]);
    expect(together.map((r) => r.headers.Authorization)).toEqual(['Bearer arg-var-3', 'Bearer arg-var-3', 'Bearer arg-var-3']);
  });

  test('an exec plugin that fails is reported with its own words', async () => {
    const plugin = file('failing.sh', '#!/bin/sh\necho "login expired: run sso-login" >&2\nexit 3\n', 0o755);
    const path = kubeconfig('exec-fail.yaml', { users: `- name: u1\n  user: { exec: { command: ${plugin} } }` });
    await expect(loadClusterAccess({ ...noEnv, kubeconfig: path }).auth())
      .rejects.toThrow(`the kubeconfig's credential plugin ${plugin} exited with 3: login expired: run sso-login`);
  });

  test('a legacy auth-provider is refused with what to use instead', () => {
    const path = kubeconfig('auth-provider.yaml', { users: '- name: u1\n  user: { auth-provider: { name: oidc } }' });
    expect(() => loadClusterAccess({ ...noEnv, kubeconfig: path })).toThrow('user "u1" uses the auth-provider "oidc"');
  });
});

describe('impersonation and proxy: honoured or refused, never ignored', () => {
  test('a user\'s as and as-groups become headers of every request, next to its own credential', async () => {
    const path = kubeconfig('as.yaml', { users: '- name: u1\n  user: { token: t, as: jane, as-groups: [ops] }' });
    expect((await loadClusterAccess({ ...noEnv, kubeconfig: path }).auth()).headers)
      .toEqual({ Authorization: 'Bearer t', 'Impersonate-User': 'jane', 'Impersonate-Group': 'ops' });
    const two = kubeconfig('as-two.yaml', { users: '- name: u1\n  user: { token: t, as: jane, as-groups: [ops, dev] }' });
    expect(() => loadClusterAccess({ ...noEnv, kubeconfig: two })).toThrow('user "u1" of the kubeconfig sets 2 as-groups');
  });

  test('an http(s) proxy-url is used; a SOCKS one is refused, and an unparsable one is not echoed (it may hold a password)', () => {
    const cluster = (proxy: string) => `- name: c1\n  cluster: { server: "https://api.one.example:6443", proxy-url: "${proxy}" }`;
    const http = kubeconfig('proxy.yaml', { clusters: cluster('http://user:pw@proxy.example:3128') });
    expect(loadClusterAccess({ ...noEnv, kubeconfig: http }).proxy).toBe('http://user:pw@proxy.example:3128');
    expect(loadClusterAccess({ ...noEnv, kubeconfig: kubeconfig('plain-proxy.yaml', {}) }).proxy).toBeUndefined();
    const socks = kubeconfig('socks.yaml', { clusters: cluster('socks5://user:pw@proxy.example:1080') });
    expect(() => loadClusterAccess({ ...noEnv, kubeconfig: socks }))
      .toThrow('cluster "c1" of the kubeconfig sets a socks5 proxy-url; kubedr can use only an http or https proxy');
    const junk = kubeconfig('junk-proxy.yaml', { clusters: cluster('not a url secret-pw') });
    const err = (() => {
      try {
        loadClusterAccess({ ...noEnv, kubeconfig: junk });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.message).toBe('cluster "c1" of the kubeconfig has a proxy-url that is not a URL');
  });

  test('only a plugin\'s credential can be discarded after a 401; a static token cannot be asked for again', async () => {
    const plugin = file('discard-plugin.sh', '#!/bin/sh\necho \'{"status":{"token":"from-plugin"}}\'\n', 0o755);
    const exec = kubeconfig('discard.yaml', { users: `- name: u1\n  user: { exec: { command: ${plugin} } }` });
    expect((await loadClusterAccess({ ...noEnv, kubeconfig: exec }).auth()).discard).toBeFunction();
    expect((await loadClusterAccess({ ...noEnv, kubeconfig: kubeconfig('static.yaml', {}) }).auth()).discard).toBeUndefined();
  });
});

describe('in a pod', () => {
  test('the ServiceAccount: the service address (IPv6 in brackets), the mounted CA and the token, re-read as the kubelet rotates it', async () => {
    const sa = join(dir, 'sa');
    file('sa/ca.crt', 'SA CA');
    file('sa/token', 'sa-token-1');
    let now = 0;
    const a = loadClusterAccess({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, home: '/nonexistent', serviceAccountDir: sa }, () => now);
    expect(a.server).toBe('https://[fd00::1]:443');
    expect(await a.auth()).toEqual({ tls: { ca: 'SA CA' }, headers: { Authorization: 'Bearer sa-token-1' } });
    writeFileSync(join(sa, 'token'), 'sa-token-2');
    now = 60_000;
    expect((await a.auth()).headers.Authorization).toBe('Bearer sa-token-2');
  });

  test('a kubeconfig, when there is one, comes before the ServiceAccount', () => {
    const path = kubeconfig('over-sa.yaml', {});
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBECONFIG: path };
    expect(loadClusterAccess({ env, home: '/nonexistent', serviceAccountDir: join(dir, 'sa') }).server).toBe('https://api.one.example:6443');
  });
});
