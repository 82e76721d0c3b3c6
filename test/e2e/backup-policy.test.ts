/**
 * Scheduled and on-demand backups end to end: the controller as a real process backs up a real etcd (mutual TLS) and
 * certificates into restic on S3. Tests check what a user would: status, records, events, /metrics, and that the
 * backup restores to an etcd that holds the data.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { BACKUP_FAILED, BACKUP_SUCCEEDED, messages } from '../../src/api/events.ts';
import { BACKUP_NOW_ANNOTATION } from '../../src/api/group.ts';
import type { MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import { verifySnapshotFile } from '../../src/engine/etcd-snapshot.ts';
import { startExtraEtcd, startProcAgain, stopExtra, stopProc } from '../../scripts/cluster/node.ts';
import {
  ControllerProcess, FAILOVER_TIMINGS, apply, backupNow, bootSnapshot, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, etcdctl,
  events, eventually, fillEtcd, getJson, refillEtcd, kubectl, pem, locationSecretYaml, locationYaml, metricValue, policyYaml, resticAt, extractArchiveByHand, uniqueBucket, locationInit
} from '../support/e2e.ts';
import { createS3User, newS3Keys } from '../support/s3.ts';

let ns: string;
let controller: ControllerProcess;
let work: string;
const password = `pw-${crypto.randomUUID()}`;
/** S3 keys of a user of this run's own: the server checks them, and finding them in output proves a leak. */
const s3Keys = newS3Keys('policy');
const bucket = uniqueBucket('pol');
/** Controller flags: short waits so failures show quickly. */
// Streamed backups (not the default yet): this file's progress, stall and kill cases run through the archive writer.
const flags = ['--location-wait', '3s', '--backup-stall-timeout', '8s', '--progress-interval', '300ms', '--backup-layout', 'streamed'];

const policy = (name: string) => getJson<MetadataBackupPolicy>(['mbp', name, '-n', ns]);
const records = (name: string) => getJson<{ items: MetadataBackupRecord[] }>(['mbr', '-n', ns]).items.filter((r) => r.spec.policy === name);
const patch = (kind: string, name: string, p: object) => {
  const r = kubectl(['patch', kind, name, '-n', ns, '--type', 'merge', '-p', JSON.stringify(p)]);
  if (r.code !== 0) throw new Error(r.stderr);
};

async function failedCount(name: string): Promise<number> {
  return metricValue(await controller.metrics(), 'kubedr_num_failed_backups', { policyName: name }) ?? 0;
}

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('policy');
  work = mkdtempSync(join(tmpdir(), 'policy-e2e-'));
  createS3User(s3Keys);
  apply(locationSecretYaml(ns, { name: 's3-creds', password, ...s3Keys }));
  apply(etcdSecretYaml(ns, 'etcd-creds', null));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  controller = await ControllerProcess.start(ns, flags);
  // The tests' 3 s --location-wait is shorter than initialising a repository: start with the location ready.
  await locationInit(ns, 'loc', 'Completed');
});
afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
  rmSync(work, { recursive: true, force: true });
});

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => statSync(join(dir, f)).isFile()).sort();
}

