/**
 * @module MetadataBackupPolicy reconciler: decides from the schedule, `suspend` and the backup-now annotation whether a
 * backup is due, writes status, and hands the backup to the runner (backup-runner.ts), which runs it out of band and
 * reports its end (backup-outcome.ts). A `Running` status that no backup of this process matches is resolved from the
 * repository (unfinished-backups.ts). In Schedule mode it also starts the policy's scheduled verifications.
 */
import { READY, setCondition } from '../api/conditions.ts';
import { BACKUP_NOW_ANNOTATION, BACKUP_POLICY } from '../api/group.ts';
import { BACKUP_SKIPPED } from '../api/events.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupPolicyStatus, MetadataBackupRecord } from '../api/types.ts';
import { ignoreNotFound } from '../kube/errors.ts';
import type { Reconciler, Result } from '../runtime/controller.ts';
import { ScheduleError, dueSlot, parseSchedule } from '../schedule/schedule.ts';
import { BackupOutcomes } from './backup-outcome.ts';
import { type BackupDeps, BackupRunner, type Running, type Trigger } from './backup-runner.ts';
import { newestRecord, recordTime } from './records.ts';
import type { RepositorySync } from './repository-sync.ts';
import { resolveUnfinished } from './unfinished-backups.ts';
import { type Verifier, verifyMode } from './verification.ts';

export type BackupPolicyDeps = BackupDeps;

/** Longest requeue: timers beyond ~24 days overflow, and an hourly look costs nothing. */
const MAX_REQUEUE_MS = 60 * 60_000;

export class BackupPolicyReconciler implements Reconciler {
  /** What this process has served, ahead of the (possibly stale) cache: the slot and the backup-now value. */
  private readonly served = new Map<string, { slot?: number; backupNow?: string }>();
  /** Policies asked for a backup at once by a repository repair (requestBackup). */
  private readonly repairs = new Set<string>();
  private readonly now: () => Date;
  private readonly outcomes: BackupOutcomes;
  private readonly runner: BackupRunner;
  /** Scheduled verifications running now, by policy key, and the slot each served (ahead of the cache). */
  private readonly verifying = new Map<string, Running>();
  private readonly verifiedSlot = new Map<string, number>();
  /** Records whose interrupted after-backup verification this process started again (see resumeVerification). */
  private readonly resumed = new Set<string>();

  constructor(private readonly deps: BackupPolicyDeps) {
    this.now = deps.now ?? (() => new Date());
    this.outcomes = new BackupOutcomes(deps);
    this.runner = new BackupRunner({ ...deps, outcomes: this.outcomes }, { enqueue: () => {} });
  }

  // Set by the composition root, which builds these collaborators around the reconciler.
  /** Enqueue a policy key (after a backup ends). */
  set enqueue(fn: (key: string) => void) {
    this.runner.hooks.enqueue = fn;
  }
  /** Makes records of snapshots that have none: after a record write that failed, and for an unfinished backup. */
  set sync(sync: Pick<RepositorySync, 'syncLocation' | 'request'> | undefined) {
    this.runner.hooks.sync = sync;
  }
  /**
   * Asks for a backup of the policy at once (after a repository repair: fresh copies of the data now, not at the next
   * slot). It runs as an on-demand backup; if one runs already, the request waits for it to end.
   */
  requestBackup(key: string): void {
    this.repairs.add(key);
    this.runner.hooks.enqueue(key);
  }

  /** Proves backups restore (after each backup, or on the policy's verification schedule). */
  set verifier(verifier: Verifier | undefined) {
    this.runner.hooks.verifier = verifier;
  }
  /** Told how many snapshots retention forgot at a location (for the pruner). */
  set onForgotten(fn: ((location: BackupLocation, count: number) => void) | undefined) {
    this.runner.hooks.onForgotten = fn;
  }
  /** A location (namespace/name) whose S3 server refused the credentials mid-backup. */
  set onCredentialsRefused(fn: ((locationKey: string) => void) | undefined) {
    this.runner.hooks.onCredentialsRefused = fn;
  }

  /** Whether a backup of the policy runs in this process (the repository sync leaves its snapshot alone). */
  isRunning(key: string): boolean {
    return this.runner.isRunning(key);
  }

  /** Waits up to `timeoutMs` for running backups (and verifications) to finish, then cancels the rest. */
  drain(timeoutMs: number): Promise<void> {
    return this.runner.drain(timeoutMs, this.verifying.values());
  }

