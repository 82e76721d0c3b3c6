import { describe, expect, test } from 'bun:test';
import { buildReport, formatReport, relative, type StatusInput } from '../../src/cli/status-report.ts';
import type { BackupLocation, KubeEvent, MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';

const now = new Date('2026-05-01T12:00:00Z');
const ago = (min: number) => new Date(now.getTime() - min * 60_000).toISOString();
const GV = 'kubedr.catalogicsoftware.com/v1alpha1';

const location = (name: string, status: BackupLocation['status'], namespace = 'kubedr-system'): BackupLocation =>
  ({ metadata: { name, namespace }, spec: { url: 'https://s3.example:9000', bucketName: `${name}-bucket`, credentials: 's3' }, status });
const policy = (name: string, status: MetadataBackupPolicy['status'], spec: Partial<MetadataBackupPolicy['spec']> = {}): MetadataBackupPolicy =>
  ({ metadata: { name, namespace: 'kubedr-system' }, spec: { destination: 'loc', schedule: '0 3 * * *', ...spec }, status });
const record = (id: string, pol: string, status: MetadataBackupRecord['status'] = {}): MetadataBackupRecord =>
  ({ metadata: { name: `mbr-${id}`, namespace: 'kubedr-system' }, spec: { snapshotId: id, policy: pol, backuploc: 'loc' }, status });
const warning = (name: string, kind: string, reason: string, message: string, minutesAgo: number, apiVersion = GV): KubeEvent => ({
  metadata: { name: `${name}.${minutesAgo}`, namespace: 'kubedr-system' }, type: 'Warning', reason, message, count: 2,
  involvedObject: { apiVersion, kind, name, namespace: 'kubedr-system' }, lastTimestamp: ago(minutesAgo),
});

function input(): StatusInput {
  return {
    namespace: 'kubedr-system', now,
    locations: [location('loc', { initStatus: 'Completed' }), location('broken', { initStatus: 'Failed', initErrorMessage: 'wrong password', initTime: ago(30) })],
    policies: [
      policy('daily', { backupStatus: 'Completed', backupTime: ago(5), snapshotId: 'bbbb2222', lastSuccessfulBackupTime: ago(5),
        nextBackupTime: new Date(now.getTime() + 3 * 3600_000).toISOString(), lastVerifiedTime: ago(4), lastVerifiedSnapshotId: 'bbbb2222' }),
      policy('edge', { backupStatus: 'Failed', backupTime: ago(2), backupErrorMessage: 'cannot reach etcd at https://10.0.0.9:2379: connection refused',
        lastSuccessfulBackupTime: ago(600),
        conditions: [{ type: 'LastBackupSucceeded', status: 'False', reason: 'BackupFailed', message: 'x', lastTransitionTime: ago(2) }] }, { suspend: true }),
    ],
    records: [record('aaaa1111', 'daily'), record('bbbb2222', 'daily', { verification: { result: 'Failed', time: ago(1), message: 'restored etcd has no kube-system' } }),
      { ...record('cccc3333', 'daily'), metadata: { name: 'mbr-cccc3333', namespace: 'kubedr-system', deletionTimestamp: ago(1) } }, record('dddd4444', 'edge')],
    events: [
      // The same failure as edge's status: shown once.
      warning('edge', 'MetadataBackupPolicy', 'BackupFailed', 'cannot reach etcd at https://10.0.0.9:2379: connection refused', 2),
      warning('daily', 'MetadataBackupPolicy', 'RetentionFailed', 'repository locked', 20),
      warning('daily', 'MetadataBackupPolicy', 'BackupFailed', 'too old', 25 * 60),
      warning('some-pod', 'Pod', 'BackOff', 'not ours', 3, 'v1'),
    ],
  };
}

describe('buildReport', () => {
  const r = buildReport(input());

  test('locations: ready or not, and why', () => {
    expect(r.locations.map((l) => [l.name, l.ready, l.status, l.message])).toEqual([['broken', false, 'Failed', 'wrong password'], ['loc', true, 'Completed', '']]);
  });

  test('policies: last backup, next run, verification, and the records retained (not those being deleted)', () => {
    expect(r.policies[0]).toMatchObject({ name: 'daily', lastBackupStatus: 'Completed', lastSnapshotId: 'bbbb2222', lastVerifiedTime: ago(4), records: 2, suspended: false });
    expect(r.policies[1]).toMatchObject({ name: 'edge', lastBackupStatus: 'Failed', lastSnapshotId: null, records: 1, suspended: true });
  });

  test('failures: current ones from status, our Warning events of the last 24 h, each once, newest first', () => {
    expect(r.failures.map((f) => [f.object, f.reason, f.source])).toEqual([
      ['MetadataBackupRecord/mbr-bbbb2222', 'BackupVerificationFailed', 'status'],
      ['MetadataBackupPolicy/edge', 'BackupFailed', 'status'],
      ['MetadataBackupPolicy/daily', 'RetentionFailed', 'event'],
      ['BackupLocation/broken', 'InitFailed', 'status'],
    ]);
  });
});

test('relative times as kubectl prints ages', () => {
  expect([relative(ago(0.5), now), relative(ago(90), now), relative(ago(3 * 24 * 60), now), relative(ago(-61), now), relative(null, now)])
    .toEqual(['30s ago', '1h ago', '3d ago', 'in 1h', '-']);
});

test('formatReport: plain columns, long messages cut, no escapes', () => {
  const text = formatReport(buildReport(input()), now);
  expect(text).toBe(`BACKUP LOCATIONS
NAME    READY  STATUS     BUCKET         MESSAGE
broken  no     Failed     broken-bucket  wrong password
loc     yes    Completed  loc-bucket     -

BACKUP POLICIES
NAME   LOCATION  SCHEDULE   NEXT RUN   LAST BACKUP  RESULT     SNAPSHOT  LAST SUCCESS  VERIFIED  RECORDS
daily  loc       0 3 * * *  in 3h      5m ago       Completed  bbbb2222  5m ago        4m ago    2
edge   loc       0 3 * * *  suspended  2m ago       Failed     -         10h ago       -         1

FAILURES (as the objects show them now, and Warning events of the last 24 h)
WHEN     OBJECT                             REASON                    MESSAGE
1m ago   MetadataBackupRecord/mbr-bbbb2222  BackupVerificationFailed  restored etcd has no kube-system
2m ago   MetadataBackupPolicy/edge          BackupFailed              cannot reach etcd at https://10.0.0.9:2379: connection refused
20m ago  MetadataBackupPolicy/daily         RetentionFailed           (2x) repository locked
30m ago  BackupLocation/broken              InitFailed                wrong password
`);
  expect(text).not.toContain('\u001b');
  const long = input();
  long.locations = [location('loc', { initStatus: 'Failed', initErrorMessage: `\u001b[31m${'x'.repeat(150)}\nmore` })];
  const line = formatReport(buildReport(long), now).split('\n').find((l) => l.startsWith('loc '))!;
  expect(line).toEndWith(`${'x'.repeat(99)}…`);
  expect(line).not.toContain('\u001b');
});

test('formatReport with -A has a namespace column; an empty namespace says so', () => {
  const all = buildReport({ ...input(), namespace: null, locations: [location('loc', { initStatus: 'Completed' }, 'team-a')], policies: [], records: [], events: [] });
  expect(formatReport(all, now)).toContain('NAMESPACE  NAME  READY');
  expect(formatReport(all, now)).toContain('BACKUP POLICIES\n  none in any namespace');
});

test('formatReport: a continuous policy has a line of its own: its state, the window from the oldest retained backup to the last stored change, its gaps', () => {
  const withContinuous = input();
  withContinuous.policies = [...withContinuous.policies, policy('pitr', {
    continuous: { state: 'Recording', lastStoredTime: ago(0.5), gaps: 1, message: 'stored revisions 10–20 (11 changes, 4000 bytes) in 300 ms',
      lastGap: `${ago(90)}: etcd compacted revisions 5–9 before they were stored` },
  }, { continuous: { enabled: true } })];
  withContinuous.records = [...withContinuous.records, record('eeee5555', 'pitr', { backupTime: ago(120) }), record('ffff6666', 'pitr', { backupTime: ago(60) }),
    { ...record('9999aaaa', 'pitr', { backupTime: ago(600) }), metadata: { name: 'mbr-9999aaaa', namespace: 'kubedr-system', deletionTimestamp: ago(1) } }];
  const report = buildReport(withContinuous);
  expect(report.policies.find((p) => p.name === 'pitr')?.continuous).toMatchObject({ restorableFrom: ago(120), lastGapTime: ago(90), gaps: 1 });
  const text = formatReport(report, now);
  expect(text).toContain('CONTINUOUS BACKUP (restorable from the oldest retained backup to the last stored change, except in gaps: kubedr snapshots lists them)\n' +
    'POLICY  STATE      RESTORABLE FROM  LAST STORED CHANGE  GAPS  LAST GAP  MESSAGE\n' +
    'pitr    Recording  2h ago           30s ago             1     1h ago    stored revisions 10–20 (11 changes, 4000 bytes) in 300 ms\n');
  // Policies without it: no such section.
  expect(formatReport(buildReport(input()), now)).not.toContain('CONTINUOUS BACKUP');
});
