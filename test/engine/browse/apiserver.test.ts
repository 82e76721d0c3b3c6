import { expect, test } from 'bun:test';
import { apiserverArgs, browseKubeconfig, readOnlyPolicy } from '../../../src/engine/browse/apiserver.ts';

test('the API server of a browse: loopback only, ABAC read-only for its one user, no anonymous access, endpoints as backed up', () => {
  const args = apiserverArgs({ etcdEndpoint: 'http://127.0.0.1:5', encryptionConfig: '/e.yaml' }, 7,
    { saKey: 'k', saPub: 'p', tokens: 't', policy: 'pol', certDir: 'c' });
  for (const a of ['--bind-address=127.0.0.1', '--secure-port=7', '--anonymous-auth=false', '--authorization-mode=ABAC', '--authorization-policy-file=pol',
    '--endpoint-reconciler-type=none', '--encryption-provider-config=/e.yaml', '--etcd-servers=http://127.0.0.1:5']) expect(args).toContain(a);
  const lines = readOnlyPolicy().trim().split('\n').map((l) => JSON.parse(l) as { spec: Record<string, unknown> });
  expect(lines.map((l) => l.spec)).toEqual([
    { user: 'kubedr-browse', namespace: '*', resource: '*', apiGroup: '*', readonly: true },
    { user: 'kubedr-browse', nonResourcePath: '*', readonly: true }]);
});

test('its kubeconfig names the server, trusts only its certificate and carries the token', () => {
  const kc = JSON.parse(browseKubeconfig({ url: 'https://127.0.0.1:7', caPem: 'PEM', token: 'tok' }, 'b')) as {
    clusters: { cluster: Record<string, string> }[]; users: { user: Record<string, string> }[]; 'current-context': string };
  expect(kc.clusters[0]!.cluster).toEqual({ server: 'https://127.0.0.1:7', 'certificate-authority-data': btoa('PEM') });
  expect(kc.users[0]!.user).toEqual({ token: 'tok' });
  expect(kc['current-context']).toBe('b');
});
