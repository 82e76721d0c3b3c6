/**
 * The controller and API server restarts. Within the leader's renew deadline the same process carries on: its watches
 * break, it reconnects and it serves new changes. Past the deadline it can no longer be sure it leads, so it exits 1
 * for its supervisor (the kubelet) to restart it, as controller-runtime does; a second replica takes over meanwhile.
 */
import { afterEach, beforeAll, expect, test } from 'bun:test';
import { restartApiserver } from '../../scripts/cluster/node.ts';
import type { BackupLocation } from '../../src/api/types.ts';
import { ControllerProcess, FAILOVER_TIMINGS, apply, leaseOutlastingRestarts, withRestart, cluster, createNamespace, deleteNamespace, ensureCrds, eventually, getJson,
  locationSecretYaml, locationYaml, uniqueBucket } from '../support/e2e.ts';

let ns: string;
let controller: ControllerProcess | undefined;

beforeAll(() => {
  ensureCrds();
});
afterEach(async () => {
  await controller?.stop();
  deleteNamespace(ns);
});

function setup(): void {
  ns = createNamespace('recover');
  apply(locationSecretYaml(ns, { name: 's3-creds', password: 'recovery-test-password' }));
}

async function status(name: string, want: string): Promise<BackupLocation> {
  return eventually(() => {
    const l = getJson<BackupLocation>(['bl', name, '-n', ns]);
    if (l.status?.initStatus !== want || l.status.observedGeneration !== l.metadata.generation) throw new Error(JSON.stringify(l.status));
    return l;
  }, 90_000);
}

test('an API server restart within the renew deadline: watches reconnect, new and changed objects are reconciled', async () => {
  setup();
  // A restart of the node's API server (graceful stop, 1 s down, start to /readyz) takes about 10 s as a process, and
  // usually up to a minute as a static pod (the kubelet looks at its manifests every 20 s), but may take minutes: the
  // renew deadline outlasts the longest the node allows. (Each renewal may only take what is left of the deadline, so
  // a deadline shorter than the outage correctly ends the leadership: the next test.)
  controller = await ControllerProcess.start(ns, leaseOutlastingRestarts('2s'));
  apply(locationYaml(ns, 'before', { bucketName: uniqueBucket('rec'), credentials: 's3-creds' }));
  await status('before', 'Completed');

  await restartApiserver(cluster(), 1_000);
  // The controller noticed: its watches failed and it retried.
  await eventually(() => expect(controller!.logs).toContain('watch failed, retrying'));

  apply(locationYaml(ns, 'after', { bucketName: uniqueBucket('rec'), credentials: 's3-creds' }));
  await status('after', 'Completed');
  const newBucket = uniqueBucket('rec2');
  apply(locationYaml(ns, 'before', { bucketName: newBucket, credentials: 's3-creds' }));
  const l = await status('before', 'Completed');
  expect(l.spec.bucketName).toBe(newBucket);

  // Still the same healthy process and still the leader.
  expect((await controller.get('/readyz')).status).toBe(200);
  expect(controller.logs.match(/"msg":"starting"/g)).toHaveLength(1);
  expect(controller.logs).not.toContain('leadership lost');
}, withRestart(120_000));

test('an outage past the renew deadline: the leader exits 1 to be restarted, and a restarted controller carries on', async () => {
  setup();
  controller = await ControllerProcess.start(ns, FAILOVER_TIMINGS);  // a 3 s renew deadline
  await eventually(() => expect(controller!.logs).toContain('became leader'));
  await restartApiserver(cluster(), 4_000);
  expect(await controller.exited).toBe(1);
  expect(controller.logs).toContain('leadership lost');

  controller = await ControllerProcess.start(ns, FAILOVER_TIMINGS);
  apply(locationYaml(ns, 'after-restart', { bucketName: uniqueBucket('rec'), credentials: 's3-creds' }));
  await status('after-restart', 'Completed');
}, withRestart(120_000));

test('a long outage: once the API server answers again the informers resume within seconds, not at their next backoff', async () => {
  setup();
  // No leader election: an outage this long would (rightly) end the leadership; here only the informers are measured.
  controller = await ControllerProcess.start(ns, ['--leader-elect=false']);
  let t0 = Date.now();
  apply(locationYaml(ns, 'before', { bucketName: uniqueBucket('rec'), credentials: 's3-creds' }));
  await status('before', 'Completed');
  const baseline = Date.now() - t0;

  // 45 s down plus the API server's start-up: each informer's retries have backed off past 25 s by the time it is back.
  await restartApiserver(cluster(), 45_000);
  t0 = Date.now();
  apply(locationYaml(ns, 'after', { bucketName: uniqueBucket('rec'), credentials: 's3-creds' }));
  await status('after', 'Completed');
  const reaction = Date.now() - t0;
  // Each informer's last list after failures: the one that worked, relative to the API server being back.
  const lastList = new Map<string, number>();
  for (const l of controller.logLines()) {
    if (l.msg === 'listing again after failures') lastList.set(String(l.informer), Date.parse(String(l.ts)) - t0);
  }
  const resumed = [...lastList].map(([informer, ms]) => `${informer} ${ms} ms`);
  console.log(`new location completed ${baseline} ms after creation before the outage, ${reaction} ms after the API server was ` +
    `back (recovery delay ~${reaction - baseline} ms); informers listed again: ${resumed.join(', ') || 'no log'}`);
  // The probe runs every second; a relist and the reconcile take the rest. The backoff alone used to add up to 30 s.
  expect(reaction - baseline).toBeLessThan(5_000);
}, 240_000);
