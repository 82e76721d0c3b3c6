/**
 * @module What follows a failed verification: one damaged blob in a restic repository poisons every later backup that
 * deduplicates against it (each says Completed, none restores). So when a verification fails for any reason but an
 * unreachable or refusing S3, the repository is read whole (`restic check --read-data`) and, if damaged, repaired with
 * restic's own commands (engine/repository-damage.ts): the damaged packs are removed after salvaging their intact
 * blobs, so the next backup stores fresh copies instead of pointing at broken ones. The records of backups that still
 * reference lost data are marked (`status.damage`, the `kubedr_backups_damaged` gauge), each policy concerned is told
 * in a Warning event, and takes a new backup at once.
 */
import { REPOSITORY_DAMAGED } from '../api/events.ts';
import { BACKUP_RECORD } from '../api/group.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord, Secret } from '../api/types.ts';
import { EngineError, type EngineErrorKind } from '../engine/errors.ts';
import { type CheckResult, type DamageReport, checkRepository, findAndRepairDamage } from '../engine/repository-damage.ts';
import { repositoryAddress } from '../engine/repository.ts';
import type { Restic } from '../engine/restic.ts';
import type { KubeClient } from '../kube/client.ts';
import type { Informer } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { Logger } from '../util/log.ts';
import { locationRepository } from './inputs.ts';

/** Failures that say nothing about the data: the repository was not read, so there is nothing to check for. */
const NOT_ABOUT_DATA: ReadonlySet<EngineErrorKind> = new Set(['Unreachable', 'Timeout', 'AccessDenied', 'Locked', 'Cancelled', 'TlsError',
  'InvalidInput', 'WrongPassword', 'NoRepository']);

export interface RepositoryRepairDeps {
  client: KubeClient;
  records: Informer<MetadataBackupRecord>;
  policies: Informer<MetadataBackupPolicy>;
  secrets: Informer<Secret>;
  restic: Restic;
  recorder: EventRecorder;
  log: Logger;
  /** False: damage is found and reported, not repaired (`--repair-damage=false`). Default true. */
  repairEnabled?: boolean;
  /** Asks for a backup of the policy (namespace/name) at once. */
  requestBackup: (key: string) => void;
  now?: () => Date;
}

export interface RepairOutcome {
  report: DamageReport;
  /** Backups (snapshot ids) found to have lost data now, and marked. */
  newlyDamaged: string[];
  /** Backups marked damaged before, still referencing lost data. */
  knownDamaged: string[];
}

export class RepositoryRepair {
  constructor(private readonly deps: RepositoryRepairDeps) {}

  /** Repair turned off: every policy with backups there is told what was found and what a person can run. */
  private async reportOnly(location: BackupLocation, check: CheckResult): Promise<RepairOutcome> {
    const report: DamageReport = { check, removedPacks: [], indexRebuilt: false, damagedSnapshots: [] };
    if (check.errors === 0 || (check.brokenPacks.length === 0 && !check.repairIndex)) return { report, newlyDamaged: [], knownDamaged: [] };
    const ns = location.metadata.namespace ?? '';
    const policies = new Set(this.deps.records.list().filter((r) => r.metadata.namespace === ns && r.spec.backuploc === location.metadata.name)
      .map((r) => r.spec.policy));
    const message = `BackupLocation ${location.metadata.name}'s repository holds damaged data (restic check: ${check.messages[0] ?? `${check.errors} error(s)`}). ` +
      `Not repaired (--repair-damage=false): backups may deduplicate against the damaged data until it is. To repair: ${repairCommands(location, check)}, ` +
      'then take a backup.';
    for (const name of policies) {
      const policy = this.deps.policies.get(`${ns}/${name}`);
      if (policy) await this.deps.recorder.event(policy, 'Warning', REPOSITORY_DAMAGED, message);
    }
    this.deps.log.warn('repository damaged; repair is turned off', { backupLocation: `${ns}/${location.metadata.name}`, brokenPacks: check.brokenPacks.length });
    return { report, newlyDamaged: [], knownDamaged: [] };
  }

  /** Whether a verification failure calls for a check of the repository's data. */
  static concernsData(err: unknown): boolean {
    // Not an engine error (the Kubernetes API refused the verification pod, say): the data was not read at all.
    return err instanceof EngineError && !NOT_ABOUT_DATA.has(err.kind);
  }

