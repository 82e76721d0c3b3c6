/** The API server's version a backup records: read when it can be, and never a reason for a backup to fail. */
import { expect, test } from 'bun:test';
import type { KubeClient } from '../../src/kube/client.ts';
import { readServerVersion } from '../../src/kube/cluster-identity.ts';
import { ConnectionError } from '../../src/kube/errors.ts';

const answering = (fn: (path: string) => Promise<unknown>) => ({ request: (_m: string, path: string) => fn(path) }) as unknown as KubeClient;

test('GET /version: its gitVersion', async () => {
  const asked: string[] = [];
  expect(await readServerVersion(answering(async (p) => { asked.push(p); return { major: '1', minor: '20', gitVersion: 'v1.20.2' }; }))).toBe('v1.20.2');
  expect(asked).toEqual(['/version']);
});

test('no answer, or no gitVersion in it: undefined, not an error', async () => {
  expect(await readServerVersion(answering(async () => { throw new ConnectionError('connect ECONNREFUSED'); }))).toBeUndefined();
  expect(await readServerVersion(answering(async () => ({ major: '1' })))).toBeUndefined();
});
