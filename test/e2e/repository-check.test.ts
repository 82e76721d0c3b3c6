/**
 * Damage no restore has touched is found by the scheduled check of a location's data (restic check --read-data-subset,
 * off the backup path), on the test node: a backup whose packs were damaged in S3 afterwards, with verification off,
 * is found by the check, the repository repaired, the record marked, the policy told, and a new backup taken.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import {
  ControllerProcess, apply, backupNow, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, events, eventually,
  getJson, kubectl, locationInit, locationSecretYaml, locationYaml, policyYaml, uniqueBucket,
} from '../support/e2e.ts';
import { damagePacks } from '../support/s3.ts';

let ns: string;
let controller: ControllerProcess;
const bucket = uniqueBucket('check');
const password = `check-pw-${crypto.randomUUID()}`;

beforeAll(async () => {
  ensureCrds();
  ns = createNamespace('check');
  apply(locationSecretYaml(ns, { name: 's3-creds', password }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' }));
  // Every 15 s, all of the data (a real install: daily, 5%).
  controller = await ControllerProcess.start(ns, ['--check-interval', '15s', '--check-read-data-subset', '100%']);
  await locationInit(ns, 'loc', 'Completed');
});

afterAll(async () => {
  await controller?.stop();
  deleteNamespace(ns);
});

test('a damaged backup that nothing verifies is found by the scheduled check, repaired, marked, and backed up again', async () => {
  const location = () => getJson<BackupLocation>(['bl', 'loc', '-n', ns]);
  // Passed first: the check runs on its own, and says so in the location's status.
  await eventually(() => expect(location().status?.lastCheckResult).toBe('Passed'), 60_000, 1000);
  expect(location().status?.lastCheckMessage).toMatch(/^read 100% of the data in [\d.]+ s: no errors$/);

  apply(policyYaml(ns, 'unverified'));
  expect(kubectl(['patch', 'mbp', 'unverified', '-n', ns, '--type', 'merge', '-p', JSON.stringify({ spec: { verification: { mode: 'Never' } } })]).code).toBe(0);
  const p = await backupNow(ns, 'unverified');
  const snapshotId = p.status!.snapshotId!;
  expect(await damagePacks(bucket)).toBeGreaterThan(0);

  await eventually(() => expect(location().status?.lastCheckResult).toBe('Damaged'), 90_000, 1000);
  expect(location().status?.lastCheckMessage).toMatch(/error\(s\) .*the whole repository was read and repaired/);
  const damage = await eventually(() => {
    const e = events(ns, 'unverified').find((x) => x.reason === 'RepositoryDamaged');
    if (!e) throw new Error('no RepositoryDamaged event yet');
    return e;
  }, 90_000, 1000);
  expect(damage.message).toContain(snapshotId);
  expect(getJson<MetadataBackupRecord>(['mbr', p.status!.mbrName!, '-n', ns]).status?.damage?.message).toContain('does not restore');
  const fresh = await eventually(() => {
    const x = getJson<MetadataBackupPolicy>(['mbp', 'unverified', '-n', ns]);
    if (x.status?.backupStatus !== 'Completed' || x.status.snapshotId === snapshotId) throw new Error(JSON.stringify(x.status));
    return x;
  }, 120_000, 1000);
  // The next check: no damaged pack any more, but the marked backup still references lost data; it says so, and tells
  // nobody again (one RepositoryDamaged event), nor backs up again.
  await eventually(() => {
    const st = location().status;
    expect(Date.parse(st?.lastCheckTime ?? '')).toBeGreaterThan(Date.parse(fresh.status?.backupTime ?? ''));
    expect(st?.lastCheckMessage).toContain(`no damaged pack, but 1 backup(s) reference lost data and do not restore (${snapshotId}`);
  }, 90_000, 1000);
  expect(events(ns, 'unverified').filter((x) => x.reason === 'RepositoryDamaged').map((e) => e.count ?? 1)).toEqual([1]);
  expect(getJson<MetadataBackupPolicy>(['mbp', 'unverified', '-n', ns]).status?.snapshotId).toBe(fresh.status?.snapshotId);
  // Deleting that record forgets its snapshot: the repository reads clean again.
  expect(kubectl(['delete', 'mbr', p.status!.mbrName!, '-n', ns]).code).toBe(0);
  const deletedAt = Date.now();
  await eventually(() => {
    const st = location().status;
    expect(Date.parse(st?.lastCheckTime ?? '')).toBeGreaterThan(deletedAt);
    expect(st?.lastCheckResult).toBe('Passed');
  }, 90_000, 1000);
}, 480_000);