describe('a scheduled backup of the cluster\'s own etcd', () => {
  const key = `/kubedr-e2e/before-${crypto.randomUUID()}`;

  test('runs on schedule, records the snapshot, and restores to an etcd holding the data and identical certificates', async () => {
    expect(etcdctl(['put', key, 'written-before-the-backup']).code).toBe(0);
    apply(policyYaml(ns, 'scheduled', { schedule: '* * * * *', retainNumBackups: 10 }));
    const p = await eventually(() => {
      const x = policy('scheduled');
      if (x.status?.backupStatus !== 'Completed' || x.status.backupTrigger !== 'Scheduled') throw new Error(JSON.stringify(x.status));
      return x;
    }, 90_000);
    const st = p.status!;
    expect(st.backupErrorMessage).toBe('');
    expect(st.snapshotId).toMatch(/^[0-9a-f]{8}$/);
    expect(st.mbrName).toBe(`mbr-${st.snapshotId}`);
    expect(st.filesNew).toBeGreaterThan(0);
    expect(st.dataAdded).toBeGreaterThan(0);
    expect(Number(st.totalDurationSecs)).toBeGreaterThan(0);
    expect(st.totalDurationSecs).toMatch(/\./);
    expect(st.lastSuccessfulSnapshotId).toBe(st.snapshotId);
    expect(Date.parse(st.nextBackupTime ?? '')).toBeGreaterThan(Date.now());

    const record = getJson<MetadataBackupRecord>(['mbr', st.mbrName!, '-n', ns]);
    expect(record.spec).toEqual({ snapshotId: st.snapshotId!, policy: 'scheduled', backuploc: 'loc' });
    expect(record.status?.etcdRevision).toBeGreaterThan(0);
    expect(record.status?.etcdSnapshotSha256).toMatch(/^[0-9a-f]{64}$/);
    await eventually(() => expect(events(ns, 'scheduled').find((e) => e.reason === BACKUP_SUCCEEDED)?.message)
      .toBe(messages.backupSucceeded(st.snapshotId!)));

    // Stored as one archive while etcd sent it (the node's restic is 0.18). Read back as a user would with restic
    // alone (restic dump, then tar), and check what came back.
    const listed = resticAt(bucket, password, ['snapshots', '--json', st.snapshotId!], s3Keys);
    expect(JSON.parse(listed.stdout)[0].paths).toEqual(['/kubedr-backup.tar']);
    const target = join(work, 'restore');
    extractArchiveByHand(bucket, password, st.snapshotId!, target, s3Keys);
    const db = join(target, 'data', 'etcd-snapshot.db');
    const bytes = readFileSync(db);
    const content = createHash('sha256').update(bytes.subarray(0, bytes.length - 32)).digest('hex');
    expect(content).toBe(record.status!.etcdSnapshotSha256!);
    expect(bytes.subarray(bytes.length - 32).toString('hex')).toBe(content);
    expect(await verifySnapshotFile(db)).toBe(content);
    const status = etcdctl(['snapshot', 'status', db, '-w', 'json']);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).revision).toBeGreaterThanOrEqual(record.status!.etcdRevision!);

    const certs = join(target, 'data', 'certificates');
    const pki = cluster().pki;
    expect(filesUnder(certs)).toEqual(filesUnder(pki));
    for (const f of filesUnder(pki)) expect(readFileSync(join(certs, f)).equals(readFileSync(join(pki, f)))).toBe(true);

    const restored = await bootSnapshot(db, work);
    try {
      const get = etcdctl(['get', key, '--print-value-only'], restored.endpoint);
      expect(get.stdout.trim()).toBe('written-before-the-backup');
    } finally {
      await restored.stop();
    }
    expect(relative(target, db)).toBe('data/etcd-snapshot.db');
  });

  test('suspend stops scheduled runs (on-demand still works); resume starts them again', async () => {
    patch('mbp', 'scheduled', { spec: { suspend: true } });
    const suspended = await eventually(() => {
      const x = policy('scheduled');
      if (x.status?.nextBackupTime !== '') throw new Error(JSON.stringify(x.status));
      return x;
    });
    expect(suspended.status?.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('Suspended');
    const m = await controller.metrics();
    expect(metricValue(m, 'kubedr_backup_policy_suspended', { policyName: 'scheduled' })).toBe(1);
    expect(metricValue(m, 'kubedr_backup_next_run_timestamp_seconds', { policyName: 'scheduled' })).toBeUndefined();
    const servedBefore = suspended.status?.lastScheduleTime;

    const onDemand = await backupNow(ns, 'scheduled');
    expect(onDemand.status?.backupStatus).toBe('Completed');
    expect(onDemand.status?.backupTrigger).toBe('OnDemand');

    // Wait past the next minute boundary: no scheduled run may happen.
    const nextMinute = Math.ceil(Date.now() / 60_000) * 60_000;
    await Bun.sleep(nextMinute - Date.now() + 5_000);
    expect(policy('scheduled').status?.lastScheduleTime).toBe(servedBefore);
    expect(policy('scheduled').status?.backupTrigger).toBe('OnDemand');

    patch('mbp', 'scheduled', { spec: { suspend: false } });
    const resumedAt = Date.now();
    await eventually(() => {
      const x = policy('scheduled');
      if (x.status?.backupTrigger !== 'Scheduled' || Date.parse(x.status.backupTime ?? '') < resumedAt || x.status.backupStatus !== 'Completed') {
        throw new Error(JSON.stringify(x.status));
      }
    }, 90_000);
    patch('mbp', 'scheduled', { spec: { suspend: true } });
  });
});

