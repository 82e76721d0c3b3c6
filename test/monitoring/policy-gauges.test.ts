/** The derived gauge the missed-backup alert needs: the most recent scheduled run time at or before now. */
import { expect, test } from 'bun:test';
import type { MetadataBackupPolicy } from '../../src/api/types.ts';
import { policyGauges } from '../../src/metrics/policy-gauges.ts';

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
