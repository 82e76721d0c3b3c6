/** Engine inputs from objects: a Secret that cannot work is named, with what is wrong in it. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Secret } from '../../src/api/types.ts';
import { InputError, clientPairProblem, etcdConnection } from '../../src/controllers/inputs.ts';
import { clearSecrets } from '../../src/util/redact.ts';
import { fakeInformer } from '../support/fakes.ts';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'inputs-test-'));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  clearSecrets();
});

const pair = (name: string) => {
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(work, `${name}.key`), '-out', join(work, `${name}.crt`), '-subj', `/CN=${name}`, '-days', '1']);
  if (r.status !== 0) throw new Error(String(r.stderr));
  return { cert: readFileSync(join(work, `${name}.crt`), 'utf8'), key: readFileSync(join(work, `${name}.key`), 'utf8') };
};

const etcdSecret = (name: string, v: { ca: string; cert: string; key: string }): Secret => ({
  metadata: { name, namespace: 'ns' },
  data: { 'ca.crt': btoa(v.ca), 'client.crt': btoa(v.cert), 'client.key': btoa(v.key) },
});

describe.skipIf(!hasOpenssl)('etcd client credentials', () => {
  test('a matching pair passes', () => {
    const a = pair('match');
    expect(clientPairProblem(a.cert, a.key)).toBeUndefined();
  });

  test('a key that is not the certificate\'s names the Secret and says so', () => {
    const a = pair('a');
    const b = pair('b');
    const secrets = fakeInformer([etcdSecret('etcd-creds', { ca: a.cert, cert: a.cert, key: b.key })]);
    let caught: unknown;
    try {
      etcdConnection('ns', 'https://127.0.0.1:2379', 'etcd-creds', secrets);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InputError);
    expect((caught as InputError).reason).toBe('CredentialsInvalid');
    expect((caught as InputError).message).toBe('etcd credentials Secret "etcd-creds": client.key is not the private key of client.crt; ' +
      'put the key issued with that certificate in client.key (kubeadm: apiserver-etcd-client.key goes with apiserver-etcd-client.crt)');
  });

  test('what is not PEM is named', () => {
    const a = pair('pem');
    expect(clientPairProblem('not a certificate', a.key)).toBe('client.crt is not a PEM certificate');
    expect(clientPairProblem(a.cert, 'not a key')).toBe('client.key is not an unencrypted PEM private key');
  });
});
