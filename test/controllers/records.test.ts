import { describe, expect, test } from 'bun:test';
import { SNAPSHOT_FORGOTTEN_ANNOTATION } from '../../src/api/group.ts';
import type { MetadataBackupRecord } from '../../src/api/types.ts';
import { newRecord, newestRecord, newestSnapshot } from '../../src/controllers/records.ts';

const record = (snapshotId: string, backupTime: string, more: { policy?: string; location?: string } = {}): MetadataBackupRecord =>
  newRecord({ namespace: 'ns', policy: more.policy ?? 'daily', location: more.location ?? 'loc', snapshotId, status: { backupTime } });

describe('newestSnapshot (the parent of the next backup)', () => {
  test('is the snapshot of the policy\'s newest record at that location', () => {
    const records = [record('aaaaaaaa', '2026-11-01T00:00:00Z'), record('cccccccc', '2026-11-03T00:00:00Z'), record('bbbbbbbb', '2026-11-02T00:00:00Z'),
      record('dddddddd', '2026-11-04T00:00:00Z', { policy: 'other' }), record('eeeeeeee', '2026-11-05T00:00:00Z', { location: 'elsewhere' })];
    expect(newestSnapshot(records, 'ns', 'daily', 'loc')).toBe('cccccccc');
    expect(newestSnapshot(records, 'other-ns', 'daily', 'loc')).toBeUndefined();
  });

  test('skips records whose snapshot is going, gone or damaged: being deleted, forgotten by retention, flagged missing, damaged', () => {
    const deleting = { ...record('cccccccc', '2026-11-03T00:00:00Z'), metadata: { ...record('cccccccc', '').metadata, deletionTimestamp: '2026-11-04T00:00:00Z' } };
    const forgotten = record('dddddddd', '2026-11-04T00:00:00Z');
    forgotten.metadata.annotations = { [SNAPSHOT_FORGOTTEN_ANNOTATION]: 'true' };
    const missing = record('eeeeeeee', '2026-11-05T00:00:00Z');
    missing.status!.conditions = [{ type: 'SnapshotAvailable', status: 'False', reason: 'SnapshotMissing', message: '', lastTransitionTime: '2026-11-06T00:00:00Z' }];
    const damaged = record('ffffffff', '2026-11-06T00:00:00Z');
    damaged.status!.damage = { time: '2026-11-07T00:00:00Z', message: 'snapshot ffffffff references data that was damaged' };
    expect(newestSnapshot([record('aaaaaaaa', '2026-11-01T00:00:00Z'), deleting, forgotten, missing, damaged], 'ns', 'daily', 'loc')).toBe('aaaaaaaa');
  });
});

describe('newestRecord (what a scheduled verification proves)', () => {
  test('the newest by backupTime; one whose status is not written yet counts by its creation, never as the oldest', () => {
    const older = record('aaaaaaaa', '2026-11-01T00:00:00Z');
    const newer = record('bbbbbbbb', '2026-11-02T00:00:00Z');
    expect(newestRecord([newer, older], 'ns', 'daily')?.spec.snapshotId).toBe('bbbbbbbb');
    const unwritten = newRecord({ namespace: 'ns', policy: 'daily', location: 'loc', snapshotId: 'cccccccc', status: {} });
    unwritten.metadata.creationTimestamp = '2026-11-03T00:00:00Z';
    expect(newestRecord([older, unwritten, newer], 'ns', 'daily')?.spec.snapshotId).toBe('cccccccc');
    delete unwritten.metadata.creationTimestamp;
    expect(newestRecord([older, newer, unwritten], 'ns', 'daily')?.spec.snapshotId).toBe('cccccccc');
    expect(newestRecord([older], 'ns', 'other')).toBeUndefined();
  });
});
