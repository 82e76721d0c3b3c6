/**
 * @module The test node's state file and the readiness checks of its parts: what node.ts and node-control-plane.ts wait
 * for after starting or restarting something.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestEnv } from './node.ts';
import { ADMIN_TOKEN } from './pki.ts';
import { tryRun } from './procs.ts';

export function saveState(env: TestEnv): void {
  writeFileSync(join(env.dir, 'state.json'), JSON.stringify(env, null, 2));
}

export async function apiserverReady(url: string, pki: string): Promise<boolean> {
  const res = await fetch(`${url}/readyz`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, tls: { ca: readFileSync(join(pki, 'ca.crt'), 'utf8') },
  });
  return res.status === 200;
}

export function etcdReady(endpoint: string, pki: string): boolean {
  return tryRun('etcdctl', ['--endpoints', endpoint, '--cacert', join(pki, 'etcd/ca.crt'),
    '--cert', join(pki, 'etcd/healthcheck-client.crt'), '--key', join(pki, 'etcd/healthcheck-client.key'),
    '--command-timeout=2s', 'endpoint', 'health']).status === 0;
}

export async function s3Ready(env: TestEnv): Promise<boolean> {
  const res = await fetch(env.s3Url, { tls: { ca: readFileSync(join(env.pki, 'ca.crt'), 'utf8') } });
  return res.status < 500;
}

export function nodeReady(env: TestEnv): boolean {
  const r = tryRun('kubectl', ['--kubeconfig', env.kubeconfig, 'get', 'node', env.node, '-o',
    'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
  return r.stdout.trim() === 'True';
}