describe('retention', () => {
  /**
   * On a failure, what a person would look at next: the policy's records and events and the controller's last log
   * lines (a CI run failed here once, quickly, and its output did not say on which check).
   */
  async function explained(body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (err) {
      console.log('records:', JSON.stringify(records('keep-two').map((r) => [r.metadata.name, r.spec.snapshotId, r.status])));
      console.log('events:', JSON.stringify(events(ns).filter((e) => (e.involvedObject.name ?? '').startsWith('keep-two') || e.involvedObject.kind === 'MetadataBackupRecord')
        .map((e) => [e.involvedObject.name, e.reason, e.message])));
      console.log(controller.logs.slice(-6000));
      throw err;
    }
  }
  /** The snapshots of the policy in the bucket, read as a person would; no lock taken, so no writer of the controller can refuse it. */
  const snapshots = () => {
    const r = resticAt(bucket, password, ['snapshots', '--no-lock', '--json', '--tag', 'keep-two'], s3Keys);
    if (r.code !== 0) throw new Error(`restic snapshots: ${r.stderr}`);
    return JSON.parse(r.stdout || '[]') as { short_id: string }[];
  };

  test('retainNumBackups: 2 after four backups leaves two records and two snapshots; deleting a record forgets its snapshot', () => explained(async () => {
    apply(policyYaml(ns, 'keep-two', { retainNumBackups: 2 }));
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const p = await backupNow(ns, 'keep-two');
      expect(p.status?.backupStatus).toBe('Completed');
      ids.push(p.status!.snapshotId!);
    }
    const kept = await eventually(() => {
      const rs = records('keep-two');
      expect(rs.map((r) => r.spec.snapshotId).sort()).toEqual(ids.slice(2).sort());
      return rs;
    });
    expect(snapshots().map((s) => s.short_id).sort()).toEqual(ids.slice(2).sort());
    // The event follows the deletions it reports.
    await eventually(() => expect(events(ns, 'keep-two').some((e) => e.reason === 'BackupsExpired')).toBe(true), 10_000);

    const victim = kept.find((r) => r.spec.snapshotId === ids[2])!;
    const del = kubectl(['delete', 'mbr', victim.metadata.name, '-n', ns, '--timeout=60s']);
    if (del.code !== 0) throw new Error(`kubectl delete: ${del.stderr}`);
    expect(snapshots().map((s) => s.short_id)).toEqual([ids[3]!]);
    expect(records('keep-two').map((r) => r.spec.snapshotId)).toEqual([ids[3]!]);
  }));

  test('a record deleted while the repository is unreachable stays, saying why, and goes once it is back', () => explained(async () => {
    const last = records('keep-two')[0]!;
    await stopProc(cluster(), 's3');
    try {
      expect(kubectl(['delete', 'mbr', last.metadata.name, '-n', ns, '--wait=false']).code).toBe(0);
      const stuck = await eventually(() => {
        const r = getJson<MetadataBackupRecord>(['mbr', last.metadata.name, '-n', ns]);
        if (!r.status?.message) throw new Error('no message yet');
        return r;
      });
      expect(stuck.status?.message).toContain(`cannot forget snapshot ${last.spec.snapshotId} yet`);
      expect(stuck.status?.message).toContain('S3 endpoint unreachable');
      // The Warning follows the status it repeats.
      await eventually(() => expect(events(ns, last.metadata.name).find((e) => e.reason === 'ForgetFailed')?.type).toBe('Warning'), 10_000);
    } finally {
      await startProcAgain(cluster(), 's3');
    }
    // The record controller retries; the test patience covers its retry interval.
    await eventually(() => expect(kubectl(['get', 'mbr', last.metadata.name, '-n', ns]).code).not.toBe(0), 90_000);
    expect(snapshots()).toEqual([]);
  }));
});

