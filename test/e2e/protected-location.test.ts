/**
 * A BackupLocation declaring spec.protection, on the real RGW. A bucket with object lock (GOVERNANCE, one day) whose
 * owner lets the controller's keys write, delete current objects and read the bucket's settings (the recipe of
 * docs/immutable-backups.md): the location reports versioning and lock with their days (Protected=True); backups,
 * records, retention and verification work; the prune after retention is reported as left to maintenance, with the
 * lifecycle command, and no PruneFailed; the bucket kept the versions. A location declaring protection on a plain
 * bucket shows Protected=False with a Warning; one whose keys may not read the settings shows Protected=Unknown, no Warning.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { PROTECTED, protectionReasons } from '../../src/api/conditions.ts';
import { BUCKET_NOT_PROTECTED, BUCKET_PROTECTED, BUCKET_PROTECTION_UNKNOWN, PRUNE_FAILED, PRUNE_LEFT_TO_MAINTENANCE } from '../../src/api/events.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import {
  ControllerProcess, apply, backupNow, createNamespace, deleteNamespace, ensureCrds, etcdSecretYaml, eventually, events, getJson,
  locationInit, locationSecretYaml, locationYaml, policyYaml, resticAt, uniqueBucket,
} from '../support/e2e.ts';
import { createS3User, newS3Keys, s3Request } from '../support/s3.ts';

const owner = newS3Keys('protown');
const writer = newS3Keys('protctl');
/** Controller keys as the recipe gave them before the two setting reads were in it. */
const noReads = newS3Keys('protnr');
const bucket = uniqueBucket('protected');
const plainBucket = uniqueBucket('unprotected');
const password = `prot-pw-${crypto.randomUUID()}`;
let ns: string;
let controller: ControllerProcess | undefined;

const enc = (s: string) => new TextEncoder().encode(s);
async function ok(res: Response, what: string) {
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
}
const location = (name: string) => getJson<BackupLocation>(['bl', name, '-n', ns]);
const condition = (name: string) => location(name).status?.conditions?.find((c) => c.type === PROTECTED);
const records = () => getJson<{ items: MetadataBackupRecord[] }>(['mbr', '-n', ns]).items.filter((r) => r.spec.policy === 'p');

/** On failure, what the controller did, so a red run says which check and why. */
function explain<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    console.error(JSON.stringify({ loc: location('loc').status, events: events(ns).map((e) => `${e.type} ${e.reason}: ${e.message}`) }, null, 1));
    throw err;
  }
}

beforeAll(async () => {
  ensureCrds();
  createS3User(owner);
  createS3User(writer);
  createS3User(noReads);
  // The owner's side of the recipe: object lock (versioning with it), a default retention, and a policy letting the
  // controller's user write, delete current objects and read the bucket's versioning and lock settings.
  await ok(await s3Request('PUT', `/${bucket}`, { keys: owner, headers: { 'x-amz-bucket-object-lock-enabled': 'true' } }), 'create bucket');
  await ok(await s3Request('PUT', `/${bucket}`, { keys: owner, query: { 'object-lock': '' }, body: enc('<ObjectLockConfiguration><ObjectLockEnabled>Enabled' +
    '</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>') }), 'object lock');
  const grant = (user: string, actions: string[]) => ({
    Effect: 'Allow', Principal: { AWS: [`arn:aws:iam:::user/${user.toLowerCase()}`] }, Action: actions,
    Resource: [`arn:aws:s3:::${bucket}`, `arn:aws:s3:::${bucket}/*`],
  });
  const policy = { Version: '2012-10-17', Statement: [
    grant(writer.accessKey, ['s3:GetObject', 's3:PutObject', 's3:ListBucket', 's3:DeleteObject', 's3:GetBucketLocation',
      's3:GetBucketVersioning', 's3:GetBucketObjectLockConfiguration']),
    grant(noReads.accessKey, ['s3:GetObject', 's3:PutObject', 's3:ListBucket', 's3:DeleteObject', 's3:GetBucketLocation']),
    grant(owner.accessKey, ['s3:GetObject', 's3:GetObjectVersion', 's3:PutObject', 's3:ListBucket', 's3:ListBucketVersions', 's3:GetBucketVersioning']),
  ] };
  await ok(await s3Request('PUT', `/${bucket}`, { keys: owner, query: { policy: '' }, body: enc(JSON.stringify(policy)) }), 'bucket policy');

  ns = createNamespace('protected');
  apply(locationSecretYaml(ns, { name: 's3-creds', password, ...writer }));
  apply(locationSecretYaml(ns, { name: 'node-creds', password }));
  apply(locationSecretYaml(ns, { name: 'no-reads', password, ...noReads }));
  apply(etcdSecretYaml(ns, 'etcd-creds'));
  apply(`${locationYaml(ns, 'loc', { bucketName: bucket, credentials: 's3-creds' })}  protection: { expected: ObjectLock, minRetentionDays: 1 }\n`);
  apply(`${locationYaml(ns, 'plain', { bucketName: plainBucket, credentials: 'node-creds' })}  protection: { expected: Versioning }\n`);
  apply(policyYaml(ns, 'p', { retainNumBackups: 1 }));
  controller = await ControllerProcess.start(ns, ['--prune-after-forgets', '1']);
  await locationInit(ns, 'loc');
  await locationInit(ns, 'plain');
}, 180_000);

afterAll(async () => {
  await controller?.stop();
  if (ns) deleteNamespace(ns);
});

