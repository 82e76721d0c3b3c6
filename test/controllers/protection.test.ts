/** spec.protection's decisions: the Protected condition from the bucket's answers, the retention it needs, refused prunes. */
import { expect, test } from 'bun:test';
import { protectionReasons as R } from '../../src/api/conditions.ts';
import { BUCKET_NOT_PROTECTED, BUCKET_PROTECTED, BUCKET_PROTECTION_UNKNOWN, RETENTION_TOO_SHORT } from '../../src/api/events.ts';
import type { BackupLocation } from '../../src/api/types.ts';
import {
  maintenanceCommand, neededRetentionDays, policyKeepsMs, protectedForMetric, protectionReport, refusedByProtection,
} from '../../src/controllers/protection.ts';
import type { BucketProtection } from '../../src/engine/bucket-protection.ts';
import { EngineError } from '../../src/engine/errors.ts';

const locked = (days: number, mode: 'GOVERNANCE' | 'COMPLIANCE' = 'COMPLIANCE'): BucketProtection =>
  ({ versioning: 'Enabled', objectLock: 'Enabled', retention: { mode, days }, unreadable: [] });
const unknown: BucketProtection = { versioning: 'Unknown', objectLock: 'Unknown', unreadable: ['versioning: AccessDenied (the keys lack s3:GetBucketVersioning)'] };
const now = new Date('2026-12-05T12:00:00Z');

test('ObjectLock expected, lock with a retention long enough: Protected=True ObjectLocked, status with mode and days, a Normal event', () => {
  const r = protectionReport({ expected: 'ObjectLock' }, locked(30), 10);
  expect(r.condition).toMatchObject({ status: 'True', reason: R.objectLocked });
  expect(r.status).toMatchObject({ versioning: 'Enabled', objectLock: 'Enabled', retentionMode: 'COMPLIANCE', retentionDays: 30, neededRetentionDays: 10 });
  expect(r.event).toMatchObject({ type: 'Normal', reason: BUCKET_PROTECTED });
  expect(r.condition.message).toContain('COMPLIANCE 30 days');
});

test('retention shorter than needed: still Protected=True, reason RetentionTooShort, a Warning naming both numbers', () => {
  const r = protectionReport({ expected: 'ObjectLock' }, locked(1, 'GOVERNANCE'), 5);
  expect(r.condition).toMatchObject({ status: 'True', reason: R.retentionTooShort });
  expect(r.event).toMatchObject({ type: 'Warning', reason: RETENTION_TOO_SHORT });
  expect(r.event.message).toContain('(1 days) is shorter than the 5 days');
  // Equal is enough; unknown need warns about nothing.
  expect(protectionReport({ expected: 'ObjectLock' }, locked(5), 5).condition.reason).toBe(R.objectLocked);
  expect(protectionReport({ expected: 'ObjectLock' }, locked(1), undefined).condition.reason).toBe(R.objectLocked);
});

test('a bucket without versioning: Protected=False NotVersioned and a Warning, whatever is expected', () => {
  const plain: BucketProtection = { versioning: 'Off', objectLock: 'Off', unreadable: [] };
  for (const expected of ['Versioning', 'ObjectLock'] as const) {
    const r = protectionReport({ expected }, plain, 3);
    expect(r.condition).toMatchObject({ status: 'False', reason: R.notVersioned });
    expect(r.event).toMatchObject({ type: 'Warning', reason: BUCKET_NOT_PROTECTED });
    expect(r.status).toMatchObject({ versioning: 'Off', objectLock: 'Off', retentionMode: 'None', retentionDays: 0 });
  }
  // Suspended versioning keeps old versions but new deletes destroy: not protected either.
  expect(protectionReport({ expected: 'Versioning' }, { versioning: 'Suspended', objectLock: 'Off', unreadable: [] }, 3).condition.status).toBe('False');
});

test('ObjectLock expected on a bucket that is only versioned, or locked without a default retention: Protected=False NotLocked', () => {
  const versioned: BucketProtection = { versioning: 'Enabled', objectLock: 'Off', unreadable: [] };
  expect(protectionReport({ expected: 'ObjectLock' }, versioned, 3).condition).toMatchObject({ status: 'False', reason: R.notLocked });
  const noRule: BucketProtection = { versioning: 'Enabled', objectLock: 'Enabled', unreadable: [] };
  const r = protectionReport({ expected: 'ObjectLock' }, noRule, 3);
  expect(r.condition).toMatchObject({ status: 'False', reason: R.notLocked });
  expect(r.condition.message).toContain('no default retention');
  // The same bucket is what Versioning asks for.
  expect(protectionReport({ expected: 'Versioning' }, versioned, 3).condition).toMatchObject({ status: 'True', reason: R.versioned });
});

