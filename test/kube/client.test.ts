/**
 * KubeClient decisions that need no API server: what an unreachable server through a proxy and a hung credential
 * plugin are reported as. Requests against the real API server: test/e2e/kube-client.test.ts.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeClient } from '../../src/kube/client.ts';
import { ConnectionError, CredentialError, ignoreNotFound, isNotFound, isNotServed, isTransient } from '../../src/kube/errors.ts';

const NAMESPACE = { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces' };
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'client-unit-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function kubeconfig(name: string, cluster: string, user: string): string {
  const path = join(dir, name);
  writeFileSync(path, `clusters:\n- name: c\n  cluster: ${cluster}\nusers:\n- name: u\n  user: ${user}\n` +
    'contexts:\n- name: x\n  context: { cluster: c, user: u }\ncurrent-context: x\n');
  return path;
}

test('a server unreachable through its proxy: the error names the proxy\'s host, never its password', async () => {
  const kc = kubeconfig('proxy', '{ server: "https://127.0.0.1:1", proxy-url: "http://user:proxy-secret@127.0.0.1:1" }', '{ token: t }');
  const err = await KubeClient.load({ kubeconfig: kc, fieldManager: 't' }).list(NAMESPACE).catch((e) => e);
  expect(err).toBeInstanceOf(ConnectionError);
  expect(err.message).toStartWith('cannot reach the Kubernetes API at https://127.0.0.1:1 through its proxy-url 127.0.0.1:1: ');
  expect(JSON.stringify({ message: err.message, cause: String(err.cause) })).not.toContain('proxy-secret');
});

test('a hung credential plugin is reported as the plugin\'s fault within the time limit, not as an API server that did not answer', async () => {
  const plugin = join(dir, 'hang.sh');
  writeFileSync(plugin, '#!/bin/sh\nexec sleep 10\n');
  chmodSync(plugin, 0o755);
  const kc = kubeconfig('hang', '{ server: "https://127.0.0.1:1" }', `{ exec: { command: ${plugin} } }`);
  const t0 = performance.now();
  const err = await KubeClient.load({ kubeconfig: kc, fieldManager: 't', requestTimeoutMs: 300 }).list(NAMESPACE).catch((e) => e);
  expect(performance.now() - t0).toBeLessThan(2_000);
  expect(err).toBeInstanceOf(CredentialError);
  expect(err.message).toStartWith(`the kubeconfig's credential plugin ${plugin} gave no credential within`);
});

test('a 404 naming the object means it is gone; a 404 for the kind (a just-started API server without its CRDs yet) is asked again', async () => {
  // An http server answering as kube-apiserver does in each case.
  const server = Bun.serve({
    port: 0, hostname: '127.0.0.1',
    fetch: (req) => Response.json(new URL(req.url).pathname.endsWith('/gone')
      ? { kind: 'Status', status: 'Failure', reason: 'NotFound', message: 'namespaces "gone" not found', details: { name: 'gone', kind: 'namespaces' }, code: 404 }
      : { kind: 'Status', status: 'Failure', reason: 'NotFound', message: 'the server could not find the requested resource', details: {}, code: 404 },
    { status: 404 }),
  });
  try {
    const client = KubeClient.load({ kubeconfig: kubeconfig('plain', `{ server: "http://127.0.0.1:${server.port}" }`, '{ token: t }'), fieldManager: 't' });
    const gone = await client.get(NAMESPACE, '', 'gone').catch((e) => e);
    expect([isNotFound(gone), isNotServed(gone), isTransient(gone)]).toEqual([true, false, false]);
    const notServed = await client.get({ group: 'kubedr.catalogicsoftware.com', version: 'v1alpha1', kind: 'X', plural: 'xs' }, 'ns', 'a').catch((e) => e);
    expect([isNotFound(notServed), isNotServed(notServed), isTransient(notServed)]).toEqual([false, true, true]);
    expect(ignoreNotFound(gone)).toBeUndefined();
    expect(() => ignoreNotFound(notServed)).toThrow('the server could not find the requested resource');
  } finally {
    server.stop(true);
  }
});
