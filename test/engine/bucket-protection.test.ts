/** A bucket's versioning and object lock from S3's answers, as RGW 16.2 gave them (measured on the test node's RGW). */
import { expect, test } from 'bun:test';
import { bucketProtection, parseObjectLock, parseVersioning } from '../../src/engine/bucket-protection.ts';

const xml = '<?xml version="1.0" encoding="UTF-8"?>';
const denied = { status: 403, body: `${xml}<Error><Code>AccessDenied</Code><Message></Message><BucketName>b</BucketName></Error>` };
const lock = (rule: string) => ({ status: 200, body: `${xml}<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>${rule}</ObjectLockConfiguration>` });

test('versioning: Enabled, Suspended, and the empty answer of a bucket that never had it (Off)', () => {
  const v = (s: string) => ({ status: 200, body: `${xml}<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${s}</VersioningConfiguration>` });
  expect(parseVersioning(v('<Status>Enabled</Status><MfaDelete>Disabled</MfaDelete>')).state).toBe('Enabled');
  expect(parseVersioning(v('<Status>Suspended</Status>')).state).toBe('Suspended');
  expect(parseVersioning(v('')).state).toBe('Off');
});

test('object lock: the default retention in days, years counted as 365 days; none without a rule', () => {
  expect(parseObjectLock(lock('<Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule>')))
    .toEqual({ state: 'Enabled', retention: { mode: 'GOVERNANCE', days: 1 } });
  expect(parseObjectLock(lock('<Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Years>2</Years></DefaultRetention></Rule>')))
    .toEqual({ state: 'Enabled', retention: { mode: 'COMPLIANCE', days: 730 } });
  expect(parseObjectLock(lock(''))).toEqual({ state: 'Enabled' });
});

test('a bucket without object lock answers 404 ObjectLockConfigurationNotFoundError: Off, not Unknown', () => {
  const notFound = { status: 404, body: `${xml}<Error><Code>ObjectLockConfigurationNotFoundError</Code><Message></Message></Error>` };
  expect(parseObjectLock(notFound)).toEqual({ state: 'Off' });
  // A missing bucket is another 404: nothing is known about its lock.
  expect(parseObjectLock({ status: 404, body: `${xml}<Error><Code>NoSuchBucket</Code></Error>` }).state).toBe('Unknown');
});

test('keys that may not read the settings (the recipe\'s controller keys: 403 AccessDenied) give Unknown, saying which permission is missing', () => {
  const p = bucketProtection(denied, denied);
  expect(p.versioning).toBe('Unknown');
  expect(p.objectLock).toBe('Unknown');
  expect(p.unreadable).toEqual([
    'versioning: AccessDenied (the keys lack s3:GetBucketVersioning)',
    'object lock: AccessDenied (the keys lack s3:GetBucketObjectLockConfiguration)',
  ]);
});

test('no answer at all (endpoint away) is Unknown with the cause', () => {
  const p = bucketProtection({ status: 0, body: '', error: 'Unable to connect' }, lock('<Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>3</Days></DefaultRetention></Rule>'));
  expect(p).toEqual({ versioning: 'Unknown', objectLock: 'Enabled', retention: { mode: 'GOVERNANCE', days: 3 }, unreadable: ['versioning: Unable to connect'] });
});
