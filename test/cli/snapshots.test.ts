import { describe, expect, test } from 'bun:test';
import { continuousWindows, formatTable, formatWindows, humanBytes } from '../../src/cli/snapshots.ts';

test('humanBytes', () => {
  expect([0, 1023, 1536, 5 * 1024 ** 3].map(humanBytes)).toEqual(['0 B', '1023 B', '1.5 KiB', '5.0 GiB']);
});

test('formatTable aligns columns and shows - for unknown sizes', () => {
  const rows = [
    { id: 'a'.repeat(64), shortId: 'aaaaaaaa', time: '2026-11-25T03:00:00.123456789Z', policy: 'daily', cluster: 'prod (4f1c0a9e)',
      namespace: 'kubedr-system', host: 'cp-1', size: 2048, tags: ['daily'] },
    { id: 'b'.repeat(64), shortId: 'bbbbbbbb', time: '2026-11-24T03:00:00Z', policy: 'hourly-etcd', cluster: '-', namespace: '', host: 'cp-2', tags: ['hourly-etcd'] },
  ];
  expect(formatTable(rows)).toBe(
    'TIME                  ID        POLICY       CLUSTER          NAMESPACE      HOST  SIZE\n' +
    '2026-11-25T03:00:00Z  aaaaaaaa  daily        prod (4f1c0a9e)  kubedr-system  cp-1  2.0 KiB\n' +
    '2026-11-24T03:00:00Z  bbbbbbbb  hourly-etcd  -                -              cp-2  -\n');
});

describe('continuous windows', () => {
  const tags = (first: string, more: string[] = []) => [first, 'kubedr-cluster-id=c1', 'kubedr-cluster=prod', 'kubedr-namespace=kubedr', ...more];
  const snap = (id: string, time: string, t: string[]) => ({ id, shortId: id.slice(0, 8), time, hostname: 'h', tags: t, paths: [] });
  const all = [
    snap('full1', '2026-12-04T10:00:00Z', tags('etcd', ['kubedr-etcd-revision=100'])),
    snap('cs1', '2026-12-04T10:01:00Z', tags('kubedr-changes=etcd', ['kubedr-revisions=101-150', `kubedr-changes-from=${Date.parse('2026-12-04T10:00:10Z')}`, `kubedr-changes-to=${Date.parse('2026-12-04T10:00:50Z')}`])),
    snap('full2', '2026-12-04T11:00:00Z', tags('etcd', ['kubedr-etcd-revision=400'])),
    snap('cs2', '2026-12-04T11:01:00Z', tags('kubedr-changes=etcd', ['kubedr-revisions=401-420', `kubedr-changes-from=${Date.parse('2026-12-04T11:00:10Z')}`, `kubedr-changes-to=${Date.parse('2026-12-04T11:00:40Z')}`])),
    snap('other', '2026-12-04T11:00:00Z', tags('daily', ['kubedr-etcd-revision=7'])),
  ];

  test('per continuous policy: its windows and the gap between chains that do not meet; policies without change sets are left out', () => {
    const w = continuousWindows(all);
    expect(w).toEqual([{ policy: 'etcd', cluster: 'prod (c1)', namespace: 'kubedr', changeSets: 2, lastStoredRevision: 420,
      windows: [{ from: '2026-12-04T10:00:00Z', to: '2026-12-04T10:00:50Z' }, { from: '2026-12-04T11:00:00Z', to: '2026-12-04T11:00:40Z' }],
      gaps: [{ from: '2026-12-04T10:00:50Z', to: '2026-12-04T11:00:00Z' }] }]);
    expect(formatWindows(w)).toBe('Continuous backup of policy etcd (cluster prod (c1), namespace kubedr): 2 change sets, up to revision 420\n' +
      '  restorable 2026-12-04T10:00:00Z – 2026-12-04T10:00:50Z\n  restorable 2026-12-04T11:00:00Z – 2026-12-04T11:00:40Z\n' +
      '  gap        2026-12-04T10:00:50Z – 2026-12-04T11:00:00Z: no restore reaches it\n');
    expect(continuousWindows(all, 'daily')).toEqual([]);
    expect(continuousWindows(all, undefined, 'staging')).toEqual([]);
  });
});
