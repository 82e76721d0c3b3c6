/** The Kubernetes access layer under Bun against the real API server, with each kind of kubeconfig credential. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { type AddressInfo, connect, createServer } from 'node:net';
import { join } from 'node:path';
import { SECRET } from '../../src/api/group.ts';
import type { Secret } from '../../src/api/types.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { ConnectionError, CredentialError, isNotFound } from '../../src/kube/errors.ts';
import { ADMIN_TOKEN } from '../../scripts/cluster/node.ts';
import { cluster, createNamespace, deleteNamespace, kubeconfigWithUser } from '../support/e2e.ts';

const NAMESPACE = { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces' };
let dir: string;
let ns: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kubeconfig-test-'));
  ns = createNamespace('client');
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  deleteNamespace(ns);
});

/** A kubeconfig like the token one, with its user entry replaced (and optionally another CA or a proxy-url). */
function kubeconfigWith(name: string, userYaml: string, opts: { caData?: string; proxyUrl?: string } = {}): string {
  return kubeconfigWithUser(join(dir, name), userYaml, opts);
}

/** An exec plugin script; `$n` in its body is how many times it has run, counting this run. */
function plugin(name: string, body: string): { path: string; runs: () => number } {
  const path = join(dir, name);
  writeFileSync(`${path}.count`, '');
  writeFileSync(path, `#!/bin/sh\necho run >> ${path}.count\nn=$(wc -l < ${path}.count)\n${body}\n`);
  chmodSync(path, 0o755);
  return { path, runs: () => readFileSync(`${path}.count`, 'utf8').split('\n').filter(Boolean).length };
}
const execUser = (command: string) => `    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: ${command}`;

async function namespaces(kubeconfig: string): Promise<string[]> {
  const c = KubeClient.load({ kubeconfig, fieldManager: 'test' });
  return (await c.list(NAMESPACE)).items.map((n) => n.metadata.name);
}

describe('credentials', () => {
  test('bearer token', async () => {
    expect(await namespaces(cluster().kubeconfig)).toContain('kube-system');
  });

  test('client certificate (mutual TLS)', async () => {
    expect(await namespaces(cluster().kubeconfigCert)).toContain('kube-system');
  });

  test('exec credential plugin', async () => {
    const plugin = join(dir, 'exec-plugin.sh');
    writeFileSync(plugin, `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"${ADMIN_TOKEN}"}}'\n`);
    chmodSync(plugin, 0o755);
    const kc = kubeconfigWith('exec', `    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: ${plugin}\n      interactiveMode: Never`);
    expect(await namespaces(kc)).toContain('kube-system');
  });

  test('a server certificate from another CA is rejected', async () => {
    const otherCa = readFileSync(join(cluster().pki, 'etcd/ca.crt')).toString('base64');
    const kc = kubeconfigWith('wrong-ca', `    token: ${ADMIN_TOKEN}`, { caData: otherCa });
    const err = await namespaces(kc).catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.message).toContain('cannot reach the Kubernetes API');
  });

  test('a wrong token is refused with 401, not mistaken for success', async () => {
    const kc = kubeconfigWith('bad-token', '    token: not-a-valid-token');
    const err = await namespaces(kc).catch((e) => e);
    expect(err.status).toBe(401);
  });
});