  async reconcile(key: string, signal: AbortSignal): Promise<Result | void> {
    const reconciledAt = Date.now();
    // 1. Load the policy, or stop if it is gone (cancelling a backup it was running: there is nobody to report to).
    const policy = this.deps.policies.get(key);
    if (!policy) {
      this.runner.cancel(key);
      this.served.delete(key);
      this.outcomes.forget(key);
      return;
    }
    const log = this.deps.log.child({ policy: key });
    const now = this.now();
    const st = policy.status ?? {};
    const generation = policy.metadata.generation ?? 0;

    // 2. Parse the schedule. A bad one is reported once per spec and waits for the user to fix it.
    let schedule;
    try {
      schedule = parseSchedule(policy.spec.schedule, policy.spec.timeZone);
    } catch (err) {
      if (!(err instanceof ScheduleError)) throw err;
      if (st.observedGeneration !== generation || st.backupErrorMessage !== err.message) {
        this.deps.metrics.numBackups.inc({ policyName: policy.metadata.name });
        await this.outcomes.reportFailure(policy, err.message, 'InvalidSchedule', { nextBackupTime: '' });
        log.warn('invalid schedule', { error: err.message });
      }
      return;
    }

    // 3. A `Running` status that no backup of this process matches was left by a previous process (or came back with a
    // restored etcd). The cache may only lag behind our own final write, so the API decides; then the repository tells
    // whether that backup stored its snapshot (adopted) or not (interrupted), in the background.
    if (st.backupStatus === 'Running' && !this.runner.has(key)) {
      const live = await this.deps.client.get<MetadataBackupPolicy>(BACKUP_POLICY, policy.metadata.namespace ?? '', policy.metadata.name)
        .catch(ignoreNotFound);
      if (live?.status?.backupStatus === 'Running') {
        const { client, locations, secrets, restic, metrics } = this.deps;
        this.runner.resolve(key, (s) => resolveUnfinished({
          client, locations, secrets, restic, metrics, log: this.deps.log, outcomes: this.outcomes, sync: this.runner.hooks.sync,
          maxWaitMs: this.deps.stallTimeoutMs ?? 5 * 60_000, counted: this.runner.takeUnreported(key),
        }, live, s));
        return;
      }
    }

    // 4. What is due: the latest scheduled slot not yet served (one catch-up at most), and a new backup-now value.
    const mem = this.served.get(key) ?? {};
    const lastServedMs = Math.max(Date.parse(st.lastScheduleTime ?? '') || 0, mem.slot ?? 0,
      Date.parse(policy.metadata.creationTimestamp ?? '') || 0);
    const slot = dueSlot({ schedule, now, suspended: policy.spec.suspend === true, lastServed: new Date(lastServedMs) });
    const nowValue = policy.metadata.annotations?.[BACKUP_NOW_ANNOTATION];
    const repair = this.repairs.has(key);
    const asked = nowValue !== undefined && nowValue !== '' && nowValue !== st.backupNowServed && nowValue !== mem.backupNow;
    const onDemand = repair || asked;
    const next = policy.spec.suspend ? undefined : schedule.next(now);

    const update: MetadataBackupPolicyStatus = {
      observedGeneration: generation,
      nextBackupTime: next?.toISOString() ?? '',
      conditions: this.outcomes.withHealth(key, setCondition(st.conditions, {
        type: READY, status: 'True', observedGeneration: generation,
        reason: policy.spec.suspend ? 'Suspended' : 'Scheduled',
        message: policy.spec.suspend ? 'Scheduled backups are paused' : `Next backup at ${next?.toISOString()}`,
      }, now)),
    };
    if (slot) update.lastScheduleTime = slot.toISOString();
    if (asked) update.backupNowServed = nowValue;

    // 5. Start the backup, or count it as skipped if this policy's previous one still runs.
    let start: Trigger | undefined;
    if (slot || onDemand) {
      const trigger: Trigger = onDemand ? 'OnDemand' : 'Scheduled';
      if (this.runner.has(key) && !slot && !asked) {
        // Only the repair's request, which waits for the running backup to end (it enqueues the policy then).
      } else if (this.runner.has(key)) {
        this.deps.metrics.skipped.inc({ policyName: policy.metadata.name });
        const queued = this.runner.waitingFor(key);
        await this.deps.recorder.event(policy, 'Normal', BACKUP_SKIPPED, queued
          ? `${trigger} backup skipped: the previous backup of this policy is still queued, waiting for ${queued}`
          : `${trigger} backup skipped: the previous backup is still running`);
        log.info('backup skipped: previous one still running', { trigger });
      } else {
        start = trigger;
        update.backupStatus = 'Running';
        update.backupTrigger = trigger;
        update.progress = { phase: 'Queued', updateTime: now.toISOString() };
      }
    }

    // 6. Write status when something changed. Only once `Running` (and the slot served) is written does the backup
    // start, so its own later writes cannot be overtaken, and a failed write leaves the slot due for the retry.
    if (this.statusChanged(st, update)) await this.outcomes.patchStatus(policy, update);
    this.served.set(key, { slot: slot?.getTime() ?? mem.slot, backupNow: onDemand ? nowValue : mem.backupNow });
    if (start) {
      this.repairs.delete(key);
      this.runner.start(key, start, signal, reconciledAt);
      log.info('backup started', { trigger: start, slot: slot?.toISOString() });
    }
    if (!start) this.resumeVerification(key, policy);
    const verifyNext = this.scheduledVerification(key, policy, now);
    const wake = [next, verifyNext].filter((d): d is Date => d !== undefined).sort((a, b) => a.getTime() - b.getTime())[0];
    if (!wake) return;
    return { requeueAfter: Math.min(Math.max(wake.getTime() - now.getTime(), 0) + 50, MAX_REQUEUE_MS) };
  }

