/**
 * @module One request with @kubernetes/client-node's own HTTP client, as its documentation shows (KubeConfig from a
 * file, CoreV1Api, read the kube-system namespace), run as a child process by test/e2e/client-node-under-bun.test.ts:
 * `bun test/support/client-node-probe.ts KUBECONFIG` prints one JSON `Probe` line. A process of its own because Bun
 * reads NODE_EXTRA_CA_CERTS only at start-up, and one probe needs it.
 */
import { ApiException, CoreV1Api, KubeConfig } from '@kubernetes/client-node';

export type Outcome = 'works' | 'server certificate not trusted' | 'client certificate not sent' | 'other failure';

export interface Probe {
  outcome: Outcome;
  /** The error as client-node raised it, or the namespace read. */
  detail: string;
}

/** What a failed request says about the TLS settings client-node passed (oven-sh/bun#19754: Bun drops them). */
function classify(err: unknown): Probe {
  if (err instanceof ApiException) {
    const body = typeof err.body === 'string' ? err.body : JSON.stringify(err.body);
    // The API server serves a request without a client certificate as system:anonymous (401 where anonymous auth is off).
    const anonymous = err.code === 401 || (err.code === 403 && body.includes('system:anonymous'));
    return { outcome: anonymous ? 'client certificate not sent' : 'other failure', detail: `HTTP ${err.code}: ${body.slice(0, 300)}` };
  }
  const e = err instanceof Error ? err : new Error(String(err));
  const code = 'code' in e && typeof e.code === 'string' ? e.code : '';
  // Verification codes as Node and Bun name them: UNABLE_TO_VERIFY_LEAF_SIGNATURE, SELF_SIGNED_CERT_IN_CHAIN, ...
  const untrusted = /CERT|SIGNATURE|ISSUER/.test(code);
  return { outcome: untrusted ? 'server certificate not trusted' : 'other failure', detail: `${code ? `${code}: ` : ''}${e.message}` };
}

async function probe(kubeconfig: string): Promise<Probe> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  try {
    const ns = await kc.makeApiClient(CoreV1Api).readNamespace({ name: 'kube-system' });
    return ns.metadata?.name === 'kube-system'
      ? { outcome: 'works', detail: `read namespace ${ns.metadata.name}` }
      : { outcome: 'other failure', detail: `unexpected answer: ${JSON.stringify(ns).slice(0, 300)}` };
  } catch (err) {
    return classify(err);
  }
}

if (import.meta.main) {
  const kubeconfig = process.argv[2];
  if (!kubeconfig) throw new Error('usage: bun test/support/client-node-probe.ts KUBECONFIG');
  console.log(JSON.stringify(await probe(kubeconfig)));
}
