/**
 * @module Scheduled checks of each location's data, on their own cadence and off the backup path: a verification reads
 * only the backup it proves, so damage in data that no restore has touched (an older backup's, or blobs shared with the
 * next backup) would wait until the day it is needed. Every `intervalMs`, each ready location has a part of its data
 * read (`restic check --read-data-subset`, restic's shared lock: backups go on); damage found has the whole repository
 * read and repaired (RepositoryRepair: records marked, policies told, new backups). Checks take the verification slot
 * (both read S3 and the node's disk), one at a time. Leader only (it writes). The outcome goes to the location's
 * status (lastCheckTime, lastCheckResult, lastCheckMessage), and a failed check is a Warning event.
 */
import { REPOSITORY_CHECK_FAILED } from '../api/events.ts';
import { BACKUP_LOCATION } from '../api/group.ts';
import type { BackupLocation, BackupLocationStatus, Secret } from '../api/types.ts';
import { checkRepository } from '../engine/repository-damage.ts';
import type { Restic } from '../engine/restic.ts';
import type { KubeClient } from '../kube/client.ts';
import { ignoreNotFound } from '../kube/errors.ts';
import { type Informer, objectKey } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { Runnable } from '../runtime/runnable.ts';
import type { Logger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';
import { locationRepository } from './inputs.ts';
import type { RepositoryRepair } from './repository-repair.ts';

export interface RepositoryCheckerDeps {
  client: KubeClient;
  locations: Informer<BackupLocation>;
  secrets: Informer<Secret>;
  restic: Restic;
  recorder: EventRecorder;
  log: Logger;
  repair: Pick<RepositoryRepair, 'checkAndRepair'>;
  /** Takes the verification slot; returns its release. */
  acquire: (signal: AbortSignal) => Promise<() => void>;
  intervalMs: number;
  /** restic's --read-data-subset (e.g. "5%"). */
  subset: string;
  now?: () => Date;
}

/** Pure: is a check of this location due? Without a recorded check, counted from this process's start. */
export function checkDue(o: { lastCheck: number | undefined; startedAt: number; now: number; intervalMs: number }): boolean {
  return o.intervalMs > 0 && o.now - (o.lastCheck ?? o.startedAt) >= o.intervalMs;
}

export class RepositoryChecker implements Runnable {
  readonly name = 'repository-checker';
  /** When this process last checked each location (its status write may have failed, or lag in the cache). */
  private readonly checkedAt = new Map<string, number>();
  private readonly now: () => Date;

  constructor(private readonly deps: RepositoryCheckerDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.deps.intervalMs <= 0) return;
    const startedAt = this.now().getTime();
    while (!signal.aborted) {
      for (const loc of this.deps.locations.list()) {
        if (signal.aborted) return;
        if (loc.status?.initStatus !== 'Completed') continue;
        const recorded = Date.parse(loc.status.lastCheckTime ?? '') || 0;
        const lastCheck = Math.max(recorded, this.checkedAt.get(objectKey(loc)) ?? 0) || undefined;
        if (checkDue({ lastCheck, startedAt, now: this.now().getTime(), intervalMs: this.deps.intervalMs })) await this.check(loc, signal);
      }
      await sleep(Math.min(this.deps.intervalMs, 60_000), signal);
    }
  }

  /** Checks one location now and reports it; never throws. */
  async check(loc: BackupLocation, signal: AbortSignal): Promise<BackupLocationStatus['lastCheckResult']> {
    const key = objectKey(loc);
    const log = this.deps.log.child({ backupLocation: key });
    const started = performance.now();
    let release: (() => void) | undefined;
    let status: Pick<BackupLocationStatus, 'lastCheckResult' | 'lastCheckMessage'>;
    try {
      release = await this.deps.acquire(signal);
      const found = await checkRepository(this.deps.restic, locationRepository(loc, this.deps.secrets), { subset: this.deps.subset, run: { signal } });
      const took = `${((performance.now() - started) / 1000).toFixed(1)} s`;
      if (found.errors === 0) {
        status = { lastCheckResult: 'Passed', lastCheckMessage: `read ${this.deps.subset} of the data in ${took}: no errors` };
        log.info('repository check passed', { subset: this.deps.subset, took });
      } else if (found.brokenPacks.length > 0 || found.repairIndex) {
        status = { lastCheckResult: 'Damaged', lastCheckMessage: `read ${this.deps.subset} of the data in ${took}: ${found.errors} error(s) ` +
          `(${found.messages[0] ?? 'see restic check'}); the whole repository was read and repaired (see the RepositoryDamaged events)` };
        log.warn('repository check found damaged data: reading the whole repository and repairing it', { errors: found.errors });
        await this.deps.repair.checkAndRepair(loc, signal);
      } else {
        // No damaged pack in what was read, but snapshots reference data that is gone (lost in an earlier repair, or by
        // hand): name them, and mark those not marked yet; no full read.
        const outcome = await this.deps.repair.checkAndRepair(loc, signal, found);
        const known = outcome ? [...outcome.knownDamaged, ...outcome.newlyDamaged] : [];
        status = { lastCheckResult: 'Damaged', lastCheckMessage: `read ${this.deps.subset} of the data in ${took}: no damaged pack, but ` +
          (known.length > 0 ? `${known.length} backup(s) reference lost data and do not restore (${known.join(', ')}; status.damage on their ` +
            'records): delete those records to remove them from the repository' : `${found.errors} error(s) (${found.messages[0] ?? 'see restic check'})`) };
        log.warn('repository check: backups reference lost data', { errors: found.errors, known });
      }
    } catch (err) {
      if (signal.aborted) return undefined;
      const message = `checking the repository's data failed: ${err instanceof Error ? err.message : String(err)}`;
      status = { lastCheckResult: 'Failed', lastCheckMessage: message };
      log.warn('repository check failed', { error: message });
      await this.deps.recorder.event(loc, 'Warning', REPOSITORY_CHECK_FAILED, message).catch(() => undefined);
    } finally {
      release?.();
    }
    const at = this.now();
    this.checkedAt.set(key, at.getTime());
    await this.deps.client.patchStatus(BACKUP_LOCATION, loc.metadata.namespace ?? '', loc.metadata.name, { lastCheckTime: at.toISOString(), ...status })
      .catch(ignoreNotFound).catch((err) => log.warn('the check\'s outcome could not be written', { err }));
    return status.lastCheckResult;
  }
}
