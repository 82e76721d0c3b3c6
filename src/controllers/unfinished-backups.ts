/**
 * @module A backup another process started and never reported (a controller killed or deposed during it, or a status
 * that came back with a restored etcd): its policy reads `Running` while nothing runs. Once that backup can no longer
 * store a snapshot (other-writers.ts), its location is synced, and the backup is reported Completed if the repository
 * holds a snapshot of the policy newer than its last success (its record was just adopted), or interrupted if it holds
 * none. Counted once either way, so kubedr_num_backups stays successes + failures (a backup of this process whose outcome
 * could not be written, its record refused for a while, is resolved the same way and was counted when it started).
 */
import { BACKUP_RECORD, POLICY_LABEL } from '../api/group.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord, Secret } from '../api/types.ts';
import type { Restic } from '../engine/restic.ts';
import type { KubeClient } from '../kube/client.ts';
import type { Metrics } from '../metrics/registry.ts';
import type { Informer } from '../runtime/informer.ts';
import type { Logger } from '../util/log.ts';
import type { BackupOutcomes } from './backup-outcome.ts';
import { locationRepository } from './inputs.ts';
import { waitForOtherWriters } from './other-writers.ts';
import { policyLabelValue } from './records.ts';
import type { RepositorySync } from './repository-sync.ts';

export interface UnfinishedDeps {
  client: KubeClient;
  locations: Informer<BackupLocation>;
  secrets: Informer<Secret>;
  restic: Restic;
  metrics: Metrics;
  log: Logger;
  outcomes: BackupOutcomes;
  sync?: Pick<RepositorySync, 'syncLocation'>;
  /** Longest wait for the unfinished backup's restic to stop (its upload's stall timeout). */
  maxWaitMs: number;
  /** The backup was this process's own and counted when it started (its outcome could not be written then). */
  counted?: boolean;
}

/** The newest record of `policy` made after `sinceMs`, if any. */
export function newerRecord(records: MetadataBackupRecord[], policy: string, sinceMs: number): MetadataBackupRecord | undefined {
  return records
    .filter((r) => r.spec.policy === policy && Date.parse(r.status?.backupTime ?? '') > sinceMs)
    .sort((a, b) => Date.parse(b.status?.backupTime ?? '') - Date.parse(a.status?.backupTime ?? ''))[0];
}

/** The words of an interrupted backup: before it stored a snapshot, or unknown when the repository could not be read. */
export function interruptedMessage(unknown: string): string {
  return unknown
    ? `interrupted: the controller stopped during the backup; whether it stored a snapshot could not be checked (${unknown}); a later repository sync records it if it did`
    : 'interrupted: the controller stopped during the backup, before it stored a snapshot';
}

export async function resolveUnfinished(deps: UnfinishedDeps, policy: MetadataBackupPolicy, signal: AbortSignal): Promise<void> {
  const name = policy.metadata.name;
  const ns = policy.metadata.namespace ?? '';
  if (!deps.counted) deps.metrics.numBackups.inc({ policyName: name });
  const since = Date.parse(policy.status?.lastSuccessfulBackupTime ?? '') || 0;
  let found: MetadataBackupRecord | undefined;
  let unknown = '';
  try {
    if (!deps.sync) throw new Error('no repository sync');
    // The earlier leader's restic may still be uploading (that controller frozen, or cut off from the API only).
    const location = deps.locations.get(`${ns}/${policy.spec.destination}`);
    if (location) {
      await waitForOtherWriters(deps.restic, locationRepository(location, deps.secrets),
        { maxWaitMs: deps.maxWaitMs, signal, log: deps.log.child({ policy: `${ns}/${name}` }) });
    }
    await deps.sync.syncLocation(ns, policy.spec.destination, signal);
    // From the API, not the cache: a record the sync (this one, or one a moment ago) just made may not be cached yet.
    const { items } = await deps.client.list<MetadataBackupRecord>(BACKUP_RECORD, ns, { labelSelector: `${POLICY_LABEL}=${policyLabelValue(name)}` });
    found = newerRecord(items, name, since);
  } catch (err) {
    unknown = err instanceof Error ? err.message : String(err);
  }
  if (found) return deps.outcomes.reportAdopted(policy, found, signal);
  await deps.outcomes.reportFailure(policy, interruptedMessage(unknown), 'Interrupted', {}, signal);
}
