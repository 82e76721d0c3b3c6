/**
 * Leader election with real controller processes sharing one Lease: one acts, a standby takes over when it stops, and
 * when the API server freezes (SIGSTOP) or its credential plugin hangs the leader gives up by its renew deadline, so
 * there are never two actors.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_TOKEN, controlPlanePid, startExtraEtcd, stopExtra } from '../../scripts/cluster/node.ts';
import { BACKUP_NOW_ANNOTATION } from '../../src/api/group.ts';
import type { BackupLocation, Lease, MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import { ControllerProcess, FAILOVER_TIMINGS, apply, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, eventually, fillEtcd,
  getJson, kubeconfigWithUser, kubectl, locationSecretYaml, locationYaml, policyYaml, resticAt, uniqueBucket } from '../support/e2e.ts';

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
  const c = await ControllerProcess.start(ns, [...FAILOVER_TIMINGS, '--identity', identity]);
  running.push(c);
  return c;
}

const holder = () => getJson<Lease>(['lease', 'kubedr-controller', '-n', ns]).spec?.holderIdentity;
const leads = (c: ControllerProcess) => c.logs.includes('"msg":"became leader"');
/** Time (ms) of the first log line of `c` whose message starts with `msg`. */
const tsOf = (c: ControllerProcess, msg: string) => Date.parse(String(c.logLines().find((l) => String(l.msg).startsWith(msg))?.ts));
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

describe('the API server frozen (SIGSTOP) during a backup while a standby waits', () => {
  let etcd: string;
  afterAll(() => stopExtra(cluster(), 'etcd-leader-big'));

  test('the leader stops acting by its renew deadline; the standby takes over, resolves that backup once, and takes the next', async () => {
    for (const c of running) await c.stop('SIGKILL');
    // A backup that lasts a few seconds, so the freeze lands in the middle of it.
    etcd = await startExtraEtcd(cluster(), 'etcd-leader-big');
    fillEtcd(etcd, 120);
    const bucket = uniqueBucket('le-freeze');
    apply(etcdSecretYaml(ns, 'etcd-creds'));
    apply(locationYaml(ns, 'frozen', { bucketName: bucket, credentials: 's3-creds' }));
    apply(policyYaml(ns, 'pol', { destination: 'frozen', etcdEndpoint: etcd }));
    const d = await start('replica-d');
    await eventually(() => expect(leads(d)).toBe(true), 20_000, 200);
    const e = await start('replica-e');
    await eventually(() => expect(e.logs).toContain('waiting for leadership'));
    await completed('frozen');

    expect(kubectl(['annotate', 'mbp', 'pol', '-n', ns, '--overwrite', `${BACKUP_NOW_ANNOTATION}=freeze`]).code).toBe(0);
    await eventually(() => expect(['Snapshot', 'Upload']).toContain(getJson<MetadataBackupPolicy>(['mbp', 'pol', '-n', ns]).status?.progress?.phase ?? ''), 30_000, 100);
    const apiserver = controlPlanePid(cluster(), 'apiserver');
    process.kill(apiserver, 'SIGSTOP');
    try {
      await Bun.sleep(9_000);
    } finally {
      process.kill(apiserver, 'SIGCONT');
    }

    // The old leader gave up on its own, within the renew deadline (3 s here) plus a retry, and exited to be restarted.
    expect(await d.exited).toBe(1);
    const lostAt = tsOf(d, 'leadership lost');
    await eventually(() => expect(leads(e)).toBe(true), 30_000, 200);
    expect(tsOf(e, 'became leader')).toBeGreaterThan(lostAt);

    // The old leader's backup stopped with it: cancelled at once, not left running beside the new leader; unless it had
    // ended already (on a loaded machine the backup may finish before the renew deadline is up).
    const endedBefore = d.logLines().some((l) => /^backup (completed|failed|stored)/.test(String(l.msg)) && Date.parse(String(l.ts)) <= lostAt);
    const cancelledAt = tsOf(d, 'cancelling running backups');
    console.log(`frozen API drill: the old leader's backup ${endedBefore ? 'had ended before the lease was lost' : `was cancelled ${cancelledAt - lostAt} ms after the loss`}`);
    expect(endedBefore || cancelledAt >= lostAt).toBe(true);
    // The new leader resolves that backup from the repository: recorded if its snapshot was stored, interrupted if not;
    // either way one outcome, and never a snapshot without a record or two records for it.
    const p = await eventually(() => {
      const x = getJson<MetadataBackupPolicy>(['mbp', 'pol', '-n', ns]);
      if (x.status?.backupStatus !== 'Completed' && x.status?.backupStatus !== 'Failed') throw new Error(JSON.stringify(x.status));
      return x;
    }, 60_000);
    const consistent = () => {
      const snapshots = JSON.parse(resticAt(bucket, 'leader-test-password', ['snapshots', '--json', '--no-lock']).stdout) as { short_id: string }[];
      const records = getJson<{ items: MetadataBackupRecord[] }>(['mbr', '-n', ns]).items.filter((r) => r.spec.policy === 'pol');
      expect(records.map((r) => r.spec.snapshotId).sort()).toEqual(snapshots.map((s) => s.short_id).sort());
      return snapshots.length;
    };
    const stored = consistent();
    expect(stored).toBeLessThanOrEqual(1);
    if (stored === 1) expect(p.status?.backupStatus).toBe('Completed');
    else expect(p.status?.backupErrorMessage).toBe('interrupted: the controller stopped during the backup, before it stored a snapshot');
    // And the new leader takes the next backup: one more snapshot, one more record.
    expect(kubectl(['annotate', 'mbp', 'pol', '-n', ns, '--overwrite', `${BACKUP_NOW_ANNOTATION}=after-freeze`]).code).toBe(0);
    await eventually(() => {
      const x = getJson<MetadataBackupPolicy>(['mbp', 'pol', '-n', ns]);
      if (x.status?.backupNowServed !== 'after-freeze' || x.status.backupStatus !== 'Completed') throw new Error(JSON.stringify(x.status));
    }, 60_000);
    await eventually(() => expect(consistent()).toBe(stored + 1));
  }, 180_000);
});

