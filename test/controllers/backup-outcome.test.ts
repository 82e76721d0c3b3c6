/** How a backup's end is told: the status fields, the condition, the event and the counters, for each outcome. */
import { expect, test } from 'bun:test';
import { BACKUP_FAILED, BACKUP_SUCCEEDED } from '../../src/api/events.ts';
import type { MetadataBackupPolicy } from '../../src/api/types.ts';
import { BackupOutcomes } from '../../src/controllers/backup-outcome.ts';
import { newRecord } from '../../src/controllers/records.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { createMetrics } from '../../src/metrics/registry.ts';
import type { EventRecorder } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';

const policy: MetadataBackupPolicy = {
  metadata: { name: 'pol', namespace: 'ns', generation: 2 },
  spec: { destination: 'loc', certsDir: '/pki', schedule: '0 * * * *' },
  status: { backupStatus: 'Completed', snapshotId: 'aaaaaaaa', mbrName: 'mbr-aaaaaaaa', filesNew: 3, dataAdded: 10 },
};

function outcomes() {
  const patches: Record<string, unknown>[] = [];
  const events: [string, string, string][] = [];
  const client = { patchStatus: async (_r: unknown, _ns: string, _n: string, s: Record<string, unknown>) => void patches.push(s) } as unknown as KubeClient;
  const recorder: EventRecorder = { event: async (_o, type, reason, message) => void events.push([type, reason, message]) };
  const metrics = createMetrics();
  const o = new BackupOutcomes({ client, recorder, metrics, log: createLogger({ level: 'error' }), now: () => new Date('2026-12-04T12:00:00Z') });
  const count = async (name: string) => (await metrics.registry.getSingleMetric(name)?.get())?.values.find((v) => v.labels.policyName === 'pol')?.value ?? 0;
  return { o, patches, events, count };
}

test('a failure clears the previous success\'s figures, says why, counts once and marks the last backup failed', async () => {
  const { o, patches, events, count } = outcomes();
  await o.reportFailure(policy, 'etcd at https://127.0.0.1:2379 unreachable', 'BackupFailed', {});
  expect(patches[0]).toMatchObject({ backupStatus: 'Failed', backupErrorMessage: 'etcd at https://127.0.0.1:2379 unreachable', snapshotId: null,
    mbrName: null, filesNew: null, dataAdded: null, progress: null, backupTime: '2026-12-04T12:00:00.000Z' });
  const conditions = patches[0]!.conditions as { type: string; status: string; reason: string }[];
  expect(conditions.map((c) => [c.type, c.status, c.reason])).toEqual([['LastBackupSucceeded', 'False', 'BackupFailed']]);
  expect(events).toEqual([['Warning', BACKUP_FAILED, 'etcd at https://127.0.0.1:2379 unreachable']]);
  expect(await count('kubedr_num_failed_backups')).toBe(1);
  // The next status written from a stale cache keeps the condition this process wrote.
  expect(o.withHealth('ns/pol', []).map((c) => c.reason)).toEqual(['BackupFailed']);
});

test('an invalid schedule makes the policy not Ready, rather than marking a backup failed', async () => {
  const { o, patches } = outcomes();
  await o.reportFailure(policy, 'Invalid value for minute: 61', 'InvalidSchedule', { nextBackupTime: '' });
  const conditions = patches[0]!.conditions as { type: string; status: string; reason: string }[];
  expect(conditions.map((c) => [c.type, c.status, c.reason])).toEqual([['Ready', 'False', 'InvalidSchedule']]);
  expect(patches[0]).toMatchObject({ nextBackupTime: '' });
});

test('an adopted backup is Completed from its record, without restic\'s figures it does not know', async () => {
  const { o, patches, events, count } = outcomes();
  const record = newRecord({ namespace: 'ns', policy: 'pol', location: 'loc', snapshotId: 'bbbbbbbb', adopted: true, status: { backupTime: '2026-12-04T11:00:00.000Z' } });
  await o.reportAdopted(policy, record, new AbortController().signal);
  expect(patches[0]).toMatchObject({ backupStatus: 'Completed', snapshotId: 'bbbbbbbb', mbrName: 'mbr-bbbbbbbb', filesNew: null, dataAdded: null,
    lastSuccessfulBackupTime: '2026-12-04T11:00:00.000Z' });
  expect(events).toEqual([['Normal', BACKUP_SUCCEEDED, 'Backup completed, snapshot ID: bbbbbbbb']]);
  expect(await count('kubedr_num_successful_backups')).toBe(1);
});