test('the protected location reports versioning, object lock and its retention days: Protected=True', async () => {
  await eventually(() => expect(condition('loc')?.status).toBe('True'));
  explain(() => {
    expect(condition('loc')).toMatchObject({ status: 'True', reason: protectionReasons.objectLocked });
    expect(location('loc').status?.protection).toMatchObject({
      versioning: 'Enabled', objectLock: 'Enabled', retentionMode: 'GOVERNANCE', retentionDays: 1, neededRetentionDays: 1,
    });
    expect(events(ns, 'loc').find((e) => e.reason === BUCKET_PROTECTED)?.type).toBe('Normal');
  });
});

test('backups, records, retention and verification work; the prune is left to maintenance with its command, and no PruneFailed', async () => {
  const first = await backupNow(ns, 'p', 90_000);
  expect(first.status?.backupStatus).toBe('Completed');
  const second = await backupNow(ns, 'p', 90_000);
  expect(second.status?.backupStatus).toBe('Completed');
  // Retention keeps one: the first backup's record goes and its snapshot is forgotten, which makes a prune due at once.
  await eventually(() => expect(records().map((r) => r.spec.snapshotId)).toEqual([second.status!.snapshotId!]), 60_000);
  const left = await eventually(() => {
    const e = events(ns, 'loc').find((x) => x.reason === PRUNE_LEFT_TO_MAINTENANCE);
    if (!e) throw new Error('no PruneLeftToMaintenance event yet');
    return e;
  }, 90_000, 1000);
  explain(() => {
    expect(left.type).toBe('Normal');
    expect(left.message).toContain('versioning Enabled, object lock Enabled, default retention GOVERNANCE 1 days');
    expect(left.message).toContain(`aws s3api put-bucket-lifecycle-configuration --endpoint-url ${location('loc').spec.url} --bucket ${bucket}`);
    expect(location('loc').status?.lastPruneMessage).toBe(left.message);
    expect(location('loc').status?.lastPruneTime).toBeString();
  });
  // The repository as restic sees it holds the kept backup only; the bucket kept every version behind delete markers.
  const snaps = JSON.parse(resticAt(bucket, password, ['snapshots', '--json', '--no-lock'], writer).stdout) as { id: string }[];
  expect(snaps.length).toBe(1);
  expect(snaps[0]!.id).toStartWith(second.status!.snapshotId!);
  const versions = await (await s3Request('GET', `/${bucket}`, { keys: owner, query: { versions: '' } })).text();
  expect(versions).toContain('<DeleteMarker>');
  // Backups and their verification go on after the prune.
  const third = await backupNow(ns, 'p', 90_000);
  expect(third.status?.backupStatus).toBe('Completed');
  await eventually(() => expect(getJson<MetadataBackupPolicy>(['mbp', 'p', '-n', ns]).status?.lastVerifiedSnapshotId).toBe(third.status!.snapshotId!), 120_000, 1000);
  await eventually(() => expect(records().map((r) => r.spec.snapshotId)).toEqual([third.status!.snapshotId!]), 60_000);
  explain(() => {
    const warnings = events(ns).filter((e) => e.type === 'Warning' && e.involvedObject.name !== 'plain');
    expect(warnings.map((e) => `${e.reason}: ${e.message}`)).toEqual([]);
    expect(events(ns).some((e) => e.reason === PRUNE_FAILED)).toBe(false);
  });
  // Nothing secret in what a user reads.
  const shown = JSON.stringify([location('loc'), events(ns)]);
  for (const secret of [writer.secretKey, owner.secretKey, password]) expect(shown).not.toContain(secret);
}, 420_000);

test('a location declaring protection on a bucket without versioning shows Protected=False and a Warning event', async () => {
  await eventually(() => expect(condition('plain')?.status).toBe('False'));
  explain(() => {
    expect(condition('plain')?.reason).toBe(protectionReasons.notVersioned);
    expect(location('plain').status?.protection).toMatchObject({ versioning: 'Off', objectLock: 'Off', retentionDays: 0 });
    // Not a failure: the repository is ready and backups could use it.
    expect(location('plain').status?.initStatus).toBe('Completed');
    const warning = events(ns, 'plain').find((e) => e.reason === BUCKET_NOT_PROTECTED);
    expect(warning?.type).toBe('Warning');
    expect(warning?.message).toContain('versioning Off');
  });
});

test('keys that may not read the bucket\'s settings: Protected=Unknown naming the missing permissions, a Normal event, the location ready', async () => {
  // The same repository, opened with the other keys once it exists (the first location made it).
  apply(`${locationYaml(ns, 'noread', { bucketName: bucket, credentials: 'no-reads' })}  protection: { expected: ObjectLock }\n`);
  await locationInit(ns, 'noread');
  await eventually(() => expect(condition('noread')?.status).toBe('Unknown'));
  explain(() => {
    expect(condition('noread')?.reason).toBe(protectionReasons.unknown);
    expect(condition('noread')?.message).toContain('AccessDenied (the keys lack s3:GetBucketVersioning)');
    expect(location('noread').status?.protection).toMatchObject({ versioning: 'Unknown', objectLock: 'Unknown' });
    expect(events(ns, 'noread').map((e) => `${e.type} ${e.reason}`)).toContain(`Normal ${BUCKET_PROTECTION_UNKNOWN}`);
    expect(events(ns, 'noread').filter((e) => e.type === 'Warning')).toEqual([]);
  });
});