/**
 * The drill of issue 18: the leader itself frozen (SIGSTOP) for 30 s during its upload, its restic child still running.
 * The standby takes the lease after the lease duration. Before: it wrote the backup off as interrupted while the old
 * restic still ran, and on waking the old leader PATCHed its progress over that, leaving `Failed` with a stale
 * `phase: Upload`. Now: the old leader writes nothing on waking (its writes are fenced by time) and exits; the new leader
 * judges the backup only once the old upload can no longer store a snapshot, and the outcome matches the repository.
 */
describe('the leader frozen (SIGSTOP) during its upload, its restic running on', () => {
  afterAll(() => stopExtra(cluster(), 'etcd-leader-frozen'));

  test('the old leader writes nothing when it wakes and exits; the new one judges the backup once it can no longer land', async () => {
    for (const c of running) await c.stop('SIGKILL');
    const etcd = await startExtraEtcd(cluster(), 'etcd-leader-frozen');
    fillEtcd(etcd, 150);
    const bucket = uniqueBucket('le-sigstop');
    apply(etcdSecretYaml(ns, 'etcd-creds'));
    apply(locationYaml(ns, 'sigstop', { bucketName: bucket, credentials: 's3-creds' }));
    apply(policyYaml(ns, 'upload', { destination: 'sigstop', etcdEndpoint: etcd }));
    const f = await start('replica-f');
    await eventually(() => expect(leads(f)).toBe(true), 20_000, 200);
    const g = await start('replica-g');
    await eventually(() => expect(g.logs).toContain('waiting for leadership'));
    await completed('sigstop');
    const policy = () => getJson<MetadataBackupPolicy>(['mbp', 'upload', '-n', ns]);

    expect(kubectl(['annotate', 'mbp', 'upload', '-n', ns, '--overwrite', `${BACKUP_NOW_ANNOTATION}=sigstop`]).code).toBe(0);
    await eventually(() => expect(policy().status?.progress?.phase).toBe('Upload'), 60_000, 50);
    f.signal('SIGSTOP');
    try {
      await eventually(() => expect(leads(g)).toBe(true), 30_000, 200);
      await Bun.sleep(Math.max(0, 30_000 - 5_000));
    } finally {
      f.signal('SIGCONT');
    }
    const wokeAt = Date.now();
    // On waking, the old leader's first timer is its watchdog: work stopped, nothing written, the process exits.
    expect(await f.exited).toBe(1);
    expect(f.logs).toContain('leadership lost');
    expect(Date.now() - wokeAt).toBeLessThan(15_000);

    const settled = await eventually(() => {
      const x = policy();
      if (x.status?.backupStatus !== 'Completed' && x.status?.backupStatus !== 'Failed') throw new Error(JSON.stringify(x.status));
      return x;
    }, 120_000);
    // What a user reads: a finished backup, no progress of a backup that no longer runs, and the same after a while.
    expect(settled.status?.progress ?? undefined).toBeUndefined();
    await Bun.sleep(5_000);
    const later = policy();
    expect(later.status?.progress ?? undefined).toBeUndefined();
    expect(later.status?.backupStatus).toBe(settled.status?.backupStatus);
    // The outcome is the repository's: recorded if the old upload stored its snapshot, interrupted if it did not.
    const snapshots = JSON.parse(resticAt(bucket, 'leader-test-password', ['snapshots', '--json', '--no-lock']).stdout) as { short_id: string }[];
    const records = getJson<{ items: MetadataBackupRecord[] }>(['mbr', '-n', ns]).items.filter((r) => r.spec.policy === 'upload');
    expect(records.map((r) => r.spec.snapshotId).sort()).toEqual(snapshots.map((s) => s.short_id).sort());
    if (snapshots.length === 1) expect(later.status?.backupStatus).toBe('Completed');
    else expect(later.status?.backupErrorMessage).toMatch(/^interrupted: /);
    console.log(`frozen leader drill: ${snapshots.length === 1 ? 'the old upload stored its snapshot, adopted' : 'interrupted, no snapshot'}; ` +
      `new leader waited for the old upload: ${g.logs.includes('an unfinished backup may still be uploading')}`);
  }, 240_000);
});

