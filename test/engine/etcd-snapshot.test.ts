/** What a user reads when etcd cannot be reached or its client credentials are wrong. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EngineError } from '../../src/engine/errors.ts';
import { grpcDetail } from '../../src/engine/etcd-connection.ts';
import { saveSnapshot } from '../../src/engine/etcd-snapshot.ts';

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'etcd-snapshot-test-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const failure = async (p: Promise<unknown>): Promise<EngineError> => {
  try {
    await p;
  } catch (err) {
    if (err instanceof EngineError) return err;
    throw err;
  }
  throw new Error('expected a failure');
};

describe('grpcDetail', () => {
  test('drops grpc-js\'s empty "Resolution note:" and the doubled "Error:"', () => {
    expect(grpcDetail('No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: '))
      .toBe('No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1');
    expect(grpcDetail('No addresses resolved. Resolution note: DNS lookup failed')).toBe('No addresses resolved. Resolution note: DNS lookup failed');
  });
});

test('an etcd that is not there: unreachable, in plain words', async () => {
  const err = await failure(saveSnapshot({ endpoint: 'http://127.0.0.1:1' }, join(work, 'a.db'), { timeoutMs: 2000 }));
  expect(err.kind).toBe('Unreachable');
  expect(err.message).toStartWith('etcd at http://127.0.0.1:1 unreachable: ');
  expect(err.message).not.toContain('Resolution note');
});

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

describe.skipIf(!hasOpenssl)('client credentials', () => {
  const pair = (name: string) => {
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(work, `${name}.key`), '-out', join(work, `${name}.crt`), '-subj', `/CN=${name}`, '-days', '1']);
    if (r.status !== 0) throw new Error(String(r.stderr));
    return { cert: readFileSync(join(work, `${name}.crt`), 'utf8'), key: readFileSync(join(work, `${name}.key`), 'utf8') };
  };

  test('a key that is not the certificate\'s is named as such, not as an OpenSSL code', async () => {
    const a = pair('a');
    const b = pair('b');
    const err = await failure(saveSnapshot({ endpoint: 'https://127.0.0.1:1', ca: a.cert, cert: a.cert, key: b.key }, join(work, 'b.db')));
    expect(err.kind).toBe('InvalidInput');
    expect(err.message).toBe('the etcd client key (client.key) does not belong to the client certificate (client.crt)');
  });
});
