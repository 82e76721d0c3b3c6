/**
 * @module Pruning, on its own cadence and off the backup path: forgetting a snapshot (retention, a deleted record) is
 * quick, but removing its data (`restic prune`) can take an hour on a big repository. So the pruner prunes each ready
 * location once `intervalMs` has passed since its last prune, or sooner once `afterForgets` snapshots were forgotten
 * there, one location at a time, in its own loop: no reconcile worker waits for it. Leader only (it writes).
 */
import { PRUNE_FAILED, PRUNE_LEFT_TO_MAINTENANCE } from '../api/events.ts';
import { BACKUP_LOCATION } from '../api/group.ts';
import type { BackupLocation, Secret } from '../api/types.ts';
import type { Restic } from '../engine/restic.ts';
import { pruneRepository } from '../engine/snapshots.ts';
import type { KubeClient } from '../kube/client.ts';
import { ignoreNotFound } from '../kube/errors.ts';
import type { Metrics } from '../metrics/registry.ts';
import { type Informer, objectKey } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { Runnable } from '../runtime/runnable.ts';
import type { Logger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';
import { locationRepository } from './inputs.ts';
import { describeProtectionStatus, maintenanceCommand, refusedByProtection } from './protection.ts';

export interface PrunerDeps {
  client: KubeClient;
  locations: Informer<BackupLocation>;
  secrets: Informer<Secret>;
  restic: Restic;
  recorder: EventRecorder;
  log: Logger;
  metrics: Pick<Metrics, 'pruneFailures'>;
  /** Longest time between two prunes of a location that had forgets. */
  intervalMs: number;
  /** Prune sooner once this many snapshots were forgotten at a location. */
  afterForgets: number;
  now?: () => Date;
}

/** Pure: is a prune of this location due? `forgets` counts the snapshots forgotten there since its last prune. */
export function pruneDue(o: { lastPrune: number | undefined; startedAt: number; forgets: number; now: number; intervalMs: number; afterForgets: number }): boolean {
  if (o.forgets >= o.afterForgets) return true;
  // Without a recorded prune, count from this process's start: a restart must not prune every location at once.
  return o.now - (o.lastPrune ?? o.startedAt) >= o.intervalMs && (o.forgets > 0 || o.lastPrune !== undefined);
}

export class Pruner implements Runnable {
  readonly name = 'pruner';
  private readonly forgets = new Map<string, number>();
  /** After a failed prune, the next attempt waits (a broken repository must not be retried every minute). */
  private readonly retryAt = new Map<string, number>();
  /** When this process last pruned each location: its status write may have failed, and the status lags behind. */
  private readonly prunedAt = new Map<string, number>();
  private readonly now: () => Date;
  private wake: (() => void) | undefined;

  constructor(private readonly deps: PrunerDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  /** Counts forgotten snapshots of a location; enough of them make its prune due at once. */
  forgotten(location: BackupLocation, count: number): void {
    const key = objectKey(location);
    const n = (this.forgets.get(key) ?? 0) + count;
    this.forgets.set(key, n);
    if (n >= this.deps.afterForgets) this.wake?.();
  }

  async start(signal: AbortSignal): Promise<void> {
    const startedAt = this.now().getTime();
    const checkEveryMs = Math.min(this.deps.intervalMs, 60_000);
    while (!signal.aborted) {
      for (const loc of this.deps.locations.list()) {
        if (signal.aborted) return;
        if (loc.status?.initStatus !== 'Completed') continue;
        const due = pruneDue({
          lastPrune: Math.max(Date.parse(loc.status.lastPruneTime ?? '') || 0, this.prunedAt.get(objectKey(loc)) ?? 0) || undefined, startedAt, forgets: this.forgets.get(objectKey(loc)) ?? 0,
          now: this.now().getTime(), intervalMs: this.deps.intervalMs, afterForgets: this.deps.afterForgets,
        });
        if (due && (this.retryAt.get(objectKey(loc)) ?? 0) <= this.now().getTime()) await this.prune(loc, signal);
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        void sleep(checkEveryMs, signal).then(resolve);
      });
      this.wake = undefined;
    }
  }

  private async prune(loc: BackupLocation, signal: AbortSignal): Promise<void> {
    const key = objectKey(loc);
    const log = this.deps.log.child({ backupLocation: key });
    const counted = this.forgets.get(key) ?? 0;
    const started = performance.now();
    log.info('pruning repository', { forgotten: counted });
    try {
      await pruneRepository(this.deps.restic, locationRepository(loc, this.deps.secrets), { signal });
    } catch (err) {
      if (signal.aborted) return;
      if (refusedByProtection(loc.spec.protection, err)) {
        // What spec.protection asks of the bucket: the controller's keys may not delete. Not a failure, and not retried
        // before the next interval: the bucket will refuse again until a person prunes with the maintenance keys.
        this.retryAt.set(key, this.now().getTime() + this.deps.intervalMs);
        await this.leftToMaintenance(loc, {}, `The bucket refused the prune, as spec.protection expects (${err instanceof Error ? err.message : String(err)}); ` +
          `forgotten snapshots keep their space. To prune, run ${maintenanceCommand(loc, true)}`, log);
        return;
      }
      const message = `pruning the repository failed; forgotten snapshots keep their space until the next prune: ${err instanceof Error ? err.message : String(err)}`;
      this.retryAt.set(key, this.now().getTime() + Math.min(this.deps.intervalMs, 15 * 60_000));
      log.warn('prune failed', { error: message });
      this.deps.metrics.pruneFailures.inc({ location: loc.metadata.name });
      await this.writeStatus(loc, { lastPruneResult: 'Failed', lastPruneMessage: message }, log);
      await this.deps.recorder.event(loc, 'Warning', PRUNE_FAILED, message).catch(() => undefined);
      return;
    }
    // The prune is done: what follows only records it. A failed write of the time (API away) is no failed prune; the
    // time is kept here so the location is not pruned again at once, and written with the next prune.
    const prunedAt = this.now();
    this.prunedAt.set(key, prunedAt.getTime());
    this.forgets.set(key, (this.forgets.get(key) ?? 0) - counted);
    this.retryAt.delete(key);
    this.deps.metrics.pruneFailures.inc({ location: loc.metadata.name }, 0);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    log.info('repository pruned', { seconds, forgotten: counted });
    const done = { lastPruneTime: prunedAt.toISOString() };
    if (loc.spec.protection) {
      // The prune's deletes only added delete markers: the bucket keeps every version, which is what protection is for.
      const bucket = describeProtectionStatus(loc.status?.protection);
      await this.leftToMaintenance(loc, done, `Pruned with the controller's keys: in this bucket (${bucket}) that only hides the data of forgotten ` +
        `snapshots behind delete markers, and its old versions keep their space, as spec.protection intends. To free it, run ${maintenanceCommand(loc, false)}`, log);
      return;
    }
    await this.writeStatus(loc, { ...done, lastPruneResult: 'Succeeded',
      lastPruneMessage: `pruned in ${seconds} s, ${counted} snapshot(s) forgotten since the prune before` }, log);
  }

  /**
   * The prune's outcome in the location's status. Best effort: a failed write (API away) changes nothing that was done;
   * the next prune writes its own.
   */
  private async writeStatus(loc: BackupLocation, status: Record<string, string>, log: Logger): Promise<void> {
    await this.deps.client.patchStatus(BACKUP_LOCATION, loc.metadata.namespace ?? '', loc.metadata.name, status)
      .catch(ignoreNotFound).catch((err) => log.warn('the prune\'s outcome could not be written to status', { err, ...status }));
  }

  /** A prune of a protected location that leaves work to the bucket's owner: status, then a Normal event; no failure. */
  private async leftToMaintenance(loc: BackupLocation, done: Record<string, string>, message: string, log: Logger): Promise<void> {
    log.info('prune left to maintenance', { detail: message });
    // Status first: whoever sees the event finds the same note in status (a reader who came between an event and a
    // later status write saw the event without its note).
    await this.writeStatus(loc, { ...done, lastPruneResult: 'LeftToMaintenance', lastPruneMessage: message }, log);
    await this.deps.recorder.event(loc, 'Normal', PRUNE_LEFT_TO_MAINTENANCE, message).catch(() => undefined);
  }
}