test('a credential plugin that hangs cannot keep a leader past its renew deadline: the standby takes over, the plugin is killed, it exits 1', async () => {
  for (const c of running) await c.stop('SIGKILL');
  const dir = mkdtempSync(join(tmpdir(), 'leader-exec-'));
  try {
    // The first run gives a token valid for 6 s; every later run hangs, as a plugin waiting on an unreachable identity
    // provider does.
    const plugin = join(dir, 'plugin.sh');
    writeFileSync(plugin, `#!/bin/sh
echo run >> ${dir}/runs
if [ "$(wc -l < ${dir}/runs)" -gt 1 ]; then echo $$ > ${dir}/hung.pid; exec sleep 600; fi
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"${ADMIN_TOKEN}","expirationTimestamp":"%s"}}' "$(date -u -d '+6 seconds' +%Y-%m-%dT%H:%M:%SZ)"
`);
    chmodSync(plugin, 0o755);
    const kubeconfig = kubeconfigWithUser(join(dir, 'kubeconfig'), `    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: ${plugin}`);
    const f = await ControllerProcess.start(ns, [...FAILOVER_TIMINGS, '--identity', 'replica-f'], { kubeconfig });
    running.push(f);
    await eventually(() => expect(leads(f)).toBe(true), 20_000, 200);
    const ledAt = tsOf(f, 'became leader');
    const g = await start('replica-g');
    await eventually(() => expect(g.logs).toContain('waiting for leadership'));

    // The token expires at 6 s; each renewal then waits for the hung plugin only as long as the renew deadline (3 s
    // here) allows, and says why it failed.
    await eventually(() => expect(f.logs).toContain('leadership lost'), 20_000, 200);
    const lostAt = tsOf(f, 'leadership lost');
    expect(lostAt - ledAt).toBeLessThan(6_000 + 3_000 + 2_000);
    expect(f.logs).toContain(`the kubeconfig's credential plugin ${plugin} gave no credential within the request's time limit`);
    await eventually(() => expect(leads(g)).toBe(true), 20_000, 200);
    expect(tsOf(g, 'became leader')).toBeGreaterThan(lostAt);

    // Work that asked without a deadline of its own waits at most the request time limit (30 s), when the plugin is
    // killed; then the old leader exits 1 to be restarted.
    const code = await Promise.race([f.exited, Bun.sleep(45_000).then(() => 'still running 45 s after the loss')]);
    expect(code).toBe(1);
    const hung = Number(readFileSync(join(dir, 'hung.pid'), 'utf8'));
    expect(() => process.kill(hung, 0)).toThrow();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