  /**
   * In Schedule mode: verifies the policy's newest backup when its verification schedule is due (since the last
   * verification), in the background. Returns when the schedule fires next, to come back then.
   */
  private scheduledVerification(key: string, policy: MetadataBackupPolicy, now: Date): Date | undefined {
    const verifier = this.runner.hooks.verifier;
    if (verifyMode(policy) !== 'Schedule' || !verifier || !policy.spec.verification?.schedule) return undefined;
    let schedule;
    try {
      schedule = parseSchedule(policy.spec.verification.schedule, policy.spec.timeZone);
    } catch (err) {
      this.deps.log.warn('invalid verification schedule; no scheduled verification', { policy: key, error: (err as Error).message });
      return undefined;
    }
    const last = Math.max(Date.parse(policy.status?.lastVerifiedTime ?? '') || 0, Date.parse(policy.metadata.creationTimestamp ?? '') || 0,
      this.verifiedSlot.get(key) ?? 0);
    const slot = dueSlot({ schedule, now, suspended: false, lastServed: new Date(last) });
    const ns = policy.metadata.namespace ?? '';
    const newest = newestRecord(this.deps.records.list(), ns, policy.metadata.name);
    const location = this.deps.locations.get(`${ns}/${policy.spec.destination}`);
    if (slot && newest && location && !this.verifying.has(key)) {
      this.verifiedSlot.set(key, slot.getTime());
      this.verifyInBackground(verifier, key, policy, location, newest);
    }
    return schedule.next(now) ?? undefined;
  }

  /**
   * In AfterBackup mode: the newest backup's verification when it has none and none is under way, because the run
   * that took the backup was stopped before its verification ended (a shutdown, a lost leadership, a killed pod). Left
   * alone, that backup would stay unproven until the next one.
   */
  private resumeVerification(key: string, policy: MetadataBackupPolicy): void {
    const verifier = this.runner.hooks.verifier;
    if (!verifier || verifyMode(policy) !== 'AfterBackup' || this.runner.has(key) || this.verifying.has(key)) return;
    const ns = policy.metadata.namespace ?? '';
    const newest = newestRecord(this.deps.records.list(), ns, policy.metadata.name);
    const location = this.deps.locations.get(`${ns}/${policy.spec.destination}`);
    if (!newest || !location || newest.status?.verification || newest.metadata.deletionTimestamp) return;
    const recordKey = `${ns}/${newest.metadata.name}`;
    // Once per record in this process: the cache may lag behind the outcome just written.
    if (this.runner.verifiesRecord(recordKey) || this.verifying.has(`${key}@${newest.metadata.name}`) || this.resumed.has(recordKey)) return;
    this.resumed.add(recordKey);
    this.deps.log.info('verifying the newest backup, whose verification did not end', { policy: key, record: newest.metadata.name });
    this.verifyInBackground(verifier, key, policy, location, newest);
  }

  /** Verifies the record in the background, tracked under `key` (one at a time per key; a shutdown drains it). */
  private verifyInBackground(verifier: Verifier, key: string, policy: MetadataBackupPolicy, location: BackupLocation, record: MetadataBackupRecord): void {
    const abort = new AbortController();
    const done = verifier.verify(policy, location, record, abort.signal).then(() => undefined).finally(() => this.verifying.delete(key));
    this.verifying.set(key, { abort, done });
  }

  /**
   * Records adopted from the repository are verified like the others (unless the policy's verification is off), in the
   * background and newest first; the verification also reads their facts from the snapshot (SHA-256, size, revision,
   * certificates and their expiry), which an adopted record otherwise lacks.
   */
  verifyAdopted(adopted: readonly MetadataBackupRecord[]): void {
    const verifier = this.runner.hooks.verifier;
    if (!verifier) return;
    const newestFirst = [...adopted].sort((a, b) => recordTime(b) - recordTime(a));
    for (const record of newestFirst) {
      const ns = record.metadata.namespace ?? '';
      const policy = this.deps.policies.get(`${ns}/${record.spec.policy}`);
      const location = this.deps.locations.get(`${ns}/${record.spec.backuploc}`);
      const key = `${ns}/${record.spec.policy}@${record.metadata.name}`;
      if (!policy || !location || verifyMode(policy) === 'Never' || this.verifying.has(key)) continue;
      this.verifyInBackground(verifier, key, policy, location, record);
    }
  }

  private statusChanged(st: MetadataBackupPolicyStatus, update: MetadataBackupPolicyStatus): boolean {
    const { conditions, ...rest } = update;
    const oldReady = st.conditions?.find((c) => c.type === READY);
    const newReady = conditions?.find((c) => c.type === READY);
    if (oldReady?.reason !== newReady?.reason || oldReady?.status !== newReady?.status) return true;
    return Object.entries(rest).some(([k, v]) => JSON.stringify((st as Record<string, unknown>)[k]) !== JSON.stringify(v));
  }
}
