/**
 * Whether @kubernetes/client-node's own HTTP client works under the Bun we pin, against the real API server with its
 * CA and with a client certificate (mutual TLS). It did not (Bun ignores the TLS options client-node passes:
 * oven-sh/bun#19754), which is why src/kube has its own transport and only client-node's model types are used. This
 * test asserts that known state, beside a control (our transport, same kubeconfigs) that must work: the day a Bun
 * upgrade makes client-node work, it fails, saying so, and the transport can be reconsidered.
 */
import { describe, expect, test } from 'bun:test';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import pkg from '@kubernetes/client-node/package.json' with { type: 'json' };
import { NAMESPACE } from '../../src/api/group.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { cluster } from '../support/e2e.ts';

/** client-node's own client listing namespaces: "works", or why it failed. */
async function withClientNode(kubeconfig: string): Promise<string> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const api = kc.makeApiClient(CoreV1Api);
  return api.listNamespace({ limit: 1 }).then(
    (list) => (list.items.length > 0 ? 'works' : 'answered without namespaces'),
    (err: unknown) => `fails: ${err instanceof Error ? err.message : String(err)}`.split('\n')[0]!.slice(0, 200),
  );
}

describe(`client-node ${pkg.version}'s own client under Bun ${Bun.version}`, () => {
  test.each([
    ['the API server\'s CA and a bearer token', () => cluster().kubeconfig],
    ['the API server\'s CA and a client certificate (mutual TLS)', () => cluster().kubeconfigCert],
  ])('with %s: still fails where our transport works (when it works, consider client-node\'s client again)', async (_what, kubeconfig) => {
    const ours = await KubeClient.load({ kubeconfig: kubeconfig(), fieldManager: 'test' }).list(NAMESPACE);
    expect(ours.items.map((n) => n.metadata.name)).toContain('kube-system');
    const theirs = await withClientNode(kubeconfig());
    console.log(`client-node ${pkg.version} under Bun ${Bun.version} (${_what}): ${theirs}`);
    expect(theirs).toStartWith('fails: ');
  });
});
