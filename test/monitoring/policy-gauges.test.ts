/**
 * Gauges derived at scrape time: the most recent scheduled run time at or before now (the missed-backup alert),
 * the certificate expiries of each policy's newest backup, and the outcome of the latest verification (the
 * failed-verification alert).
 */
import { expect, test } from 'bun:test';
import type { MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import { policyGauges } from '../../src/metrics/policy-gauges.ts';
import { createMetrics } from '../../src/metrics/registry.ts';

const policy = (name: string, schedule: string, extra: Partial<MetadataBackupPolicy['spec']> = {}, created = '2024-03-01T00:00:00Z') =>
  ({
    metadata: { name, namespace: 'ns', creationTimestamp: created },
    spec: { destination: 'loc', schedule, ...extra },
  }) as MetadataBackupPolicy;

const at = (iso: string) => Date.parse(iso) / 1000;

test('previousRun is the latest slot at or before now, for any schedule', () => {
  const now = new Date('2024-03-05T10:20:00Z');
  const g = policyGauges([policy('hourly', '0 * * * *'), policy('daily', '30 2 * * *'), policy('exact', '20 10 * * *')], [], now);
  expect(g.map((x) => x.previousRun)).toEqual([at('2024-03-05T10:00:00Z'), at('2024-03-05T02:30:00Z'), at('2024-03-05T10:20:00Z')]);
  expect(g[0]!.nextRun).toBe(at('2024-03-05T11:00:00Z'));
});

test('previousRun is absent while suspended, with an invalid schedule, and before the first slot after creation', () => {
  const now = new Date('2024-03-05T10:20:00Z');
  const g = policyGauges([
    policy('suspended', '0 * * * *', { suspend: true }),
    policy('invalid', 'not a schedule'),
    policy('new', '0 3 * * *', {}, '2024-03-05T09:00:00Z'),
  ], [], now);
  expect(g.map((x) => x.previousRun)).toEqual([undefined, undefined, undefined]);
  expect(g[2]!.nextRun).toBe(at('2024-03-06T03:00:00Z'));
});

const record = (name: string, policyName: string, backupTime: string, certificates?: { file: string; notAfter: string }[]) =>
  ({
    metadata: { name, namespace: 'ns' },
    spec: { snapshotId: name, policy: policyName, backuploc: 'loc' },
    status: { backupTime, certificates },
  }) as MetadataBackupRecord;

test('certificates: one entry per file of the policy\'s newest record, as Unix seconds; older records do not count', () => {
  const now = new Date('2024-03-05T10:20:00Z');
  const g = policyGauges([policy('daily', '0 3 * * *'), policy('no-certs', '0 3 * * *')], [
    record('old', 'daily', '2024-03-03T03:00:00Z', [{ file: 'apiserver.crt', notAfter: '2024-03-10T00:00:00Z' }]),
    record('new', 'daily', '2024-03-05T03:00:00Z', [
      { file: 'apiserver.crt', notAfter: '2025-03-05T00:00:00.000Z' },
      { file: 'etcd/server.crt', notAfter: '2024-03-15T12:00:00.000Z' },
    ]),
    record('other', 'no-certs', '2024-03-05T03:00:00Z'),
  ], now);
  expect(g[0]!.certificates).toEqual([
    { file: 'apiserver.crt', notAfter: at('2025-03-05T00:00:00Z') },
    { file: 'etcd/server.crt', notAfter: at('2024-03-15T12:00:00Z') },
  ]);
  expect(g[1]!.certificates).toEqual([]);
});

test('kubedr_certificate_expiry_timestamp_seconds has a series per policy and certificate file at scrape time, and loses gone ones', async () => {
  const m = createMetrics();
  let records = [
    record('a', 'daily', '2024-03-05T03:00:00Z', [
      { file: 'ca.crt', notAfter: '2034-03-01T00:00:00Z' },
      { file: 'etcd/server.crt', notAfter: '2024-03-15T12:00:00Z' },
    ]),
  ];
  m.setPolicySource(() => policyGauges([policy('daily', '0 3 * * *')], records, new Date('2024-03-05T10:20:00Z')));
  const series = async () => (await m.registry.metrics()).split('\n').filter((l) => l.startsWith('kubedr_certificate_expiry_timestamp_seconds{'));
  expect(await series()).toEqual([
    `kubedr_certificate_expiry_timestamp_seconds{policyName="daily",certificate="ca.crt"} ${at('2034-03-01T00:00:00Z')}`,
    `kubedr_certificate_expiry_timestamp_seconds{policyName="daily",certificate="etcd/server.crt"} ${at('2024-03-15T12:00:00Z')}`,
  ]);
  // A newer backup after the certificate was renewed and a file removed.
  records = [...records, record('b', 'daily', '2024-03-06T03:00:00Z', [{ file: 'ca.crt', notAfter: '2034-03-01T00:00:00Z' }])];
  expect(await series()).toEqual([`kubedr_certificate_expiry_timestamp_seconds{policyName="daily",certificate="ca.crt"} ${at('2034-03-01T00:00:00Z')}`]);
  records = [];
  expect(await series()).toEqual([]);
});

const verified = (name: string, policyName: string, time: string, result: 'Succeeded' | 'Failed') => {
  const r = record(name, policyName, time);
  r.status!.verification = { time, result };
  return r;
};

test('lastVerificationStatus: the newest verification among the records and the policy\'s lastVerifiedTime decides', () => {
  const now = new Date('2024-03-05T10:20:00Z');
  const withVerified = (p: MetadataBackupPolicy, lastVerifiedTime: string) => ({ ...p, status: { lastVerifiedTime } });
  const g = policyGauges([
    policy('good', '0 3 * * *'),
    policy('broken', '0 3 * * *'),
    policy('fixed', '0 3 * * *'),
    // The verified record was pruned; the policy remembers the success, newer than the failed record's verification.
    withVerified(policy('pruned', '0 3 * * *'), '2024-03-05T04:00:00Z'),
    policy('never-verified', '0 3 * * *'),
    // Verification turned off after a failure (a non-Kubernetes etcd, as the runbook advises): no longer reported.
    policy('off', '0 3 * * *', { verification: { mode: 'Never' } }),
  ], [
    verified('g1', 'good', '2024-03-05T03:01:00Z', 'Succeeded'),
    verified('b1', 'broken', '2024-03-04T03:01:00Z', 'Succeeded'),
    verified('b2', 'broken', '2024-03-05T03:01:00Z', 'Failed'),
    verified('f1', 'fixed', '2024-03-04T03:01:00Z', 'Failed'),
    verified('f2', 'fixed', '2024-03-05T03:01:00Z', 'Succeeded'),
    verified('p1', 'pruned', '2024-03-04T03:01:00Z', 'Failed'),
    record('n1', 'never-verified', '2024-03-05T03:00:00Z'),
    verified('o1', 'off', '2024-03-05T03:01:00Z', 'Failed'),
  ], now);
  expect(Object.fromEntries(g.map((x) => [x.policyName, x.lastVerificationStatus]))).toEqual({
    good: 1, broken: 0, fixed: 1, pruned: 1, 'never-verified': undefined, off: undefined,
  });
});

test('kubedr_backup_last_verification_status is served from the records at scrape time: a new controller reports a failure at once', async () => {
  // A fresh registry stands for a restarted controller: nothing was counted, the records in its cache say it all.
  const m = createMetrics();
  const records = [verified('a', 'daily', '2024-03-05T03:01:00Z', 'Failed')];
  m.setPolicySource(() => policyGauges([policy('daily', '0 3 * * *')], records, new Date('2024-03-05T10:20:00Z')));
  const series = async () => (await m.registry.metrics()).split('\n').filter((l) => l.startsWith('kubedr_backup_last_verification_status{'));
  expect(await series()).toEqual(['kubedr_backup_last_verification_status{policyName="daily"} 0']);
  records.push(verified('b', 'daily', '2024-03-05T04:01:00Z', 'Succeeded'));
  expect(await series()).toEqual(['kubedr_backup_last_verification_status{policyName="daily"} 1']);
});
