/**
 * Continuous backup on the test node, as a user turns it on: a policy with `continuous.enabled` and no backup yet gets
 * a full backup as its base and a recorder watching the cluster's real etcd (mTLS); while a ConfigMap `clock` is set to
 * the current second every second, a ConfigMap is deleted before a chosen time T and another created after it. The
 * cluster rebuilt for T from S3 alone (full backup + stored changes) has `clock` at T (within the write cadence), the
 * deleted ConfigMap absent and the later one absent. Status, metrics and the repository's own listing agree.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MetadataBackupPolicy } from '../../src/api/types.ts';
import { listChain } from '../../src/engine/continuous/change-store.ts';
import { restorePointInTime } from '../../src/engine/continuous/replay.ts';
import { restorableWindows } from '../../src/engine/continuous/window.ts';
import { Restic } from '../../src/engine/restic.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY } from '../../scripts/cluster/node.ts';
import {
  ControllerProcess, apply, bootSnapshot, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, eventually,
  getJson, kubectl, locationInit, locationSecretYaml, locationYaml, pem, policyYaml, uniqueBucket,
} from '../support/e2e.ts';

let ns: string;
let controller: ControllerProcess;
let dir: string;
const bucket = uniqueBucket('pitr');
const password = `pitr-pw-${crypto.randomUUID()}`;

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('pitr');
  dir = mkdtempSync(join(tmpdir(), 'kdr-pitr-'));
  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  controller = await ControllerProcess.start(ns);
  await locationInit(ns, 'loc', 'Completed');
});

afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
  rmSync(dir, { recursive: true, force: true });
});

const policy = () => getJson<MetadataBackupPolicy>(['mbp', 'continuous', '-n', ns]);
const second = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

test('a restore to a chosen second brings back the cluster as it was then: clock at T, nothing deleted before or created after', async () => {
  apply(policyYaml(ns, 'continuous', { continuous: { enabled: true, flushInterval: '5s' } }));
  // No backup yet: continuous backup asks for one as its base, and records from etcd's revision at its start.
  await eventually(() => {
    const st = policy().status;
    expect(st?.backupStatus).toBe('Completed');
    expect(st?.continuous?.state).toBe('Recording');
  }, 90_000, 1000);

  expect(kubectl(['create', 'configmap', 'clock', '-n', ns, '--from-literal', `now=${second(Date.now())}`]).code).toBe(0);
  expect(kubectl(['create', 'configmap', 'deleted-before', '-n', ns, '--from-literal', 'x=1']).code).toBe(0);
  const writes: { value: string; done: number }[] = [];
  let t = 0;
  const started = Date.now();
  for (let i = 0; Date.now() - started < 20_000; i++) {
    const value = second(Date.now());
    expect(kubectl(['patch', 'configmap', 'clock', '-n', ns, '--type', 'merge', '-p', JSON.stringify({ data: { now: value } })]).code).toBe(0);
    writes.push({ value, done: Date.now() });
    if (i === 6) expect(kubectl(['delete', 'configmap', 'deleted-before', '-n', ns]).code).toBe(0);
    if (i === 9) t = Date.now();
    if (i === 11) expect(kubectl(['create', 'configmap', 'created-after', '-n', ns, '--from-literal', 'x=1']).code).toBe(0);
    await Bun.sleep(Math.max(0, 1000 - (Date.now() % 1000)));
  }
  const lastWrite = writes.at(-1)!.done;
  // Stored within the flush interval (5 s) of the last write, plus the store itself.
  await eventually(() => expect(Date.parse(policy().status?.continuous?.lastStoredTime ?? '')).toBeGreaterThanOrEqual(lastWrite), 30_000, 500);
  expect(policy().status?.continuous?.gaps ?? 0).toBe(0);

  const repo = { address: `s3:${cluster().s3Url}/${bucket}`, accessKey: S3_ACCESS_KEY, secretKey: S3_SECRET_KEY, password, caCert: pem('ca.crt') };
  const restic = new Restic();
  const { fulls, sets } = await listChain(restic, repo, 'continuous', undefined);
  expect(fulls).toHaveLength(1);
  expect(sets.length).toBeGreaterThan(1);
  const { windows, gaps } = restorableWindows(fulls, sets);
  expect(gaps).toEqual([]);
  expect(windows[0]!.fromTime).toBeLessThan(t);
  expect(windows[0]!.toTime).toBeGreaterThanOrEqual(lastWrite);

  const r = await restorePointInTime(restic, { repo, policy: 'continuous', target: { time: t }, dir: join(dir, 'at-t') });
  expect(r.revisionsApplied).toBeGreaterThan(0);
  expect(r.time).toBeLessThanOrEqual(t);
  const etcd = await bootSnapshot(join(dir, 'at-t', 'data', 'etcd-snapshot.db'), join(dir, 'boot'));
  try {
    const get = (key: string) => spawnSync('etcdctl', ['--endpoints', etcd.endpoint, 'get', key, '--print-value-only'], { encoding: 'utf8' }).stdout;
    // Kubernetes stores protobuf; the ConfigMap's data is in it as plain text.
    const clock = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/.exec(get(`/registry/configmaps/${ns}/clock`))?.[0];
    const expected = writes.filter((w) => w.done <= t).at(-1)!.value;
    // The last value written before T, or (when T fell between a write's commit and its reply) the one after it.
    const next = writes[writes.findIndex((w) => w.value === expected) + 1]?.value;
    expect([expected, next]).toContain(clock);
    expect(Math.abs(Date.parse(clock!) - t)).toBeLessThanOrEqual(2000);
    expect(get(`/registry/configmaps/${ns}/deleted-before`)).toBe('');
    expect(get(`/registry/configmaps/${ns}/created-after`)).toBe('');
    expect(get('/registry/namespaces/kube-system')).not.toBe('');
  } finally {
    await etcd.stop();
  }
  // The live cluster has moved on.
  expect(kubectl(['get', 'configmap', 'created-after', '-n', ns]).code).toBe(0);
}, 300_000);