describe('each failure gives Failed status, a Warning event and a failed count, and a later run succeeds once fixed', () => {
  interface Case {
    title: string;
    setup: () => Promise<void> | void;
    expect: string;
    fix: () => Promise<void> | void;
  }
  const name = (title: string) => title.replace(/[^a-z]+/gi, '-').replace(/-$/, '').toLowerCase().slice(0, 40);
  const cases: Case[] = [
    {
      title: 'etcd down',
      setup: async () => {
        const endpoint = await startExtraEtcd(cluster(), 'etcd-down');
        await stopExtra(cluster(), 'etcd-down');
        apply(policyYaml(ns, name('etcd down'), { etcdEndpoint: endpoint }));
      },
      expect: 'unreachable',
      fix: async () => void (await startExtraEtcd(cluster(), 'etcd-down')),
    },
    {
      title: 'wrong etcd CA',
      setup: () => {
        apply(etcdSecretYaml(ns, 'etcd-wrong-ca', { ca: 'ca.crt', cert: 'etcd/healthcheck-client.crt', key: 'etcd/healthcheck-client.key' }));
        apply(policyYaml(ns, name('wrong etcd CA'), { etcdCreds: 'etcd-wrong-ca' }));
      },
      expect: 'TLS with etcd',
      fix: () => apply(etcdSecretYaml(ns, 'etcd-wrong-ca', null)),
    },
    {
      title: 'wrong etcd client certificate',
      setup: () => {
        apply(etcdSecretYaml(ns, 'etcd-wrong-cert', { ca: 'etcd/ca.crt', cert: 'admin.crt', key: 'admin.key' }));
        apply(policyYaml(ns, name('wrong etcd client certificate'), { etcdCreds: 'etcd-wrong-cert' }));
      },
      expect: 'etcd',
      fix: () => apply(etcdSecretYaml(ns, 'etcd-wrong-cert', null)),
    },
    {
      title: 'missing etcd Secret',
      setup: () => apply(policyYaml(ns, name('missing etcd Secret'), { etcdCreds: 'etcd-not-yet' })),
      expect: 'etcd credentials Secret "etcd-not-yet" not found',
      fix: () => apply(etcdSecretYaml(ns, 'etcd-not-yet', null)),
    },
    {
      title: 'missing key in etcd Secret',
      setup: () => {
        apply(etcdSecretYaml(ns, 'etcd-no-key', null, ['client.key']));
        apply(policyYaml(ns, name('missing key in etcd Secret'), { etcdCreds: 'etcd-no-key' }));
      },
      expect: 'lacks key "client.key"',
      fix: () => apply(etcdSecretYaml(ns, 'etcd-no-key', null)),
    },
    {
      title: 'missing destination',
      setup: () => apply(policyYaml(ns, name('missing destination'), { destination: 'loc-later' })),
      expect: 'BackupLocation "loc-later" not found',
      fix: async () => {
        apply(locationYaml(ns, 'loc-later', { bucketName: bucket, credentials: 's3-creds' }));
        await locationInit(ns, 'loc-later', 'Completed');
      },
    },
    {
      title: 'failed destination',
      setup: () => {
        apply(locationYaml(ns, 'loc-bad', { bucketName: 'Bad_Bucket', credentials: 's3-creds' }));
        apply(policyYaml(ns, name('failed destination'), { destination: 'loc-bad' }));
      },
      expect: 'BackupLocation "loc-bad" is not ready: invalid bucket name',
      fix: async () => {
        patch('bl', 'loc-bad', { spec: { bucketName: bucket } });
        await locationInit(ns, 'loc-bad', 'Completed');
      },
    },
    {
      title: 'missing certsDir',
      setup: () => apply(policyYaml(ns, name('missing certsDir'), { certsDir: '/nonexistent/pki' })),
      expect: 'certsDir /nonexistent/pki does not exist',
      fix: () => patch('mbp', name('missing certsDir'), { spec: { certsDir: cluster().pki } }),
    },
    {
      title: 'S3 down',
      setup: async () => {
        apply(policyYaml(ns, name('S3 down')));
        await stopProc(cluster(), 's3');
      },
      expect: 'S3 endpoint unreachable',
      fix: () => startProcAgain(cluster(), 's3'),
    },
  ];

  test.each(cases)('$title', async (c) => {
    const n = name(c.title);
    await c.setup();
    let undone = false;
    try {
      await eventually(() => expect(policy(n).status?.nextBackupTime).toBeDefined());
      const before = await failedCount(n);
      const failed = await backupNow(ns, n);
      expect(failed.status?.backupStatus).toBe('Failed');
      expect(failed.status?.backupErrorMessage).toContain(c.expect);
      expect(failed.status?.snapshotId).toBeUndefined();
      const ev = await eventually(() => {
        const e = events(ns, n).find((x) => x.reason === BACKUP_FAILED);
        if (!e) throw new Error('no BackupFailed event');
        return e;
      });
      expect(ev.type).toBe('Warning');
      expect(await failedCount(n)).toBe(before + 1);
      await c.fix();
      undone = true;
    } finally {
      // The fault is undone whatever happened: a stopped S3 must not fail every test after this one.
      if (!undone) await c.fix();
    }
    const fixed = await backupNow(ns, n);
    expect(fixed.status?.backupErrorMessage).toBe('');
    expect(fixed.status?.backupStatus).toBe('Completed');
  });

  test.each([
    ['invalid schedule', '61 * * * *', 'invalid schedule "61 * * * *": Invalid value for minute: 61'],
    ['never-firing schedule', '0 0 31 2 *', 'schedule "0 0 31 2 *" never fires'],
  ])('%s', async (title, schedule, message) => {
    const n = name(title);
    apply(policyYaml(ns, n, { schedule }));
    const p = await eventually(() => {
      const x = policy(n);
      if (x.status?.backupStatus !== 'Failed') throw new Error(JSON.stringify(x.status));
      return x;
    });
    expect(p.status?.backupErrorMessage).toBe(message);
    expect(p.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'InvalidSchedule' });
    await eventually(async () => expect(await failedCount(n)).toBe(1));
    expect(events(ns, n).find((e) => e.reason === BACKUP_FAILED)?.type).toBe('Warning');

    patch('mbp', n, { spec: { schedule: '@daily' } });
    await eventually(() => expect(policy(n).status?.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('Scheduled'));
    expect((await backupNow(ns, n)).status?.backupStatus).toBe('Completed');
  });

  test('no credential appears in logs, events or status', () => {
    const leaks = (text: string) => [password, s3Keys.secretKey, pem('etcd/healthcheck-client.key').split('\n')[1]!].filter((s) => text.includes(s));
    expect(leaks(controller.logs)).toEqual([]);
    expect(leaks(kubectl(['get', 'events,mbp,mbr,bl', '-n', ns, '-o', 'json']).stdout)).toEqual([]);
  });
});

