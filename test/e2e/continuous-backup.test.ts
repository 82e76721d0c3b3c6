/**
 * Continuous backup on the test node, as a user turns it on: a policy with `continuous.enabled` and no backup yet gets
 * a full backup as its base and a recorder watching the cluster's real etcd (mTLS); while a ConfigMap `clock` is set to
 * the current second every second, a ConfigMap is deleted before a chosen time T and another created after it. The
 * cluster rebuilt for T from S3 alone (full backup + stored changes) has `clock` at T (within the write cadence), the
 * deleted ConfigMap absent and the later one absent. Status, metrics and the repository's own listing agree.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MetadataBackupPolicy } from '../../src/api/types.ts';
import { listChain } from '../../src/engine/continuous/change-store.ts';
import { restorePointInTime } from '../../src/engine/continuous/replay.ts';
import { restorableWindows } from '../../src/engine/continuous/window.ts';
import { Restic } from '../../src/engine/restic.ts';
import { extraEtcdDataDir, startExtraApiserver, startExtraEtcd, stopExtra } from '../../scripts/cluster/node.ts';
import {
  ControllerProcess, FAILOVER_TIMINGS, admin, apply, bootSnapshot, cluster, configMapInEtcd, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, etcdctl, events,
  eventually, freePort, getJson, hostPathClaim, kubectl, kubedrImage, locationInit, locationSecretYaml, locationYaml, metricValue, nodeRepository, policyYaml, repoRoot, uniqueBucket,
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
  controller = await ControllerProcess.start(ns, VERIFY_OFTEN);
  await locationInit(ns, 'loc', 'Completed');
});

afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
  rmSync(dir, { recursive: true, force: true });
});

/** The chain proven every 20 s (default 6 h), in the controller's process: it has no image for pods here. */
const VERIFY_OFTEN = [...FAILOVER_TIMINGS, '--continuous-verify-interval', '20s'];
const policy = () => getJson<MetadataBackupPolicy>(['mbp', 'continuous', '-n', ns]);
const repo = () => nodeRepository(bucket, password);
/** The kubedr command line as an operator runs it with the cluster gone: the location's Secret as saved, S3. */
function cli(args: string[]) {
  const credentials = join(dir, 's3-creds.yaml');
  writeFileSync(credentials, kubectl(['get', 'secret', 's3-creds', '-n', ns, '-o', 'yaml']).stdout, { mode: 0o600 });
  const repoFlags = args[0] === 'etcd-restore' ? [] : ['--url', cluster().s3Url, '--bucket', bucket, '--credentials', credentials];
  const p = spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), ...args, ...repoFlags],
    { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  return { code: p.status ?? -1, stdout: p.stdout ?? '', stderr: p.stderr ?? '' };
}
const restoredValue = (endpoint: string, name: string) => configMapInEtcd(endpoint, ns, name);
const CONFIGMAPS = { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps' };
const second = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

test('a restore to a chosen second brings back the cluster as it was then: clock at T, nothing deleted before or created after', async () => {
  apply(policyYaml(ns, 'continuous', { continuous: { enabled: true, flushInterval: '5s' } }));
  // No backup yet: continuous backup asks for one as its base, and records from etcd's revision at its start.
  await eventually(() => {
    const st = policy().status;
    expect(st?.backupStatus).toBe('Completed');
    expect(st?.continuous?.state).toBe('Recording');
  }, 90_000, 1000);

  expect(kubectl(['create', 'configmap', 'clock', '-n', ns, '--from-literal', `now=${new Date().toISOString()}`]).code).toBe(0);
  expect(kubectl(['create', 'configmap', 'deleted-before', '-n', ns, '--from-literal', 'x=1']).code).toBe(0);
  // Other objects written meanwhile (as many as this 2-core node takes beside everything else; the drill's 200 writes/s
  // are in npm run measure-continuous): 50 ConfigMaps updated over and over.
  const api = admin();
  for (let i = 0; i < 50; i++) await api.create(CONFIGMAPS, ns, { metadata: { name: `load-${i}` }, data: { v: '0' } });
  let loading = true;
  let loadWrites = 0;
  const load = (async () => {
    for (let n = 0; loading; n++) {
      await Promise.all(Array.from({ length: 10 }, (_, j) => api.patch(CONFIGMAPS, ns, `load-${(n * 10 + j) % 50}`, { data: { v: `${n}` } }).then(() => loadWrites++)));
    }
  })();
  // The clock: set to the time of each write, every second, through the API (a patch takes milliseconds).
  const writes: { value: string; done: number }[] = [];
  let t = 0;
  const started = Date.now();
  for (let i = 0; Date.now() - started < 20_000; i++) {
    const value = new Date().toISOString();
    await api.patch(CONFIGMAPS, ns, 'clock', { data: { now: value } });
    writes.push({ value, done: Date.now() });
    if (i === 6) expect(kubectl(['delete', 'configmap', 'deleted-before', '-n', ns]).code).toBe(0);
    // T: a moment between two clock writes, chosen at random within the second.
    if (i === 9) t = Date.now() + Math.floor(Math.random() * 900);
    if (i === 11) expect(kubectl(['create', 'configmap', 'created-after', '-n', ns, '--from-literal', 'x=1']).code).toBe(0);
    await Bun.sleep(Math.max(0, 1000 - (Date.now() % 1000)));
  }
  loading = false;
  await load;
  console.log(`continuous: ${(loadWrites / ((Date.now() - started) / 1000)).toFixed(0)} other writes/s during the clock's 20 s`);
  const lastWrite = writes.at(-1)!.done;
  // Stored within the flush interval (5 s) of the last write, plus the store itself.
  await eventually(() => expect(Date.parse(policy().status?.continuous?.lastStoredTime ?? '')).toBeGreaterThanOrEqual(lastWrite), 30_000, 500);
  expect(policy().status?.continuous?.gaps ?? 0).toBe(0);

  const restic = new Restic();
  const { fulls, sets } = await listChain(restic, repo(), 'continuous', undefined);
  expect(fulls).toHaveLength(1);
  expect(sets.length).toBeGreaterThan(1);
  const { windows, gaps } = restorableWindows(fulls, sets);
  expect(gaps).toEqual([]);
  expect(windows[0]!.fromTime).toBeLessThan(t);
  expect(windows[0]!.toTime).toBeGreaterThanOrEqual(lastWrite);

  // As an operator with the cluster gone: the command line, the location's Secret as saved, S3.
  const out = cli(['restore', '--at', new Date(t).toISOString(), '--policy', 'continuous', '--target', join(dir, 'at-t'), '--json']);
  expect(out.stderr).toContain('replaying changes after revision');
  expect(out.code).toBe(0);
  const r = JSON.parse(out.stdout) as { revisionsApplied: number; time: string; revision: number };
  expect(r.revisionsApplied).toBeGreaterThan(0);
  expect(Date.parse(r.time)).toBeLessThanOrEqual(t);
  // Without --policy, or at a time no chain reaches: refused, plainly, with the documented exit codes.
  const noPolicy = cli(['restore', '--at', new Date(t).toISOString(), '--target', join(dir, 'x')]);
  expect(noPolicy.code).toBe(2);
  expect(noPolicy.stderr).toContain('needs --policy');
  const tooLate = cli(['restore', '--at', new Date(Date.now() + 3_600_000).toISOString(), '--policy', 'continuous', '--target', join(dir, 'y')]);
  expect(tooLate.code).toBe(4);
  expect(tooLate.stderr).toMatch(/cannot be restored to: .*Restorable: \d{4}-/);
  // The rest of the disaster-recovery path, unchanged: kubedr etcd-restore, a new etcd on it, a new API server; kubectl.
  const env = cluster();
  const peer = await freePort();
  const dataDir = extraEtcdDataDir(env, 'pitr-restored');
  const built = cli(['etcd-restore', '--snapshot', join(dir, 'at-t', 'data', 'etcd-snapshot.db'), '--data-dir', dataDir, '--name', 'pitr-restored',
    '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`, '--etcd-manifest', join(dir, 'no-manifest')]);
  expect(built.stderr).not.toContain('failed');
  expect(built.code).toBe(0);
  const etcd = await startExtraEtcd(env, 'pitr-restored', { client: await freePort(), peer });
  try {
    const kubeconfig = await startExtraApiserver(env, 'pitr-restored-apiserver', etcd);
    const at = (args: string[]) => kubectl(['--kubeconfig', kubeconfig, ...args]);
    const clock = at(['get', 'configmap', 'clock', '-n', ns, '-o', 'jsonpath={.data.now}']).stdout;
    // The last clock value written at or before T, within a second of it (written every second).
    const expected = writes.filter((w) => w.done <= t).at(-1)!.value;
    const next = writes[writes.findIndex((w) => w.value === expected) + 1]?.value;
    expect([expected, next]).toContain(clock);
    console.log(`continuous: T ${new Date(t).toISOString()}, restored clock ${clock} (${((Date.parse(clock) - t) / 1000).toFixed(2)} s)`);
    expect(Math.abs(Date.parse(clock) - t)).toBeLessThanOrEqual(1000);
    expect(at(['get', 'configmap', 'deleted-before', '-n', ns]).stderr).toContain('NotFound');
    expect(at(['get', 'configmap', 'created-after', '-n', ns]).stderr).toContain('NotFound');
    expect(at(['get', 'configmap', 'load-49', '-n', ns, '-o', 'name']).stdout.trim()).toBe('configmap/load-49');
    // Every load object holds its value at T, byte for byte: the live etcd's history read at the restored revision.
    const prefix = `/registry/configmaps/${ns}/load-`;
    const values = (json: string) => Object.fromEntries(((JSON.parse(json) as { kvs?: { key: string; value: string }[] }).kvs ?? [])
      .map((kv) => [kv.key, kv.value]));
    const live = etcdctl(['get', prefix, '--prefix', '--rev', String(r.revision), '-w', 'json']);
    expect(live.code).toBe(0);
    const restored = values(etcdctl(['get', prefix, '--prefix', '-w', 'json'], etcd).stdout);
    expect(Object.keys(restored)).toHaveLength(50);
    expect(restored).toEqual(values(live.stdout));
    // ...which are not their values now: the load went on after T.
    expect(restored).not.toEqual(values(etcdctl(['get', prefix, '--prefix', '-w', 'json']).stdout));
  } finally {
    await stopExtra(env, 'pitr-restored-apiserver').catch(() => undefined);
    await stopExtra(env, 'pitr-restored');
    rmSync(dataDir, { recursive: true, force: true });
  }
  // The live cluster has moved on.
  expect(kubectl(['get', 'configmap', 'created-after', '-n', ns]).code).toBe(0);

  // Meanwhile the controller proved the chain: the newest stored revision rebuilt from S3 has exactly etcd's history and content hash.
  await eventually(() => expect(policy().status?.continuous?.lastVerificationResult).toBe('Passed'), 60_000, 1000);
  expect(policy().status?.continuous?.lastVerificationMessage).toMatch(/^revision \d+ rebuilt from full backup [0-9a-f]{8} and \d+ stored changes has exactly etcd's history and content \(\d+ keys, etcd hash \d+( since compacted revision \d+)?\)/);
  expect(events(ns, 'continuous').some((e) => e.reason === 'ContinuousBackupVerified' && e.type === 'Normal')).toBe(true);
  expect(metricValue(await controller.metrics(), 'kubedr_continuous_last_verification_status', { policyName: 'continuous' })).toBe(1);
}, 300_000);

test('the controller killed mid-stream and started again resumes where the store left off: no gap, and "latest" is the cluster now', async () => {
  const counter = (i: number) => kubectl(['create', 'configmap', 'counter', '-n', ns, '--from-literal', `n=${i}`, '--dry-run=client', '-o', 'yaml']).stdout;
  let n = 0;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      expect(kubectl(['apply', '-f', '-'], counter(++n)).code).toBe(0);
      await Bun.sleep(300);
    }
  })();
  await Bun.sleep(4000);
  const storedBefore = Date.parse(policy().status?.continuous?.lastStoredTime ?? '');
  const killedAt = Date.now();
  await controller.stop('SIGKILL');
  await Bun.sleep(8000);
  controller = await ControllerProcess.start(ns, VERIFY_OFTEN);
  await Bun.sleep(4000);
  writing = false;
  await writer;
  const last = n;
  const lastAt = Date.now();
  // What the killed controller had stored is what a restore could reach had the cluster been lost at the kill (RPO).
  console.log(`continuous: killed at ${second(killedAt)}; newest stored change then ${((killedAt - storedBefore) / 1000).toFixed(1)} s before the kill`);
  await eventually(() => expect(Date.parse(policy().status?.continuous?.lastStoredTime ?? '')).toBeGreaterThanOrEqual(lastAt - 1000), 30_000, 500);
  expect(controller.logs).toMatch(/"msg":"continuous backup recording".*"fromRevision":\d+/);
  expect(policy().status?.continuous?.gaps ?? 0).toBe(0);
  const restic = new Restic();
  const { fulls, sets } = await listChain(restic, repo(), 'continuous', undefined);
  expect(restorableWindows(fulls, sets).gaps).toEqual([]);
  expect(fulls).toHaveLength(1);

  // As a user asks for it: "latest" of a policy that records changes is its last stored change.
  const out = cli(['restore', 'latest', '--policy', 'continuous', '--target', join(dir, 'latest'), '--json']);
  expect(out.stderr).toContain('policy "continuous" records changes: "latest" is its last stored change');
  expect(out.code).toBe(0);
  const r = JSON.parse(out.stdout) as { revision: number };
  const etcd = await bootSnapshot(join(dir, 'latest', 'data', 'etcd-snapshot.db'), join(dir, 'boot-latest'));
  try {
    expect(restoredValue(etcd.endpoint, 'counter')).toMatch(new RegExp(`\\b${last}\\b`));
    expect(restoredValue(etcd.endpoint, 'created-after')).not.toBe('');
  } finally {
    await etcd.stop();
  }
  expect(r.revision).toBe(Math.max(...sets.map((s) => s.toRevision)));
}, 300_000);

test('etcd compacted what was not stored while the controller was away: a gap, said so, a full backup at once, restores after it whole', async () => {
  const before = policy();
  const lastStored = Date.parse(before.status?.continuous?.lastStoredTime ?? '');
  await controller.stop();
  for (let i = 0; i < 5; i++) expect(kubectl(['create', 'configmap', `while-away-${i}`, '-n', ns, '--from-literal', 'x=1']).code).toBe(0);
  const inGap = Date.now();
  // What kube-apiserver's compactor does every 5 minutes, now: etcd forgets the history the controller would resume from.
  const status = JSON.parse(etcdctl(['endpoint', 'status', '-w', 'json']).stdout) as { Status: { header: { revision: number } } }[];
  expect(etcdctl(['compaction', String(status[0]!.Status.header.revision)]).code).toBe(0);
  controller = await ControllerProcess.start(ns, VERIFY_OFTEN);
  const gap = await eventually(() => {
    const e = events(ns, 'continuous').find((x) => x.reason === 'ContinuousBackupGap');
    if (!e) throw new Error('no ContinuousBackupGap event yet');
    return e;
  }, 60_000, 1000);
  expect(gap.type).toBe('Warning');
  expect(gap.message).toMatch(/etcd compacted revisions \d+–\d+ before they were stored: no restore can reach/);
  await eventually(() => {
    const st = policy().status;
    expect(st?.continuous?.gaps).toBe(1);
    expect(st?.lastSuccessfulSnapshotId).not.toBe(before.status?.lastSuccessfulSnapshotId);
  }, 90_000, 1000);
  expect(metricValue(await controller.metrics(), 'kubedr_continuous_gaps_total', { policyName: 'continuous' })).toBe(1);
  expect(kubectl(['create', 'configmap', 'after-gap', '-n', ns, '--from-literal', 'x=1']).code).toBe(0);
  const afterGap = Date.now();
  await eventually(() => expect(Date.parse(policy().status?.continuous?.lastStoredTime ?? '')).toBeGreaterThanOrEqual(afterGap), 30_000, 500);

  const restic = new Restic();
  const { fulls, sets } = await listChain(restic, repo(), 'continuous', undefined);
  const { gaps } = restorableWindows(fulls, sets);
  expect(gaps).toHaveLength(1);
  // What an operator sees: the windows and the gap, from S3 alone.
  const listed = cli(['snapshots', '--continuous', '--json']);
  expect(listed.code).toBe(0);
  const windows = JSON.parse(listed.stdout) as { policy: string; gaps: { from: string; to: string }[]; windows: unknown[] }[];
  expect(windows.map((w) => [w.policy, w.windows.length, w.gaps.length])).toEqual([['continuous', 2, 1]]);
  expect(Date.parse(windows[0]!.gaps[0]!.from)).toBeLessThan(inGap);
  expect(cli(['snapshots']).stdout).toMatch(/Continuous backup of policy continuous .*\n  restorable .*\n  restorable .*\n  gap {8}.*no restore reaches it/);
  // From the last change stored (the stopped controller stored what it had received) to the full backup after it.
  expect(gaps[0]!.fromTime).toBeGreaterThanOrEqual(lastStored);
  expect(gaps[0]!.fromTime).toBeLessThan(inGap);
  expect(gaps[0]!.toTime).toBeGreaterThan(inGap);
  await expect(restorePointInTime(restic, { repo: repo(), policy: 'continuous', target: { time: inGap }, dir: join(dir, 'gap') }))
    .rejects.toThrow(/cannot be restored to: no full backup with continuous changes reaches it\. Restorable: /);
  const r = await restorePointInTime(restic, { repo: repo(), policy: 'continuous', target: 'latest', dir: join(dir, 'after-gap') });
  const etcd = await bootSnapshot(join(dir, 'after-gap', 'data', 'etcd-snapshot.db'), join(dir, 'boot-after-gap'));
  try {
    expect(restoredValue(etcd.endpoint, 'after-gap')).not.toBe('');
    expect(restoredValue(etcd.endpoint, 'while-away-4')).not.toBe('');
  } finally {
    await etcd.stop();
  }
  expect(r.baseRevision).toBeGreaterThan(0);
}, 300_000);

test('the leader lost, the standby takes over the recorder from the last stored change set: no new gap', async () => {
  const standby = await ControllerProcess.start(ns, [...VERIFY_OFTEN, '--identity', 'standby']);
  try {
    await eventually(() => expect(standby.logs).toContain('waiting for leadership'), 30_000, 500);
    const gapsBefore = policy().status?.continuous?.gaps ?? 0;
    let n = 0;
    let writing = true;
    const writer = (async () => {
      while (writing) {
        expect(kubectl(['create', 'configmap', `failover-${++n}`, '-n', ns, '--from-literal', 'x=1']).code).toBe(0);
        await Bun.sleep(500);
      }
    })();
    await Bun.sleep(3000);
    await controller.stop('SIGKILL');
    await eventually(() => expect(standby.logs).toMatch(/"msg":"continuous backup recording".*"fromRevision":\d+/), 60_000, 500);
    const resumedFrom = Number(/"msg":"continuous backup recording".*?"fromRevision":(\d+)/.exec(standby.logs)![1]);
    await Bun.sleep(3000);
    writing = false;
    await writer;
    const lastAt = Date.now();
    await eventually(() => expect(Date.parse(policy().status?.continuous?.lastStoredTime ?? '')).toBeGreaterThanOrEqual(lastAt - 1000), 60_000, 500);
    expect(policy().status?.continuous?.gaps ?? 0).toBe(gapsBefore);
    const restic = new Restic();
    const { fulls, sets } = await listChain(restic, repo(), 'continuous', undefined);
    // The standby started right after the last change set the old leader stored.
    const storedBefore = sets.filter((s) => s.toRevision < resumedFrom);
    expect(Math.max(...storedBefore.map((s) => s.toRevision))).toBe(resumedFrom - 1);
    expect(restorableWindows(fulls, sets).gaps).toHaveLength(gapsBefore);
    const r = await restorePointInTime(restic, { repo: repo(), policy: 'continuous', target: 'latest', dir: join(dir, 'failover') });
    const etcd = await bootSnapshot(join(dir, 'failover', 'data', 'etcd-snapshot.db'), join(dir, 'boot-failover'));
    try {
      expect(restoredValue(etcd.endpoint, `failover-${n}`)).not.toBe('');
      expect(restoredValue(etcd.endpoint, 'failover-1')).not.toBe('');
    } finally {
      await etcd.stop();
    }
    expect(r.revisionsApplied).toBeGreaterThan(0);
  } finally {
    controller = standby;
  }
}, 300_000);

test('a MetadataRestore with `at` has its pod rebuild the policy\'s point into the claim, in a restore\'s layout', async () => {
  // A controller with the image for restore pods (the chart's install has one), taking over from the standby.
  await controller.stop();
  controller = await ControllerProcess.start(ns, [...VERIFY_OFTEN, '--restore-image', kubedrImage()]);
  // Recording, and receiving: a store by this controller (changes are timed when received; those of the moments
  // between two controllers are timed when the new one catches up, see docs/continuous-backup.md).
  const startedAt = Date.now();
  await eventually(() => expect(Date.parse(policy().status?.continuous?.updateTime ?? '')).toBeGreaterThan(startedAt), 60_000, 500);
  await eventually(() => expect(policy().status?.continuous?.message ?? '').toStartWith('stored revisions'), 60_000, 500);
  expect(kubectl(['create', 'configmap', 'before-pod-restore', '-n', ns, '--from-literal', 'x=1']).code).toBe(0);
  const t = Date.now() + 1000;
  await Bun.sleep(1500);
  expect(kubectl(['create', 'configmap', 'after-pod-restore-point', '-n', ns, '--from-literal', 'x=1']).code).toBe(0);
  await eventually(() => expect(Date.parse(policy().status?.continuous?.lastStoredTime ?? '')).toBeGreaterThan(t), 60_000, 500);
  const target = join(dir, 'claim');
  await hostPathClaim(ns, 'pit-claim', target);
  const record = getJson<{ items: { metadata: { name: string } }[] }>(['mbr', '-n', ns]).items[0]!.metadata.name;
  apply(`apiVersion: kubedr.catalogicsoftware.com/v1alpha1
kind: MetadataRestore
metadata: { name: to-a-second, namespace: ${ns} }
spec: { mbrName: ${record}, pvcName: pit-claim, at: "${new Date(t).toISOString()}" }
`);
  await eventually(() => {
    const st = getJson<{ status?: { restoreStatus?: string; restoreErrorMessage?: string } }>(['mr', 'to-a-second', '-n', ns]).status;
    if (st?.restoreStatus === 'Failed') throw new Error(`restore failed: ${st.restoreErrorMessage}`);
    expect(st?.restoreStatus).toBe('Completed');
  }, 240_000, 2000);
  const info = JSON.parse(readFileSync(join(target, 'data', 'point-in-time.json'), 'utf8')) as { time: string; revision: number };
  expect(Date.parse(info.time)).toBeLessThanOrEqual(t);
  const etcd = await bootSnapshot(join(target, 'data', 'etcd-snapshot.db'), join(dir, 'boot-pod'));
  try {
    expect(restoredValue(etcd.endpoint, 'before-pod-restore')).not.toBe('');
    expect(restoredValue(etcd.endpoint, 'after-pod-restore-point')).toBe('');
  } finally {
    await etcd.stop();
  }
}, 420_000);
