import { expect, test } from 'bun:test';
import { formatTable, humanBytes } from '../../src/cli/snapshots.ts';

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
