/** The controller survives an API server restart: its watches break, it reconnects, and it serves new changes. */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { restartApiserver } from '../../scripts/testenv.ts';
import type { BackupLocation } from '../../src/api/types.ts';
import { ControllerProcess, apply, cluster, createNamespace, deleteNamespace, ensureCrds, eventually, getJson,
  locationSecretYaml, locationYaml, uniqueBucket } from '../support/e2e.ts';

let ns: string;
let controller: ControllerProcess;

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('recover');
  apply(locationSecretYaml(ns, { name: 's3-creds', password: 'recovery-test-password' }));
  controller = await ControllerProcess.start(ns);
});
afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
});

async function status(name: string, want: string): Promise<BackupLocation> {
  return eventually(() => {
    const l = getJson<BackupLocation>(['bl', name, '-n', ns]);
    if (l.status?.initStatus !== want || l.status.observedGeneration !== l.metadata.generation) throw new Error(JSON.stringify(l.status));
    return l;
  }, 90_000);
}

test('after the API server is down for a while and comes back, new and changed objects are reconciled', async () => {
  apply(locationYaml(ns, 'before', { bucketName: uniqueBucket('rec'), credentials: 's3-creds' }));
  await status('before', 'Completed');

  await restartApiserver(cluster(), 3_000);
  // The controller noticed: its watches failed and it retried.
  await eventually(() => expect(controller.logs).toContain('watch failed, retrying'));

  apply(locationYaml(ns, 'after', { bucketName: uniqueBucket('rec'), credentials: 's3-creds' }));
  await status('after', 'Completed');
  const newBucket = uniqueBucket('rec2');
  apply(locationYaml(ns, 'before', { bucketName: newBucket, credentials: 's3-creds' }));
  const l = await status('before', 'Completed');
  expect(l.spec.bucketName).toBe(newBucket);

  // Still one healthy process: ready, not restarted.
  expect((await controller.get('/readyz')).status).toBe(200);
  expect(controller.logs.match(/"msg":"starting"/g)).toHaveLength(1);
});
