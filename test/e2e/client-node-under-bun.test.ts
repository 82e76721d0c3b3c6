/**
 * Does @kubernetes/client-node's own HTTP client work under the Bun we pin? Not today: client-node hands the
 * kubeconfig's CA and client certificate to an undici dispatcher, which Bun's fetch ignores (oven-sh/bun#19754, #7332),
 * so requests go through our transport (src/kube/client.ts; README, "Architecture in one paragraph"). This test asserts
 * today's outcome against the real API server with the mutual-TLS kubeconfig (the cluster's CA and an admin client
 * certificate), one failure at a time: the CA, then the client certificate with the CA given to Bun another way. So it
 * fails the day a Bun or client-node upgrade changes either, and says what changed. Each probe is a process of its own
 * (test/support/client-node-probe.ts); our own client with the same kubeconfig is the control.
 */import { describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import clientNode from '@kubernetes/client-node/package.json' with { type: 'json' };
import type { Outcome, Probe } from '../support/client-node-probe.ts';
import { cluster, repoRoot } from '../support/e2e.ts';
import { NAMESPACE } from '../../src/api/group.ts';
import { KubeClient } from '../../src/kube/client.ts';

const versions = `client-node ${clientNode.version} under Bun ${Bun.version}`;

/** Runs the probe in a fresh Bun with `env` added to this one's. */
function probe(kubeconfig: string, env: Record<string, string> = {}): Probe {
  const r = spawnSync(process.execPath, [join(repoRoot, 'test/support/client-node-probe.ts'), kubeconfig], {
    encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`the probe exited with ${r.status ?? r.signal}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as Probe;
}

/** Passes while the probe gives the outcome known for this Bun; otherwise says what changed and what to do about it. */
function expectStill(what: string, got: Probe, known: Outcome): void {
  console.log(`${versions}, ${what}: ${got.outcome} (${got.detail})`);
  if (got.outcome === known) return;
  const advice = got.outcome === 'works'
    ? 'client-node\'s own client now does this under Bun. If both checks here work, consider replacing our transport ' +
      '(src/kube/client.ts, src/kube/kubeconfig.ts) with client-node\'s KubeConfig and API clients, weighing the ~19 MB of ' +
      'idle memory its KubeConfig costs (README, "Architecture in one paragraph"); then update this test.'
    : 'update the known outcome in this test, and the README\'s architecture section if the reason changed.';
  throw new Error(`${versions}, ${what}: "${got.outcome}" (${got.detail}), no longer "${known}". ${advice}`);
}

describe(versions, () => {
  test('control: our own client reads the namespace with the same mutual-TLS kubeconfig', async () => {
    const ours = KubeClient.load({ kubeconfig: cluster().kubeconfigCert, fieldManager: 'e2e' });
    const names = (await ours.list(NAMESPACE)).items.map((n) => n.metadata.name);
    expect(names).toContain('kube-system');
  });

  test('client-node\'s client does not trust the server by the kubeconfig\'s CA', () => {
    expectStill('the kubeconfig\'s CA', probe(cluster().kubeconfigCert), 'server certificate not trusted');
  });

  test('client-node\'s client does not send the kubeconfig\'s client certificate (the CA given to Bun at start-up instead)', () => {
    const got = probe(cluster().kubeconfigCert, { NODE_EXTRA_CA_CERTS: join(cluster().pki, 'ca.crt') });
    expectStill('the kubeconfig\'s client certificate', got, 'client certificate not sent');
  });
});
