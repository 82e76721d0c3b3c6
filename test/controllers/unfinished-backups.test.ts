/**
 * The resolution of a backup another process left `Running`, called directly: which record decides, the words of an
 * interruption, and what it asks of the repository sync and the API. backup-policy.test.ts drives it through reconcile.
 */
import { expect, test } from 'bun:test';
import { BACKUP_FAILED } from '../../src/api/events.ts';
import { POLICY_LABEL } from '../../src/api/group.ts';
import type { MetadataBackupPolicy, MetadataBackupRecord } from '../../src/api/types.ts';
import { BackupOutcomes } from '../../src/controllers/backup-outcome.ts';
import { newRecord } from '../../src/controllers/records.ts';
import { interruptedMessage, newerRecord, resolveUnfinished, type UnfinishedDeps } from '../../src/controllers/unfinished-backups.ts';
import type { Restic } from '../../src/engine/restic.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { createMetrics } from '../../src/metrics/registry.ts';
import type { EventRecorder } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';
import { fakeInformer } from '../support/fakes.ts';

const at = (id: string, time: string) => newRecord({ namespace: 'ns', policy: 'pol', location: 'loc', snapshotId: id, status: { backupTime: time } });

test('the newest record after the last success decides; the message says whether the repository could be checked', () => {
  const records = [at('11111111', '2026-12-04T09:00:00Z'), at('22222222', '2026-12-04T11:00:00Z'), at('33333333', '2026-12-04T10:30:00Z')];
  expect(newerRecord(records, 'pol', Date.parse('2026-12-04T10:00:00Z'))?.spec.snapshotId).toBe('22222222');
  expect(newerRecord(records, 'pol', Date.parse('2026-12-04T11:00:00Z'))).toBeUndefined();
  expect(newerRecord(records, 'other', 0)).toBeUndefined();
  expect(interruptedMessage('')).toBe('interrupted: the controller stopped during the backup, before it stored a snapshot');
  expect(interruptedMessage('S3 endpoint unreachable')).toContain('could not be checked (S3 endpoint unreachable)');
});

const policy: MetadataBackupPolicy = {
  metadata: { name: 'pol', namespace: 'ns', generation: 1 },
  spec: { destination: 'loc', certsDir: '/pki', schedule: '0 0 1 1 *' },
  status: { backupStatus: 'Running', lastSuccessfulBackupTime: '2026-12-04T10:00:00Z' },
};

function resolution(apiRecords: MetadataBackupRecord[], withSync: boolean, counted = false) {
  const patches: Record<string, unknown>[] = [];
  const events: string[] = [];
  const asked: { synced: string[]; listed: string[] } = { synced: [], listed: [] };
  const client = {
    list: async (_ref: unknown, ns: string, query: { labelSelector: string }) => {
      asked.listed.push(`${ns} ${query.labelSelector}`);
      return { items: apiRecords, resourceVersion: '1' };
    },
    patchStatus: async (_r: unknown, _ns: string, _n: string, s: Record<string, unknown>) => void patches.push(s),
  } as unknown as KubeClient;
  const recorder: EventRecorder = { event: async (_o, type, reason) => void events.push(`${type} ${reason}`) };
  const metrics = createMetrics();
  const log = createLogger({ level: 'error' });
  const deps: UnfinishedDeps = {
    client, locations: fakeInformer([]), secrets: fakeInformer([]), restic: {} as Restic, metrics, log, maxWaitMs: 0, counted,
    outcomes: new BackupOutcomes({ client, recorder, metrics, log }),
    sync: withSync ? { syncLocation: async (ns, name) => { asked.synced.push(`${ns}/${name}`); return { adopted: [] }; } } : undefined,
  };
  const count = async (name: string) => (await metrics.registry.getSingleMetric(name)?.get())?.values.find((v) => v.labels.policyName === 'pol')?.value ?? 0;
  return { run: () => resolveUnfinished(deps, policy, new AbortController().signal), patches, events, asked, count };
}

test('the policy\'s location is synced, then its records are read from the API by its label: a newer one is adopted', async () => {
  const r = resolution([at('44444444', '2026-12-04T10:59:00Z')], true);
  await r.run();
  expect(r.asked).toEqual({ synced: ['ns/loc'], listed: [`ns ${POLICY_LABEL}=pol`] });
  expect(r.patches.at(-1)).toMatchObject({ backupStatus: 'Completed', snapshotId: '44444444' });
  expect([await r.count('kubedr_num_backups'), await r.count('kubedr_num_successful_backups')]).toEqual([1, 1]);
});

test('without a repository sync it cannot tell: interrupted, saying so, and counted once as a failure', async () => {
  const r = resolution([at('44444444', '2026-12-04T10:59:00Z')], false);
  await r.run();
  expect(r.asked.listed).toEqual([]);
  expect(r.patches.at(-1)?.backupErrorMessage).toBe(interruptedMessage('no repository sync'));
  expect(r.events).toEqual([`Warning ${BACKUP_FAILED}`]);
  expect([await r.count('kubedr_num_backups'), await r.count('kubedr_num_failed_backups')]).toEqual([1, 1]);
});

test('this process\'s own backup whose record the API refused for a while: adopted, and not counted a second time', async () => {
  const r = resolution([at('44444444', '2026-12-04T10:59:00Z')], true, true);
  await r.run();
  expect(r.patches.at(-1)).toMatchObject({ backupStatus: 'Completed', snapshotId: '44444444' });
  // Its start was counted by the run that stored it: kubedr_num_backups stays successes + failures.
  expect([await r.count('kubedr_num_backups'), await r.count('kubedr_num_successful_backups')]).toEqual([0, 1]);
});