describe('a big etcd: interruption and a stalled upload', () => {
  let big: string;

  beforeAll(async () => {
    big = await startExtraEtcd(cluster(), 'etcd-big');
    fillEtcd(big, 120);
    apply(policyYaml(ns, 'big', { etcdEndpoint: big, certsDir: '' }));
  });

  async function waitForPhase(n: string, phases: string[]): Promise<void> {
    await eventually(() => {
      const phase = policy(n).status?.progress?.phase;
      if (!phase || !phases.includes(phase)) throw new Error(`phase ${phase}`);
    }, 30_000, 50);
  }

  test('while a backup runs, its progress shows in status', async () => {
    const r = kubectl(['annotate', 'mbp', 'big', '-n', ns, '--overwrite', `${BACKUP_NOW_ANNOTATION}=progress`]);
    expect(r.code).toBe(0);
    await waitForPhase('big', ['Snapshot', 'Upload']);
    const p = policy('big');
    expect(p.status?.backupStatus).toBe('Running');
    expect(p.status?.progress?.bytesDone).toBeGreaterThan(0);
    await eventually(() => expect(policy('big').status?.backupStatus).toBe('Completed'), 120_000);
    expect(policy('big').status?.progress).toBeUndefined();
  });

  test('S3 stopped mid-upload fails the backup; the next run succeeds despite the stale lock', async () => {
    // New data, so there is an upload to interrupt: a second backup of the same data sends restic's ~2 MB of changes,
    // which RGW took in about a second, done before S3 was stopped (the backup completed).
    refillEtcd(big, 120);
    const before = await failedCount('big');
    const r = kubectl(['annotate', 'mbp', 'big', '-n', ns, '--overwrite', `${BACKUP_NOW_ANNOTATION}=stall`]);
    expect(r.code).toBe(0);
    await waitForPhase('big', ['Upload']);
    await stopProc(cluster(), 's3');
    try {
      const failed = await eventually(() => {
        const x = policy('big');
        if (x.status?.backupStatus !== 'Failed') throw new Error(JSON.stringify(x.status));
        return x;
      }, 60_000);
      expect(failed.status?.backupErrorMessage).toContain('upload made no progress for 8 s');
      expect(await failedCount('big')).toBe(before + 1);
    } finally {
      await startProcAgain(cluster(), 's3');
    }
    // The killed upload could not remove its lock while S3 was down: a non-exclusive lock of a restic now dead.
    const locks = () => resticAt(bucket, password, ['list', 'locks', '--no-lock'], s3Keys).stdout.split('\n').filter(Boolean);
    const stale = locks();
    expect(stale.length).toBeGreaterThan(0);
    const ok = await backupNow(ns, 'big', 120_000);
    expect(ok.status?.backupStatus).toBe('Completed');
    // It does not outlive the next successful backup (stale by restic's rule: its process on this host is gone).
    await eventually(() => expect(locks().filter((l) => stale.includes(l))).toEqual([]), 30_000);
  });

  test('a controller killed mid-backup leaves no record without a snapshot; restarted, it reports the interruption and the next run succeeds', async () => {
    await controller.stop();
    // The container runtime kills every process of a container at once; setsid + a group kill plays that part here.
    controller = await ControllerProcess.start(ns, [...flags, ...FAILOVER_TIMINGS], { prefix: ['setsid'] });
    refillEtcd(big, 120); // an upload long enough to kill it in (see above)
    const r = kubectl(['annotate', 'mbp', 'big', '-n', ns, '--overwrite', `${BACKUP_NOW_ANNOTATION}=killed`]);
    expect(r.code).toBe(0);
    await waitForPhase('big', ['Upload']);
    await controller.killGroup();

    const snapshotIds = (JSON.parse(resticAt(bucket, password, ['snapshots', '--json', '--tag', 'big'], s3Keys).stdout || '[]') as { short_id: string }[])
      .map((s) => s.short_id);
    for (const rec of records('big')) expect(snapshotIds).toContain(rec.spec.snapshotId);

    controller = await ControllerProcess.start(ns, flags);
    const interrupted = await eventually(() => {
      const x = policy('big');
      if (x.status?.backupStatus !== 'Failed') throw new Error(JSON.stringify(x.status));
      return x;
    });
    expect(interrupted.status?.backupErrorMessage).toContain('interrupted');
    const ok = await backupNow(ns, 'big', 120_000);
    expect(ok.status?.backupStatus).toBe('Completed');
  });
});

