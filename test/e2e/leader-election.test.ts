/** Leader election with real controller processes sharing one Lease: one acts, a standby takes over when it stops. */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { ControllerProcess, apply, createNamespace, deleteNamespace, ensureCrds, eventually, getJson, locationSecretYaml,
  locationYaml, uniqueBucket } from '../support/e2e.ts';
import type { BackupLocation, KubeObject } from '../../src/api/types.ts';

let ns: string;
const running: ControllerProcess[] = [];

beforeAll(() => {
  ensureCrds();
  ns = createNamespace('leader');
  apply(locationSecretYaml(ns, { name: 's3-creds', password: 'leader-test-password' }));
});
afterAll(async () => {
  await Promise.all(running.map((c) => c.stop('SIGKILL')));
  deleteNamespace(ns);
});

async function start(identity: string): Promise<ControllerProcess> {
  const c = await ControllerProcess.start(ns, ['--identity', identity]);
  running.push(c);
  return c;
}

const holder = () => getJson<KubeObject & { spec: { holderIdentity?: string } }>(['lease', 'kubedr-controller', '-n', ns]).spec.holderIdentity;
const leads = (c: ControllerProcess) => c.logs.includes('"msg":"became leader"');
/** Whether this controller process did the work for a location (only the leader reconciles). */
const handled = (c: ControllerProcess, name: string) => c.logLines().some((l) => l.backupLocation === `${ns}/${name}` &&
  typeof l.msg === 'string' && l.msg.includes('repository'));

async function completed(name: string): Promise<void> {
  await eventually(() => {
    const l = getJson<BackupLocation>(['bl', name, '-n', ns]);
    if (l.status?.initStatus !== 'Completed') throw new Error(JSON.stringify(l.status));
  });
}

test('with two replicas exactly one leads and acts; the other stands by, ready', async () => {
  const a = await start('replica-a');
  await eventually(() => expect(leads(a)).toBe(true));
  const b = await start('replica-b');
  await eventually(() => expect(b.logs).toContain('waiting for leadership'));

  apply(locationYaml(ns, 'one', { bucketName: uniqueBucket('le'), credentials: 's3-creds' }));
  await completed('one');
  // The log line follows the status write; wait for it rather than race it.
  await eventually(() => expect(handled(a, 'one')).toBe(true));
  expect(handled(b, 'one')).toBe(false);
  expect(leads(b)).toBe(false);
  expect(holder()).toBe('replica-a');
  // The standby has warm caches and answers probes.
  expect((await b.get('/readyz')).status).toBe(200);
});

test('when the leader stops cleanly it releases the lease and the standby takes over at once', async () => {
  const [a, b] = running as [ControllerProcess, ControllerProcess];
  const stoppedAt = Date.now();
  expect(await a.stop()).toBe(0);
  expect(a.logs).toContain('released the lease');
  await eventually(() => expect(leads(b)).toBe(true), 15_000, 100);
  // Released, so no need to wait out the 4 s lease: the standby's next 0.5 s retry wins.
  expect(Date.now() - stoppedAt).toBeLessThan(4_000);
  expect(holder()).toBe('replica-b');

  apply(locationYaml(ns, 'two', { bucketName: uniqueBucket('le'), credentials: 's3-creds' }));
  await completed('two');
  await eventually(() => expect(handled(b, 'two')).toBe(true));
});

test('when the leader dies without releasing, the standby takes over after the lease expires', async () => {
  const b = running[1]!;
  const c = await start('replica-c');
  await eventually(() => expect(c.logs).toContain('waiting for leadership'));
  await b.stop('SIGKILL');
  await eventually(() => expect(leads(c)).toBe(true), 20_000, 200);
  expect(c.logs).toContain('took over the lease');
  expect(holder()).toBe('replica-c');

  apply(locationYaml(ns, 'three', { bucketName: uniqueBucket('le'), credentials: 's3-creds' }));
  await completed('three');
  await eventually(() => expect(handled(c, 'three')).toBe(true));
});
