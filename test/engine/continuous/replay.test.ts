/**
 * Continuous backup's engine against a real etcd 3.5 and a real restic (local repository): every change recorded from a
 * full backup on, stored as change sets, and replayed into the exact state of a chosen second (compared key by key with
 * what etcd itself held at that revision); a watch that falls behind a compaction reports the gap, and a restore into
 * the gap is refused. Plain etcd, so the Kubernetes parts (API server, kubectl) are left to the end-to-end drill.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBackup } from '../../../src/engine/backup.ts';
import { listChain } from '../../../src/engine/continuous/change-store.ts';
import { type StoredChangeSet, recordChanges } from '../../../src/engine/continuous/recorder.ts';
import { POINT_IN_TIME_FILE, restorePointInTime } from '../../../src/engine/continuous/replay.ts';
import { keysDigest, contentHashAt, verifyChain } from '../../../src/engine/continuous/verify-chain.ts';
import { planReplay, restorableWindows } from '../../../src/engine/continuous/window.ts';
import { EtcdClient } from '../../../src/engine/etcd-client.ts';
import { type Repository, Restic } from '../../../src/engine/restic.ts';
import { startThrowawayEtcd, type ThrowawayEtcd } from '../../../src/engine/throwaway-etcd.ts';
import { freePort } from '../../../src/util/net.ts';
import { localRepository } from '../../fixtures/local-repository.ts';

const origin = { clusterId: 'uid-1', clusterName: 'test', namespace: 'kubedr' };
const restic = new Restic();
let dir: string;
let repo: Repository;
let etcdProc: ReturnType<typeof Bun.spawn>;
let endpoint: string;
let live: EtcdClient;

function put(key: string, value: string, lease?: string): number {
  const r = spawnSync('etcdctl', ['--endpoints', endpoint, 'put', key, value, '-w', 'json', ...(lease ? ['--lease', lease] : [])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return Number((JSON.parse(r.stdout) as { header: { revision: number } }).header.revision);
}
function del(key: string): number {
  const r = spawnSync('etcdctl', ['--endpoints', endpoint, 'del', key, '-w', 'json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return Number((JSON.parse(r.stdout) as { header: { revision: number } }).header.revision);
}
async function contents(client: EtcdClient, revision = 0): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const page of client.range(revision)) for (const kv of page) out.set(kv.key.toString(), kv.value.toString());
  return out;
}
async function snapshotContents(file: string): Promise<{ map: Map<string, string>; revision: number }> {
  const work = mkdtempSync(join(dir, 'check-'));
  const etcd: ThrowawayEtcd = await startThrowawayEtcd({ snapshotFile: file, work, name: 'check' });
  const client = await EtcdClient.connect({ endpoint: etcd.endpoint });
  try {
    return { map: await contents(client), revision: await client.revision() };
  } finally {
    client.close();
    await etcd.stop();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kdr-continuous-'));
  repo = await localRepository(restic, dir);
  endpoint = `http://127.0.0.1:${await freePort()}`;
  const peer = `http://127.0.0.1:${await freePort()}`;
  etcdProc = Bun.spawn(['etcd', '--name', 'live', '--data-dir', join(dir, 'live'), '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `live=${peer}`], { stdout: 'ignore', stderr: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if (spawnSync('etcdctl', ['--endpoints', endpoint, 'endpoint', 'health']).status === 0) break;
    await Bun.sleep(100);
  }
  live = await EtcdClient.connect({ endpoint });
});
afterAll(() => {
  live?.close();
  etcdProc?.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe('continuous backup, engine', () => {
  let base = 0;
  let revAtT = 0;
  let t = 0;
  const stored: StoredChangeSet[] = [];

  test('a full backup records its etcd revision; changes after it are stored as change sets within the flush interval', async () => {
    for (let i = 0; i < 20; i++) put(`/registry/configmaps/default/before-${i}`, `v${i}`);
    put('/registry/configmaps/default/clock', 'start');
    const full = await runBackup(restic, { etcd: { endpoint }, repo, host: 'node-1', tags: ['policy-a', 'kubedr-cluster-id=uid-1', 'kubedr-cluster=test', 'kubedr-namespace=kubedr'] });
    base = full.etcd.revision;
    const ac = new AbortController();
    const recording = recordChanges(restic, {
      etcd: { endpoint }, repo, policy: 'policy-a', origin, host: 'node-1', fromRevision: base + 1, flushIntervalMs: 1000, signal: ac.signal,
      onStored: (s) => stored.push(s),
    });
    // Before T: the clock ticks, keys are created, changed and deleted, one key is written with a lease.
    // "lease 694d9a4b5c6e7f10 granted with TTL(600s)": hex, exact (the JSON output's number loses int64 digits).
    const leaseHex = /lease ([0-9a-f]+) granted/.exec(spawnSync('etcdctl', ['--endpoints', endpoint, 'lease', 'grant', '600'], { encoding: 'utf8' }).stdout)![1]!;
    for (let i = 0; i < 30; i++) {
      put('/registry/configmaps/default/clock', `tick-${i}`);
      put(`/registry/configmaps/default/during-${i}`, `d${i}`);
      if (i % 3 === 0) del(`/registry/configmaps/default/before-${i % 20}`);
    }
    put('/registry/events/default/ev-1', 'event', leaseHex);
    revAtT = put('/registry/configmaps/default/clock', 'at-T');
    await Bun.sleep(1200);
    t = Date.now();
    await Bun.sleep(1200);
    // After T: more changes, which a restore to T must not show.
    for (let i = 0; i < 30; i++) {
      put('/registry/configmaps/default/clock', `after-${i}`);
      put(`/registry/configmaps/default/after-${i}`, `a${i}`);
      del(`/registry/configmaps/default/during-${i}`);
    }
    await Bun.sleep(2500);
    ac.abort();
    await recording;
    expect(stored.length).toBeGreaterThanOrEqual(2);
    // Contiguous from the full backup on, and every revision of etcd up to now is in them.
    expect(stored[0]!.fromRevision).toBe(base + 1);
    for (let i = 1; i < stored.length; i++) expect(stored[i]!.fromRevision).toBe(stored[i - 1]!.toRevision + 1);
    expect(stored.at(-1)!.toRevision).toBe(await live.revision());
  }, 60_000);

  test('the repository alone tells the chain: one full backup and its change sets make one window', async () => {
    const { fulls, sets } = await listChain(restic, repo, 'policy-a', origin);
    expect(fulls.map((f) => f.revision)).toEqual([base]);
    // restic 0.14 reports a backup's snapshot by its short ID, 0.18 by its full one; listings give the full one.
    const short = (id: string) => id.slice(0, 8);
    expect(sets.map((s) => short(s.id))).toEqual(stored.map((s) => short(s.id)));
    const { windows, gaps } = restorableWindows(fulls, sets);
    expect(windows).toHaveLength(1);
    expect(gaps).toEqual([]);
    expect(windows[0]!.toTime).toBe(stored.at(-1)!.toTime);
  });

  test('a restore to time T is etcd exactly as it was at T: same revision, every key and value', async () => {
    const target = join(dir, 'pit');
    const r = await restorePointInTime(restic, { repo, policy: 'policy-a', origin, target: { time: t }, dir: target });
    expect(r.revision).toBe(revAtT);
    const got = await snapshotContents(join(target, 'data', 'etcd-snapshot.db'));
    expect(got.revision).toBe(revAtT);
    const want = await contents(live, revAtT);
    expect(got.map.get('/registry/configmaps/default/clock')).toBe('at-T');
    expect(got.map.has('/registry/configmaps/default/after-0')).toBe(false);
    expect(got.map.has('/registry/configmaps/default/before-0')).toBe(false);
    expect(got.map.get('/registry/configmaps/default/during-29')).toBe('d29');
    expect(got.map.get('/registry/events/default/ev-1')).toBe('event');
    expect([...got.map.entries()].sort()).toEqual([...want.entries()].sort());
    const info = JSON.parse(readFileSync(join(target, 'data', POINT_IN_TIME_FILE), 'utf8')) as { revision: number; baseRevision: number };
    expect(info.revision).toBe(revAtT);
  }, 60_000);

  test('"latest" is the last stored change: etcd as it is now', async () => {
    const target = join(dir, 'latest');
    const r = await restorePointInTime(restic, { repo, policy: 'policy-a', origin, target: 'latest', dir: target });
    const now = await live.revision();
    expect(r.revision).toBe(now);
    const got = await snapshotContents(join(target, 'data', 'etcd-snapshot.db'));
    expect([...got.map.entries()].sort()).toEqual([...(await contents(live)).entries()].sort());
  }, 60_000);

  test('the chain proves itself: rebuilt at the last stored revision, its keys\' history digest and etcd\'s content hash equal live etcd\'s', async () => {
    const rev = stored.at(-1)!.toRevision;
    // The live etcd compacted part of the history the chain replays (as the API server does every 5 minutes).
    spawnSync('etcdctl', ['--endpoints', endpoint, 'compaction', String(rev - 2)]);
    const liveHash = await contentHashAt(live, rev);
    expect(liveHash.compactRevision).toBe(rev - 2);
    const proof = await verifyChain(restic, { repo, policy: 'policy-a', origin, revision: rev, compactRevision: liveHash.compactRevision, kubernetes: false });
    const liveDigest = await keysDigest(live, rev);
    expect(proof.revision).toBe(rev);
    expect(proof.keyCount).toBe(liveDigest.keyCount);
    expect(proof.digest).toBe(liveDigest.digest);
    expect(proof.compactRevision).toBe(liveHash.compactRevision);
    expect(proof.contentHash).toBe(liveHash.contentHash);
    // One revision less is another history: digest and hash differ (the check can fail).
    expect((await keysDigest(live, rev - 1)).digest).not.toBe(proof.digest);
    expect((await contentHashAt(live, rev - 1)).contentHash).not.toBe(proof.contentHash);
    await expect(verifyChain(restic, { repo, policy: 'policy-a', origin, revision: rev + 1000, kubernetes: false })).rejects.toThrow(/cannot be restored to/);
  }, 60_000);

  test('a verification under the shared lock waits while another writer holds the repository exclusively, then passes', async () => {
    const rev = stored.at(-1)!.toRevision;
    // A real restic holding the exclusive lock (as a prune does): `key passwd` takes it, then waits for the new password.
    const holder = Bun.spawn(['restic', 'key', 'passwd'], { env: { ...process.env, RESTIC_PASSWORD: repo.password, RESTIC_REPOSITORY: repo.address },
      stdin: 'pipe', stdout: 'ignore', stderr: 'ignore' });
    for (let i = 0; i < 100 && !spawnSync('ls', [join(repo.address, 'locks')], { encoding: 'utf8' }).stdout.trim(); i++) await Bun.sleep(100);
    const started = Date.now();
    const steps: string[] = [];
    const proof = verifyChain(restic, { repo, policy: 'policy-a', origin, revision: rev, kubernetes: false, sharedLock: true, onStep: (s) => steps.push(s) });
    await Bun.sleep(3000);
    // Its password prompt ends with its standard input (it then exits, its lock removed; SIGTERM leaves it hanging).
    await holder.stdin.end();
    await holder.exited;
    const r = await proof;
    expect(Date.now() - started).toBeGreaterThanOrEqual(3000);
    expect(steps.some((s) => s.startsWith('waiting: ') && s.includes('exclusive'))).toBe(true);
    expect(r.digest).toBe((await keysDigest(live, rev)).digest);
  }, 90_000);

  test('a watch behind a compaction reports the gap; a restore to a time in it is refused, naming what can be restored', async () => {
    const lastStored = stored.at(-1)!;
    await Bun.sleep(1100);
    for (let i = 0; i < 10; i++) put(`/registry/configmaps/default/lost-${i}`, 'x');
    const inGap = Date.now();
    await Bun.sleep(1100);
    const compactTo = put('/registry/configmaps/default/compact-point', 'x');
    spawnSync('etcdctl', ['--endpoints', endpoint, 'compaction', String(compactTo)]);
    const gaps: [number, number][] = [];
    const ac = new AbortController();
    const more: StoredChangeSet[] = [];
    const recording = recordChanges(restic, {
      etcd: { endpoint }, repo, policy: 'policy-a', origin, host: 'node-1', fromRevision: lastStored.toRevision + 1, flushIntervalMs: 500, signal: ac.signal,
      onGap: (from, to) => gaps.push([from, to]), onStored: (s) => more.push(s),
    });
    for (let i = 0; i < 50 && gaps.length === 0; i++) await Bun.sleep(100);
    put('/registry/configmaps/default/after-gap', 'y');
    await Bun.sleep(1500);
    ac.abort();
    await recording;
    expect(gaps).toEqual([[lastStored.toRevision + 1, compactTo]]);
    expect(more[0]!.fromRevision).toBeGreaterThanOrEqual(compactTo);
    const { fulls, sets } = await listChain(restic, repo, 'policy-a', origin);
    expect(() => planReplay(fulls, sets, { time: inGap })).toThrow(/cannot be restored to.*Restorable: /);
    // Until a new full backup starts a chain after the gap, the window ends where the gap begins.
    expect(restorableWindows(fulls, sets).windows.at(-1)!.toTime).toBe(lastStored.toTime);
  }, 60_000);
});