describe('exec plugins, impersonation and proxies (issue 18)', () => {
  test('a 401 to a plugin\'s credential asks the plugin again and sends the request once more', async () => {
    // First run: a token the API server refuses, without expiry; then the right one.
    const p = plugin('rotating.sh', `if [ $n = 1 ]; then t=revoked-token; else t=${ADMIN_TOKEN}; fi
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' $t`);
    expect(await namespaces(kubeconfigWith('rotating', execUser(p.path)))).toContain('kube-system');
    expect(p.runs()).toBe(2);
    // A plugin that keeps giving a refused token: one retry, then the 401, not a loop.
    const bad = plugin('always-bad.sh', 'echo \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"bad"}}\'');
    const err = await namespaces(kubeconfigWith('always-bad', execUser(bad.path))).catch((e) => e);
    expect(err.status).toBe(401);
    expect(bad.runs()).toBe(2);
  });

  test('a plugin that hangs: the request fails by its time limit with an error naming the plugin', async () => {
    const p = plugin('hangs.sh', 'exec sleep 20');
    const c = KubeClient.load({ kubeconfig: kubeconfigWith('hangs', execUser(p.path)), fieldManager: 'test', requestTimeoutMs: 1_000 });
    const t0 = performance.now();
    const err = await c.list(NAMESPACE).catch((e) => e);
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect(err).toBeInstanceOf(CredentialError);
    expect(err.message).toContain(`the kubeconfig's credential plugin ${p.path} gave no credential within`);
  });

  test('as and as-groups: requests are made as the impersonated user', async () => {
    const nobody = kubeconfigWith('as-nobody', `    token: ${ADMIN_TOKEN}\n    as: nobody`);
    const err = await namespaces(nobody).catch((e) => e);
    expect(err.status).toBe(403);
    expect(err.detail).toContain('User "nobody" cannot list resource "namespaces"');
    const masters = kubeconfigWith('as-masters', `    token: ${ADMIN_TOKEN}\n    as: nobody\n    as-groups: [system:masters]`);
    expect(await namespaces(masters)).toContain('kube-system');
  });

  test('proxy-url: requests go through the HTTP CONNECT proxy, with the cluster\'s TLS checks', async () => {
    const tunnels: string[] = [];
    const proxy = createServer((client) => {
      client.once('data', (head) => {
        const [, target] = head.toString().split(' ');
        tunnels.push(target!);
        const [host, port] = target!.split(':');
        const upstream = connect(Number(port), host!, () => {
          client.write('HTTP/1.1 200 Connection established\r\n\r\n');
          upstream.pipe(client);
          client.pipe(upstream);
        });
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
      });
    });
    await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', ok));
    try {
      const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      expect(await namespaces(kubeconfigWith('proxied', `    token: ${ADMIN_TOKEN}`, { proxyUrl }))).toContain('kube-system');
      expect(tunnels).toEqual([new URL(cluster().apiserverUrl).host]);
      const otherCa = readFileSync(join(cluster().pki, 'etcd/ca.crt')).toString('base64');
      const err = await namespaces(kubeconfigWith('proxied-wrong-ca', `    token: ${ADMIN_TOKEN}`, { proxyUrl, caData: otherCa })).catch((e) => e);
      expect(err).toBeInstanceOf(ConnectionError);
      expect(err.message).toContain(`through its proxy-url 127.0.0.1:`);
    } finally {
      proxy.close();
    }
  });
});

describe('requests', () => {
  test('create, get, merge patch, delete, and 404 afterwards', async () => {
    const c = KubeClient.load({ kubeconfig: cluster().kubeconfig, fieldManager: 'test' });
    await c.create<Secret>(SECRET, ns, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's1' }, data: { a: 'YQ==' } });
    await c.patch(SECRET, ns, 's1', { metadata: { labels: { x: 'y' } } });
    const s = await c.get<Secret>(SECRET, ns, 's1');
    expect(s.metadata.labels).toEqual({ x: 'y' });
    expect(s.data).toEqual({ a: 'YQ==' });
    await c.delete(SECRET, ns, 's1');
    expect(isNotFound(await c.get(SECRET, ns, 's1').catch((e) => e))).toBe(true);
  });

  test('watch streams events as they happen', async () => {
    const c = KubeClient.load({ kubeconfig: cluster().kubeconfig, fieldManager: 'test' });
    const { resourceVersion } = await c.list(SECRET, ns);
    const ac = new AbortController();
    const seen: string[] = [];
    const watching = (async () => {
      try {
        for await (const ev of c.watch<Secret>(SECRET, ns, resourceVersion, ac.signal)) {
          seen.push(`${ev.type} ${ev.object.metadata.name}`);
          if (seen.length === 2) ac.abort();
        }
      } catch (err) {
        if (!ac.signal.aborted) throw err;
      }
    })();
    await c.create<Secret>(SECRET, ns, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'w1' } });
    await c.delete(SECRET, ns, 'w1');
    await watching;
    expect(seen).toEqual(['ADDED w1', 'DELETED w1']);
  });
});
