/**
 * Continuous backup through an outage of the parts it depends on, on the test node: the API server restarts; the node's
 * etcd stops for longer than the leader's renew deadline (so the controller loses its lease, stands down and exits; the
 * test starts it again as the kubelet would the chart's pod); then the node's S3 stops (stores fail and are retried),
 * then stalls (frozen: it takes connections and answers nothing; stores hang until it wakes). Meanwhile ConfigMaps are
 * created twice a second. Afterwards the store catches up, the chain has no gap, the deposed controller started nothing
 * after its loss and exited within its grace, and "latest" rebuilt from S3 holds the last ConfigMap written.
 * A file of its own: it stops parts of the node every other test uses.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MetadataBackupPolicy } from '../../src/api/types.ts';
import { listChain } from '../../src/engine/continuous/change-store.ts';
import { restorePointInTime } from '../../src/engine/continuous/replay.ts';
import { restorableWindows } from '../../src/engine/continuous/window.ts';
import { Restic } from '../../src/engine/restic.ts';
import { freezeS3, restartApiserver, startProcAgain, stopProc } from '../../scripts/cluster/node.ts';
import {
  ControllerProcess, FAILOVER_TIMINGS, apply, bootSnapshot, cluster, configMapInEtcd, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, eventually, getJson, kubectl,
  locationInit, locationSecretYaml, locationYaml, nodeRepository, policyYaml, uniqueBucket, withRestart,
} from '../support/e2e.ts';

let ns: string;
let controller: ControllerProcess;
let dir: string;
const bucket = uniqueBucket('outage');
const password = `outage-pw-${crypto.randomUUID()}`;
const VERIFY_OFTEN = [...FAILOVER_TIMINGS, '--continuous-verify-interval', '20s'];
const policy = () => getJson<MetadataBackupPolicy>(['mbp', 'continuous', '-n', ns]);
const repo = () => nodeRepository(bucket, password);
const restoredValue = (endpoint: string, name: string) => configMapInEtcd(endpoint, ns, name);

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('outage');
  dir = mkdtempSync(join(tmpdir(), 'kdr-outage-'));
  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  controller = await ControllerProcess.start(ns, VERIFY_OFTEN);
  await locationInit(ns, 'loc', 'Completed');
  apply(policyYaml(ns, 'continuous', { continuous: { enabled: true, flushInterval: '5s' } }));
  await eventually(() => {
    const st = policy().status;
    expect(st?.backupStatus).toBe('Completed');
    expect(st?.continuous?.state).toBe('Recording');
  }, 90_000, 1000);
});

afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
  rmSync(dir, { recursive: true, force: true });
  // The node as the other files expect it. In the full run of 2026-12-05 the file after this one found Services
  // without endpoints (EHOSTUNREACH on a ClusterIP) for minutes: when etcd came back, the API server's watch caches
  // had ended every watch ("required revision has been compacted": earlier files compact this etcd). A restart of the
  // API server makes every component of the node list and watch afresh, as after the other files that restart it.
  await restartApiserver(cluster());
  // The restart alone may take minutes on a static pod (STATIC_START_MS); a hook past its time limit fails the file
  // and has bun kill what the file started, the S3 server this test started again among them.
}, withRestart(60_000));

test('the API server restarts, etcd restarts, then S3 stops and stalls while the cluster is written: the controller, deposed by the outage and started again as a kubelet would, catches up with no gap', async () => {
  const gapsBefore = policy().status?.continuous?.gaps ?? 0;
  let n = 0;
  let lastWritten = 0;
  let lastRevision = 0;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      // Writes fail while etcd is down; those that succeed are what a restore must hold.
      const i = ++n;
      const r = kubectl(['create', 'configmap', `outage-${i}`, '-n', ns, '--from-literal', 'x=1', '--request-timeout=5s', '-o', 'jsonpath={.metadata.resourceVersion}']);
      if (r.code === 0) {
        lastWritten = i;
        lastRevision = Number(r.stdout);
      }
      await Bun.sleep(500);
    }
  })();
  // What a kubelet does for the chart's pod: a controller that exited is started again.
  let supervising = true;
  let restarts = 0;
  const deposed: { logs: string; exitedAt: number }[] = [];
  const supervisor = (async () => {
    while (supervising) {
      const code = await Promise.race([controller.exited, Bun.sleep(1000).then(() => undefined)]);
      if (code === undefined || !supervising) continue;
      deposed.push({ logs: controller.logs, exitedAt: Date.now() });
      restarts++;
      // Started while the control plane may still be coming back (as static pods, etcd's and the API server's
      // restarts take the kubelet's manifest checks): it serves once the API server answers, as in a pod.
      controller = await ControllerProcess.start(ns, VERIFY_OFTEN, { startTimeoutMs: 180_000 });
    }
  })();
  try {
    await Bun.sleep(3000);
    // The API server restarts (its watch caches, and the controller's informers and lease, start again).
    await restartApiserver(cluster());
    await eventually(() => expect(kubectl(['get', 'ns', ns]).code).toBe(0), 60_000, 1000);
    await Bun.sleep(3000);
    // etcd down for 12 s: longer than the renew deadline (3 s here), so the leader cannot renew and must stand down.
    await stopProc(cluster(), 'etcd');
    await Bun.sleep(12_000);
    await startProcAgain(cluster(), 'etcd');
    await eventually(() => expect(kubectl(['get', 'ns', ns]).code).toBe(0), 60_000, 1000);
    await Bun.sleep(3000);
    // Then S3 is down for 20 s: stores fail and are retried; the changes wait.
    await stopProc(cluster(), 's3');
    await Bun.sleep(20_000);
    await startProcAgain(cluster(), 's3');
    await Bun.sleep(3000);
    // Then it stalls for 20 s: connections are taken and nothing answers; the stores in flight wait, then go on.
    freezeS3(cluster(), 'SIGSTOP');
    try {
      await Bun.sleep(20_000);
    } finally {
      freezeS3(cluster(), 'SIGCONT');
    }
    await Bun.sleep(3000);
  } finally {
    writing = false;
    await writer;
  }
  // Caught up means the store holds the last write's revision (its resourceVersion). A time would not do: a change
  // received a moment before the last write, by a watch still catching up, can carry a later time than the write.
  try {
    await eventually(() => expect(policy().status?.continuous?.lastStoredRevision ?? 0).toBeGreaterThanOrEqual(lastRevision), 150_000, 1000);
  } finally {
    supervising = false;
    await supervisor;
  }
  // The deposed leader said so, started nothing more and exited (its work gets 10 s to stop, then it goes regardless).
  const exits: string[] = [];
  for (const d of deposed) {
    const lines = d.logs.split('\n');
    const lost = lines.findIndex((l) => l.includes('leadership lost'));
    if (lost < 0) continue;
    expect(lines.slice(lost).filter((l) => /"msg":"(verification pod created|continuous backup recording|backup started)"/.test(l))).toEqual([]);
    const lostAt = Date.parse((JSON.parse(lines[lost]!) as { ts: string }).ts);
    exits.push(`${((d.exitedAt - lostAt) / 1000).toFixed(1)} s`);
    expect(d.exitedAt - lostAt).toBeLessThan(20_000);
  }
  console.log(`continuous outage: ${lastWritten} ConfigMaps written, controller restarted ${restarts} time(s), exits after the loss: ${exits.join(', ') || 'none'}`);
  expect(policy().status?.continuous?.gaps ?? 0).toBe(gapsBefore);
  const restic = new Restic();
  const { fulls, sets } = await listChain(restic, repo(), 'continuous', undefined);
  expect(restorableWindows(fulls, sets).gaps).toHaveLength(gapsBefore);
  await restorePointInTime(restic, { repo: repo(), policy: 'continuous', target: 'latest', dir: join(dir, 'outage') });
  const etcd = await bootSnapshot(join(dir, 'outage', 'data', 'etcd-snapshot.db'), join(dir, 'boot-outage'));
  try {
    expect(restoredValue(etcd.endpoint, 'outage-1')).not.toBe('');
    expect(restoredValue(etcd.endpoint, `outage-${lastWritten}`)).not.toBe('');
  } finally {
    await etcd.stop();
  }
}, 540_000);