  /**
   * Reads the location's whole repository (after a failed verification, or a scheduled check that found damage) and,
   * if damaged, repairs it, marks the records that lost data, tells their policies and asks each for a new backup.
   * Returns the report (undefined if the check failed).
   */
  async checkAndRepair(location: BackupLocation, signal: AbortSignal, known?: CheckResult): Promise<RepairOutcome | undefined> {
    const ns = location.metadata.namespace ?? '';
    const log = this.deps.log.child({ backupLocation: `${ns}/${location.metadata.name}` });
    let report: DamageReport;
    try {
      if (!known) log.info('reading the whole repository (restic check --read-data)');
      const repo = locationRepository(location, this.deps.secrets);
      if (this.deps.repairEnabled === false) return await this.reportOnly(location, await checkRepository(this.deps.restic, repo, { run: { signal } }));
      report = await findAndRepairDamage(this.deps.restic, repo, { signal }, known);
    } catch (err) {
      log.warn('the check of the whole repository did not finish', { err });
      return undefined;
    }
    if (report.check.errors === 0) {
      log.info('the whole repository was read: no damage');
      return { report, newlyDamaged: [], knownDamaged: [] };
    }
    const time = (this.deps.now ?? (() => new Date()))().toISOString();
    const inLocation = this.deps.records.list().filter((r) => r.metadata.namespace === ns && r.spec.backuploc === location.metadata.name);
    const all = inLocation.filter((r) => report.damagedSnapshots.some((id) => id.startsWith(r.spec.snapshotId) || r.spec.snapshotId.startsWith(id)));
    // Records marked before: their lost data keeps `restic check` failing until they are deleted; that is no news.
    const damaged = all.filter((r) => !r.status?.damage);
    const knownDamaged = all.filter((r) => r.status?.damage).map((r) => r.spec.snapshotId);
    if (report.removedPacks.length === 0 && !report.indexRebuilt && damaged.length === 0) {
      log.info('only backups already marked damaged reference lost data: nothing new', { knownDamaged });
      return { report, newlyDamaged: [], knownDamaged };
    }
    // "error for tree 6a5b674d:" has its cause in restic's next message.
    const [first, second] = report.check.messages;
    const cause = first === undefined ? `${report.check.errors} error(s)` : first.endsWith(':') && second ? `${first} ${second}` : first;
    for (const r of damaged) {
      const message = `snapshot ${r.spec.snapshotId} references data that was damaged in the repository and could not be salvaged: ` +
        `it does not restore (restic check: ${cause})`;
      await this.deps.client.patchStatus(BACKUP_RECORD, ns, r.metadata.name, { damage: { time, message } })
        .catch((err) => log.warn('could not mark a damaged record', { record: r.metadata.name, err }));
    }
    // Every policy with backups in this repository: its next backup must store fresh copies now, not at its schedule.
    const policies = [...new Set(inLocation.map((r) => r.spec.policy))];
    for (const name of policies) {
      const policy = this.deps.policies.get(`${ns}/${name}`);
      if (!policy) continue;
      const lost = damaged.filter((r) => r.spec.policy === name).map((r) => r.spec.snapshotId);
      await this.deps.recorder.event(policy, 'Warning', REPOSITORY_DAMAGED, damageMessage(location, report, cause, lost));
      this.deps.requestBackup(`${ns}/${name}`);
    }
    log.warn('repository damaged: repaired, records marked, new backups requested', {
      brokenPacks: report.check.brokenPacks.length, damagedSnapshots: report.damagedSnapshots, policies,
    });
    return { report, newlyDamaged: damaged.map((r) => r.spec.snapshotId), knownDamaged };
  }
}

/** What to run by hand to repair what a check found. */
export function repairCommands(location: BackupLocation, check: CheckResult): string {
  const repo = `restic -r ${repositoryAddress(location.spec.url, location.spec.bucketName)}`;
  return check.brokenPacks.length > 0 ? `${repo} repair packs ${check.brokenPacks.join(' ')}` : `${repo} repair index`;
}

/** The event's words: what was found, what was done, what is lost, what happens next. */
export function damageMessage(location: BackupLocation, report: DamageReport, cause: string, lost: string[]): string {
  const repaired = report.removedPacks.length > 0
    ? `${report.removedPacks.length} damaged pack file(s) removed after salvaging their intact data`
    : report.indexRebuilt ? 'the index rebuilt' : 'nothing restic could repair';
  const loss = lost.length > 0
    ? `${lost.length} backup(s) of this policy lost data and do not restore: ${lost.join(', ')} (status.damage on their records)`
    : 'no backup of this policy lost data';
  return `BackupLocation ${location.metadata.name}'s repository held damaged data (restic check: ${cause}). Repaired: ${repaired}. ` +
    `${loss}. A new backup is being taken now, storing fresh copies.`;
}
