/** The Kubernetes access layer under Bun against the real API server, with each kind of kubeconfig credential. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SECRET } from '../../src/api/group.ts';
import type { Secret } from '../../src/api/types.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { ConnectionError, isNotFound } from '../../src/kube/errors.ts';
import { ADMIN_TOKEN } from '../../scripts/cluster/node.ts';
import { cluster, createNamespace, deleteNamespace } from '../support/e2e.ts';

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

/** A kubeconfig like the token one, with its user entry replaced. */
function kubeconfigWith(name: string, userYaml: string, caData?: string): string {
  const base = readFileSync(cluster().kubeconfig, 'utf8');
  let text = base.replace(/users:\n- name: admin\n  user:\n[\s\S]*?\ncontexts:/, `users:\n- name: admin\n  user:\n${userYaml}\ncontexts:`);
  if (caData) text = text.replace(/certificate-authority-data: \S+/, `certificate-authority-data: ${caData}`);
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

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
    const kc = kubeconfigWith('wrong-ca', `    token: ${ADMIN_TOKEN}`, otherCa);
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