test('settings the keys may not read: Protected=Unknown with the missing permissions, a Normal event, no Warning', () => {
  for (const expected of ['Versioning', 'ObjectLock'] as const) {
    const r = protectionReport({ expected }, unknown, 3);
    expect(r.condition).toMatchObject({ status: 'Unknown', reason: R.unknown });
    expect(r.condition.message).toContain('s3:GetBucketObjectLockConfiguration');
    expect(r.event).toMatchObject({ type: 'Normal', reason: BUCKET_PROTECTION_UNKNOWN });
    expect(r.status).toMatchObject({ versioning: 'Unknown', objectLock: 'Unknown' });
  }
  // Versioning readable and on, lock unreadable: ObjectLock stays unknown.
  const half: BucketProtection = { versioning: 'Enabled', objectLock: 'Unknown', unreadable: ['object lock: AccessDenied'] };
  expect(protectionReport({ expected: 'ObjectLock' }, half, 3).condition.status).toBe('Unknown');
});

test('the retention a policy needs is retainNumBackups intervals of its schedule', () => {
  expect(policyKeepsMs({ schedule: '0 2 * * *', retainNumBackups: 7 }, now)).toBe(7 * 86_400_000);
  expect(policyKeepsMs({ schedule: '*/10 * * * *', retainNumBackups: 3 }, now)).toBe(30 * 60_000);
  // Beyond 1000 firings the walk is extrapolated.
  expect(policyKeepsMs({ schedule: '* * * * *', retainNumBackups: 3000 }, now)).toBe(3000 * 60_000);
  expect(policyKeepsMs({ schedule: 'not a schedule' }, now)).toBeUndefined();
});

test('needed days: minRetentionDays when set, else the longest policy, rounded up; undefined without policies', () => {
  const policies = [{ schedule: '0 2 * * *', retainNumBackups: 7 }, { schedule: '0 * * * *', retainNumBackups: 30 }];
  expect(neededRetentionDays({ expected: 'ObjectLock' }, policies, now)).toBe(7);
  expect(neededRetentionDays({ expected: 'ObjectLock', minRetentionDays: 2 }, policies, now)).toBe(2);
  expect(neededRetentionDays({ expected: 'ObjectLock' }, [{ schedule: '0 * * * *', retainNumBackups: 30 }], now)).toBe(2);
  expect(neededRetentionDays({ expected: 'ObjectLock' }, [], now)).toBeUndefined();
});

test('a prune refused (AccessDenied) is expected only when the location declares protection; other failures never are', () => {
  const denied = new EngineError('AccessDenied', 'Access Denied.');
  expect(refusedByProtection({ expected: 'ObjectLock' }, denied)).toBe(true);
  expect(refusedByProtection(undefined, denied)).toBe(false);
  expect(refusedByProtection({ expected: 'ObjectLock' }, new EngineError('Unreachable', 'connection refused'))).toBe(false);
  expect(refusedByProtection({ expected: 'ObjectLock' }, new EngineError('Locked', 'repository is locked'))).toBe(false);
});

test('the maintenance command: a lifecycle rule for noncurrent versions after the retention, and a prune first when it was refused', () => {
  const loc = { spec: { url: 'https://s3.example.com/', bucketName: 'kubedr-prod', credentials: 'c', protection: { expected: 'ObjectLock' } },
    status: { protection: { retentionDays: 30, neededRetentionDays: 7 } } } as Pick<BackupLocation, 'spec' | 'status'>;
  const kept = maintenanceCommand(loc, false);
  expect(kept).toContain('aws s3api put-bucket-lifecycle-configuration --endpoint-url https://s3.example.com/ --bucket kubedr-prod');
  expect(kept).toContain('"NoncurrentVersionExpiration":{"NoncurrentDays":30}');
  expect(kept).not.toContain('restic');
  expect(maintenanceCommand(loc, true)).toStartWith('restic -r s3:https://s3.example.com/kubedr-prod prune with the maintenance keys');
});

test('the metric follows the Protected condition, only on locations declaring protection, and not while Unknown', () => {
  const loc = (protection: boolean, status?: 'True' | 'False' | 'Unknown') => ({
    spec: { url: 'https://s3.example.com', bucketName: 'b', credentials: 'c', ...(protection ? { protection: { expected: 'Versioning' as const } } : {}) },
    status: status ? { conditions: [{ type: 'Protected', status, reason: 'r', message: 'm', lastTransitionTime: '2026-12-05T12:00:00Z' }] } : {},
  });
  expect(protectedForMetric(loc(true, 'True'))).toBe(true);
  expect(protectedForMetric(loc(true, 'False'))).toBe(false);
  expect(protectedForMetric(loc(true, 'Unknown'))).toBeUndefined();
  expect(protectedForMetric(loc(true))).toBeUndefined();
  // A condition left from an earlier spec.protection counts for nothing once the field is gone.
  expect(protectedForMetric(loc(false, 'True'))).toBeUndefined();
});
