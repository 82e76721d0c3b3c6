import { describe, expect, test } from 'bun:test';
import { type ObjectVersion, parseVersions, planRecovery } from '../../src/engine/repository-recover.ts';

const at = (min: number) => new Date(Date.UTC(2026, 11, 5, 9, min));
let n = 0;
const v = (key: string, min: number, extra: Partial<ObjectVersion> = {}): ObjectVersion =>
  ({ key, versionId: `v${++n}`, lastModified: at(min), isLatest: false, deleteMarker: false, size: 10, ...extra });

describe('planRecovery', () => {
  const snapshot = v('snapshots/a', 1);
  const snapshotGone = v('snapshots/a', 30, { deleteMarker: true, isLatest: true });
  const indexOld = v('index/1', 1);
  const indexRemovedByPrune = v('index/1', 5, { deleteMarker: true, isLatest: true });
  const indexNew = v('index/2', 5);
  const indexNewGone = v('index/2', 30, { deleteMarker: true, isLatest: true });
  const config = v('config', 0, { isLatest: true });
  const lock = v('locks/x', 2, { isLatest: true });
  const attackerFile = v('snapshots/evil', 31, { isLatest: true });
  const all = [snapshot, snapshotGone, indexOld, indexRemovedByPrune, indexNew, indexNewGone, config, lock, attackerFile];

  test('each key comes back as its newest version at or before the time; deleted-then keys stay deleted', () => {
    const plan = planRecovery(all, at(10), { sameBucket: false });
    expect(plan.restore.map((x) => x.versionId).sort()).toEqual([config.versionId, indexNew.versionId, snapshot.versionId].sort());
  });

  test('in the same bucket, a key whose current version is already the chosen one is not copied again', () => {
    const plan = planRecovery(all, at(10), { sameBucket: true });
    expect(plan.restore.map((x) => x.key).sort()).toEqual(['index/2', 'snapshots/a']);
    expect(plan.unchanged).toBe(1);
  });

  test('lock files are never brought back, so the recovered repository opens without unlock', () => {
    expect(planRecovery(all, at(10), { sameBucket: false }).restore.some((x) => x.key.startsWith('locks/'))).toBe(false);
  });

  test('objects written after the time are reported, not deleted', () => {
    expect(planRecovery(all, at(10), { sameBucket: true }).laterOnly).toEqual(['snapshots/evil']);
  });

  test('a time before the repository existed brings nothing back', () => {
    expect(planRecovery(all, new Date(Date.UTC(2026, 0, 1)), { sameBucket: false }).restore).toEqual([]);
  });
});

test('parseVersions reads versions and delete markers of a ListObjectVersions page', () => {
  const xml = `<?xml version="1.0"?><ListVersionsResult><IsTruncated>false</IsTruncated>
<Version><Key>data/ab/a&amp;b</Key><VersionId>111</VersionId><IsLatest>false</IsLatest><LastModified>2026-12-05T09:01:00.000Z</LastModified><Size>42</Size></Version>
<DeleteMarker><Key>data/ab/a&amp;b</Key><VersionId>222</VersionId><IsLatest>true</IsLatest><LastModified>2026-12-05T09:30:00.000Z</LastModified></DeleteMarker>
</ListVersionsResult>`;
  const [a, b] = parseVersions(xml);
  expect(a).toEqual({ key: 'data/ab/a&b', versionId: '111', lastModified: new Date('2026-12-05T09:01:00Z'), isLatest: false, deleteMarker: false, size: 42 });
  expect(b!.deleteMarker).toBe(true);
  expect(b!.isLatest).toBe(true);
});