describe('metrics', () => {
  test('after two successes and one failure: 3 / 2 / 1 and the gauges; after a restart the gauges are back before ready', async () => {
    apply(policyYaml(ns, 'metered', { schedule: '@daily', retainNumBackups: 5 }));
    await eventually(() => expect(policy('metered').status?.nextBackupTime).toBeTruthy());
    await backupNow(ns, 'metered');
    const second = await backupNow(ns, 'metered');
    patch('mbp', 'metered', { spec: { certsDir: '/nonexistent' } });
    expect((await backupNow(ns, 'metered')).status?.backupStatus).toBe('Failed');

    const label = { policyName: 'metered' };
    const m = await controller.metrics();
    expect(metricValue(m, 'kubedr_num_backups', label)).toBe(3);
    expect(metricValue(m, 'kubedr_num_successful_backups', label)).toBe(2);
    expect(metricValue(m, 'kubedr_num_failed_backups', label)).toBe(1);
    expect(metricValue(m, 'kubedr_backup_duration_seconds_count', label)).toBe(3);
    const gauges = (text: string) => ({
      lastSuccess: metricValue(text, 'kubedr_backup_last_success_timestamp_seconds', label),
      lastStatus: metricValue(text, 'kubedr_backup_last_status', label),
      nextRun: metricValue(text, 'kubedr_backup_next_run_timestamp_seconds', label),
      retained: metricValue(text, 'kubedr_backups_retained', label),
      etcdSize: metricValue(text, 'kubedr_etcd_snapshot_size_bytes', label),
      size: metricValue(text, 'kubedr_backup_size_bytes', label),
    });
    const g = gauges(m);
    expect(g.lastSuccess).toBeCloseTo(Date.parse(second.status!.backupTime!) / 1000, 0);
    expect(g.lastStatus).toBe(0);
    expect(g.nextRun).toBeGreaterThan(Date.now() / 1000);
    expect(g.retained).toBe(2);
    expect(g.etcdSize).toBeGreaterThan(0);
    expect(g.size).toBeGreaterThan(0);

    await controller.stop();
    controller = await ControllerProcess.start(ns, flags);
    await eventually(async () => expect((await controller.get('/readyz')).status).toBe(200), 30_000, 20);
    expect(gauges(await controller.metrics())).toEqual(g);
  });
});
