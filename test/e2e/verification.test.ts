/**
 * Every backup proven by restoring it, on the test node: after a backup of the node's own etcd the controller reads it
 * back from S3, restores it into a throwaway etcd and checks it (record and policy status, event, metric). A backup
 * whose data in S3 was damaged afterwards (bytes flipped in its pack files) is caught by a scheduled verification
 * with a Warning event and the failure counter, and by `kubedr verify` with its own exit code.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import {
  ControllerProcess, apply, backupNow, cluster, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, events, eventually,
  getJson, kubectl, locationSecretYaml, locationYaml, metricValue, policyYaml, repoRoot, uniqueBucket, locationInit
} from '../support/e2e.ts';
import { damagePacks } from '../support/s3.ts';

let ns: string;
let controller: ControllerProcess;
const bucket = uniqueBucket('verify');
const password = `verify-pw-${crypto.randomUUID()}`;

const record = (name: string) => getJson<MetadataBackupRecord>(['mbr', name, '-n', ns]);
const policy = (name: string) => getJson<MetadataBackupPolicy>(['mbp', name, '-n', ns]);

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('verify');
  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  controller = await ControllerProcess.start(ns);
  await locationInit(ns, 'loc', 'Completed');
});

afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
});

describe('after each backup (the default)', () => {
  test('the backup is restored into a throwaway etcd and checked: record, policy, event and metric say so', async () => {
    apply(policyYaml(ns, 'node'));
    const p = await backupNow(ns, 'node');
    expect(p.status?.backupStatus).toBe('Completed');
    const v = await eventually(() => {
      const r = record(p.status!.mbrName!);
      if (!r.status?.verification) throw new Error('not verified yet');
      return r.status.verification;
    }, 90_000);
    expect(v.result).toBe('Succeeded');
    expect(v.revision).toBeGreaterThan(1);
    expect(v.keyCount).toBeGreaterThan(50);
    expect(v.message).toContain('restored into a throwaway etcd');
    await eventually(() => expect(policy('node').status?.lastVerifiedSnapshotId).toBe(p.status!.snapshotId!));
    // The backup's own status is untouched by its verification.
    expect(policy('node').status?.backupStatus).toBe('Completed');
    expect(events(ns, 'node').map((e) => [e.type, e.reason])).toContainEqual(['Normal', 'BackupVerified']);
    const m = await controller.metrics();
    expect(metricValue(m, 'kubedr_backup_last_verified_timestamp_seconds', { policyName: 'node' })).toBeGreaterThan(Date.now() / 1000 - 300);
    expect(metricValue(m, 'kubedr_backup_verification_failures_total', { policyName: 'node' })).toBe(0);
    // Nothing is left running or on disk: no etcd but the cluster's own and the test's extra ones.
    // Only this node's (its network namespace's): other test nodes on the machine may be verifying their own backups.
    const here = readlinkSync('/proc/self/ns/net');
    const left = (spawnSync('pgrep', ['-f', '--name verify'], { encoding: 'utf8' }).stdout ?? '').split('\n').filter(Boolean)
      .filter((pid) => { try { return readlinkSync(`/proc/${pid}/ns/net`) === here; } catch { return false; } });
    expect(left).toEqual([]);
  }, 120_000);
});

describe('after a restart', () => {
  test('a scheduled verification proves the newest backup, not an older one, and lastVerifiedTime names it', async () => {
    apply(policyYaml(ns, 'restarted'));
    // Scheduled verification that does not fire yet: the backups are taken, then the controller restarts.
    expect(kubectl(['patch', 'mbp', 'restarted', '-n', ns, '--type', 'merge', '-p',
      JSON.stringify({ spec: { verification: { mode: 'Schedule', schedule: '0 0 1 1 *' } } })]).code).toBe(0);
    const taken: string[] = [];
    for (let i = 0; i < 3; i++) {
      const p = await backupNow(ns, 'restarted');
      expect(p.status?.backupStatus).toBe('Completed');
      taken.push(p.status!.mbrName!);
    }
    await controller.stop();
    controller = await ControllerProcess.start(ns);
    expect(kubectl(['patch', 'mbp', 'restarted', '-n', ns, '--type', 'merge', '-p',
      JSON.stringify({ spec: { verification: { schedule: '* * * * *' } } })]).code).toBe(0);
    const newest = taken.at(-1)!;
    const v = await eventually(() => {
      const r = record(newest);
      if (!r.status?.verification) throw new Error(`not verified yet; verified: ${taken.filter((n) => record(n).status?.verification).join(', ') || 'none'}`);
      return r.status.verification;
    }, 150_000, 1000);
    expect(v.result).toBe('Succeeded');
    const st = policy('restarted').status!;
    expect(st.lastVerifiedSnapshotId).toBe(record(newest).spec.snapshotId);
    expect(Date.parse(st.lastVerifiedTime!)).toBeGreaterThanOrEqual(Date.parse(record(newest).status!.backupTime!));
    // The older backups were not proven in its place.
    expect(taken.slice(0, -1).map((n) => record(n).status?.verification?.result ?? 'none')).toEqual(['none', 'none']);
  }, 300_000);
});

describe('a backup damaged in S3 after it was taken', () => {
  let snapshotId: string;

  test('a scheduled verification finds it: Warning event, failure counter, record says why', async () => {
    apply(policyYaml(ns, 'damaged'));
    expect(kubectl(['patch', 'mbp', 'damaged', '-n', ns, '--type', 'merge', '-p',
      JSON.stringify({ spec: { verification: { mode: 'Schedule', schedule: '* * * * *' } } })]).code).toBe(0);
    const p = await backupNow(ns, 'damaged');
    snapshotId = p.status!.snapshotId!;
    // The data restic stored, damaged as a bad disk or a bug in the store would.
    expect(await damagePacks(bucket)).toBeGreaterThan(0);
    const v = await eventually(() => {
      const r = record(p.status!.mbrName!);
      if (r.status?.verification?.result !== 'Failed') throw new Error(JSON.stringify(r.status?.verification));
      return r.status.verification;
    }, 100_000, 1000);
    expect(v.message).toMatch(/^verifying backup \w+ failed: /);
    await eventually(() => expect(events(ns, 'damaged').map((e) => [e.type, e.reason])).toContainEqual(['Warning', 'BackupVerificationFailed']));
    expect(metricValue(await controller.metrics(), 'kubedr_backup_verification_failures_total', { policyName: 'damaged' })).toBeGreaterThanOrEqual(1);
    // A failed verification is not a failed backup. The policy may already be Running: once the repository is
    // repaired (below), a fresh backup is taken at once, and the CI run of 2026-12-06 read the status after it began.
    expect(['Completed', 'Running']).toContain(policy('damaged').status?.backupStatus ?? '');

    // What follows: the repository is read whole and repaired (damaged packs removed, intact data salvaged), the records
    // that lost data say so, the policy is told in plain words, and a new backup is taken at once, which restores.
    const damage = await eventually(() => {
      const e = events(ns, 'damaged').find((x) => x.reason === 'RepositoryDamaged');
      if (!e) throw new Error('no RepositoryDamaged event yet');
      return e;
    }, 120_000, 1000);
    console.log(`damage drill: ${damage.message}`);
    expect(damage.type).toBe('Warning');
    expect(damage.message).toMatch(/damaged pack file\(s\) removed after salvaging their intact data/);
    expect(damage.message).toContain(snapshotId);
    expect(record(p.status!.mbrName!).status?.damage?.message).toMatch(new RegExp(`^snapshot ${snapshotId} references data that was damaged.*does not restore`));
    expect(metricValue(await controller.metrics(), 'kubedr_backups_damaged', { policyName: 'damaged' })).toBeGreaterThanOrEqual(1);
    const fresh = await eventually(() => {
      const x = policy('damaged');
      if (x.status?.backupStatus !== 'Completed' || x.status.snapshotId === snapshotId) throw new Error(JSON.stringify(x.status));
      return x;
    }, 120_000, 1000);
    expect(fresh.status?.backupTrigger).toBe('OnDemand');
    // Its scheduled verification (every minute here) proves the new backup restores: it did not point at lost data.
    const proof = await eventually(() => {
      const v = record(fresh.status!.mbrName!).status?.verification;
      if (!v) throw new Error('not verified yet');
      return v;
    }, 150_000, 1000);
    expect(proof.result).toBe('Succeeded');
    expect(record(fresh.status!.mbrName!).status?.damage).toBeUndefined();
  }, 480_000);

  test('kubedr verify finds it too, and proves a sound backup', () => {
    const creds = join(cluster().dir, `verify-creds-${ns}.yaml`);
    writeFileSync(creds, kubectl(['get', 'secret', 's3-creds', '-n', ns, '-o', 'yaml']).stdout, { mode: 0o600 });
    const verify = (id: string) => spawnSync(process.execPath, [join(repoRoot, 'src/main.ts'), 'verify', id, '--url', cluster().s3Url,
      '--bucket', bucket, '--credentials', creds], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    const bad = verify(snapshotId);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/kubedr verify: /);
    const good = verify(policy('node').status!.snapshotId!);
    // The node policy's backup shares packs with the damaged one (deduplication), so it may be damaged too; if it
    // verifies, the output says what was proved.
    if (good.status === 0) expect(good.stdout).toMatch(/^Verified snapshot \w{8}: restores to an etcd at revision \d+ with \d+ keys/);
  }, 120_000);
});
