/**
 * @module MetadataBackupPolicy reconciler: decide from the schedule, `suspend` and the backup-now annotation whether a
 * backup is due; start it (in the background, under a global concurrency limit, never two for one policy); when it
 * ends, write status, create the MetadataBackupRecord, emit events and metrics, and apply retention.
 */
import { READY, setCondition } from '../api/conditions.ts';
import { BACKUP_NOW_ANNOTATION, BACKUP_POLICY, BACKUP_RECORD, POLICY_LABEL, RECORD_FINALIZER,
  SNAPSHOT_FORGOTTEN_ANNOTATION } from '../api/group.ts';
import { BACKUP_FAILED, BACKUP_SKIPPED, BACKUP_SUCCEEDED, BACKUPS_EXPIRED, RETENTION_FAILED, messages } from '../api/events.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupPolicyStatus, MetadataBackupRecord, Secret } from '../api/types.ts';
import { type BackupProgress, type BackupResult, runBackup } from '../engine/backup.ts';
import type { Restic } from '../engine/restic.ts';
import { selectExpired } from '../engine/retention.ts';
import { forgetSnapshots } from '../engine/snapshots.ts';
import type { KubeClient } from '../kube/client.ts';
import { ignoreNotFound, isAlreadyExists } from '../kube/errors.ts';
import type { Metrics } from '../metrics/registry.ts';
import type { Reconciler, Result } from '../runtime/controller.ts';
import type { Informer } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import { ScheduleError, dueSlot, parseSchedule } from '../schedule/schedule.ts';
import type { Logger } from '../util/log.ts';
import { Semaphore } from '../util/semaphore.ts';
import { sleep } from '../util/sleep.ts';
import { InputError, etcdConnection, locationRepository, readyLocation } from './inputs.ts';

export interface BackupPolicyDeps {
  client: KubeClient;
  policies: Informer<MetadataBackupPolicy>;
  locations: Informer<BackupLocation>;
  secrets: Informer<Secret>;
  records: Informer<MetadataBackupRecord>;
  recorder: EventRecorder;
  metrics: Metrics;
  restic: Restic;
  log: Logger;
  /** restic --host for backups. */
  host: string;
  /** Backups running at once across all policies (protects etcd). */
  maxConcurrent: number;
  /** Least time between two progress writes to status. */
  progressIntervalMs?: number;
  /** How long a backup waits for a missing or initialising location before failing. */
  locationWaitMs?: number;
  /** Fail an upload that makes no progress for this long. */
  stallTimeoutMs?: number;
  now?: () => Date;
}

type Trigger = 'Scheduled' | 'OnDemand';

interface Running {
  abort: AbortController;
  done: Promise<void>;
}

/** Seconds as KubeDR wrote them: a string with nanosecond precision, e.g. "0.318463127". */
const seconds = (s: number): string => s.toFixed(9);

/** Longest requeue: timers beyond ~24 days overflow, and an hourly look costs nothing. */
const MAX_REQUEUE_MS = 60 * 60_000;

/** Fields of a successful backup that a failure must clear rather than leave beside its error. */
const SUCCESS_FIGURES = ['filesNew', 'filesChanged', 'dataAdded', 'totalBytesProcessed', 'snapshotId', 'mbrName'] as const;

export class BackupPolicyReconciler implements Reconciler {
  private readonly running = new Map<string, Running>();
  /** What this process has served, ahead of the (possibly stale) cache: the slot and the backup-now value. */
  private readonly served = new Map<string, { slot?: number; backupNow?: string }>();
  /** Policies that ran a backup in this process: a `Running` status of any other was left by a previous process. */
  private readonly ranHere = new Set<string>();
  private readonly slots: Semaphore;
  private readonly now: () => Date;
  /** Set by the composition root: enqueue a policy key (after a backup ends). */
  enqueue: (key: string) => void = () => {};

  constructor(private readonly deps: BackupPolicyDeps) {
    this.slots = new Semaphore(deps.maxConcurrent);
    this.now = deps.now ?? (() => new Date());
  }

  async reconcile(key: string, signal: AbortSignal): Promise<Result | void> {
    // 1. Load the policy, or stop if it is gone (cancelling a backup it was running: there is nobody to report to).
    const policy = this.deps.policies.get(key);
    if (!policy) {
      this.running.get(key)?.abort.abort();
      this.served.delete(key);
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
        await this.reportFailure(policy, err.message, 'InvalidSchedule', { nextBackupTime: '' });
        log.warn('invalid schedule', { error: err.message });
      }
      return;
    }

    // 3. A `Running` status that no backup of ours matches was interrupted by a restart: say so, count it.
    if (st.backupStatus === 'Running' && !this.running.has(key) && !this.ranHere.has(key)) {
      this.deps.metrics.numBackups.inc({ policyName: policy.metadata.name });
      await this.reportFailure(policy, 'interrupted: the controller stopped during the backup; no record was created', 'Interrupted', {});
    }

    // 4. What is due: the latest scheduled slot not yet served (one catch-up at most), and a new backup-now value.
    const mem = this.served.get(key) ?? {};
    const lastServedMs = Math.max(Date.parse(st.lastScheduleTime ?? '') || 0, mem.slot ?? 0,
      Date.parse(policy.metadata.creationTimestamp ?? '') || 0);
    const slot = dueSlot({ schedule, now, suspended: policy.spec.suspend === true, lastServed: new Date(lastServedMs) });
    const nowValue = policy.metadata.annotations?.[BACKUP_NOW_ANNOTATION];
    const onDemand = nowValue !== undefined && nowValue !== '' && nowValue !== st.backupNowServed && nowValue !== mem.backupNow;
    const next = policy.spec.suspend ? undefined : schedule.next(now);

    const update: MetadataBackupPolicyStatus = {
      observedGeneration: generation,
      nextBackupTime: next?.toISOString() ?? '',
      conditions: setCondition(st.conditions, {
        type: READY, status: 'True', observedGeneration: generation,
        reason: policy.spec.suspend ? 'Suspended' : 'Scheduled',
        message: policy.spec.suspend ? 'Scheduled backups are paused' : `Next backup at ${next?.toISOString()}`,
      }, now),
    };
    if (slot) update.lastScheduleTime = slot.toISOString();
    if (onDemand) update.backupNowServed = nowValue;

    // 5. Start the backup, or count it as skipped if this policy's previous one still runs.
    let start: Trigger | undefined;
    if (slot || onDemand) {
      const trigger: Trigger = onDemand ? 'OnDemand' : 'Scheduled';
      if (this.running.has(key)) {
        this.deps.metrics.skipped.inc({ policyName: policy.metadata.name });
        await this.deps.recorder.event(policy, 'Normal', BACKUP_SKIPPED, `${trigger} backup skipped: the previous backup is still running`);
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
    if (this.statusChanged(st, update)) await this.patchStatus(policy, update);
    this.served.set(key, { slot: slot?.getTime() ?? mem.slot, backupNow: onDemand ? nowValue : mem.backupNow });
    if (start) {
      this.start(key, start, signal);
      log.info('backup started', { trigger: start, slot: slot?.toISOString() });
    }
    if (!next) return;
    return { requeueAfter: Math.min(Math.max(next.getTime() - now.getTime(), 0) + 50, MAX_REQUEUE_MS) };
  }

  /** Waits up to `timeoutMs` for running backups to finish, then cancels the rest. */
  async drain(timeoutMs: number): Promise<void> {
    const all = () => Promise.allSettled([...this.running.values()].map((r) => r.done));
    const finished = await Promise.race([all().then(() => true), Bun.sleep(timeoutMs).then(() => false)]);
    if (finished) return;
    this.deps.log.warn('cancelling running backups at shutdown', { count: this.running.size });
    for (const r of this.running.values()) r.abort.abort();
    await all();
  }

  private statusChanged(st: MetadataBackupPolicyStatus, update: MetadataBackupPolicyStatus): boolean {
    const { conditions, ...rest } = update;
    const oldReady = st.conditions?.find((c) => c.type === READY);
    const newReady = conditions?.find((c) => c.type === READY);
    if (oldReady?.reason !== newReady?.reason || oldReady?.status !== newReady?.status) return true;
    return Object.entries(rest).some(([k, v]) => JSON.stringify((st as Record<string, unknown>)[k]) !== JSON.stringify(v));
  }

  private async patchStatus(policy: MetadataBackupPolicy, status: Record<string, unknown>): Promise<void> {
    await this.deps.client.patchStatus(BACKUP_POLICY, policy.metadata.namespace ?? '', policy.metadata.name, status);
  }

  private start(key: string, trigger: Trigger, stopping: AbortSignal): void {
    const abort = new AbortController();
    this.ranHere.add(key);
    let release: (() => void) | undefined;
    // Called once the backup is reported, before retention: retention needs neither etcd nor this policy's slot
    // (repository operations are serialised anyway), so a new backup of the policy may start meanwhile.
    const finished = () => {
      release?.();
      if (this.running.get(key) === entry) this.running.delete(key);
    };
    const entry: Running = {
      abort,
      done: (async () => {
        try {
          release = await this.slots.acquire(abort.signal);
          await this.runOne(key, trigger, abort.signal, finished);
        } catch (err) {
          this.deps.log.error('backup run failed unexpectedly', { policy: key, err });
        } finally {
          finished();
          if (!stopping.aborted) this.enqueue(key);
        }
      })(),
    };
    this.running.set(key, entry);
  }

  /** One backup from start to report. Never throws: every failure ends as Failed status, a Warning event and a metric. */
  private async runOne(key: string, trigger: Trigger, signal: AbortSignal, finished: () => void): Promise<void> {
    const policy = this.deps.policies.get(key);
    if (!policy) return;
    const name = policy.metadata.name;
    const ns = policy.metadata.namespace ?? '';
    const log = this.deps.log.child({ policy: key, trigger });
    const started = performance.now();
    this.deps.metrics.numBackups.inc({ policyName: name });
    try {
      const location = await this.waitForLocation(ns, policy.spec.destination, signal);
      const repo = locationRepository(location, this.deps.secrets);
      const etcd = etcdConnection(ns, policy.spec.etcdEndpoint ?? 'https://127.0.0.1:2379', policy.spec.etcdCreds ?? 'etcd-creds', this.deps.secrets);
      const progress = this.progressWriter(policy);
      const result = await runBackup(this.deps.restic, {
        etcd, certsDir: policy.spec.certsDir || undefined, repo, host: this.deps.host, tags: [name], signal,
        onProgress: progress.write, stallTimeoutMs: this.deps.stallTimeoutMs,
      }).finally(progress.flush);
      const record = await this.createRecord(policy, location, result);
      await this.reportSuccess(policy, result, record);
      log.info('backup completed', { snapshotId: result.summary.snapshotId, durationSecs: result.durationSecs, etcdBytes: result.etcd.size });
      finished();
      await this.applyRetention(policy, location, record);
    } catch (err) {
      const message = signal.aborted ? 'cancelled: the controller shut down or the policy was deleted during the backup'
        : err instanceof Error ? err.message : String(err);
      const durationSecs = (performance.now() - started) / 1000;
      this.deps.metrics.backupDuration.observe({ policyName: name }, durationSecs);
      if (this.deps.policies.get(key)) await this.reportFailure(policy, message, 'BackupFailed', { totalDurationSecs: seconds(durationSecs) });
      log.warn('backup failed', { error: message });
    }
  }

  /**
   * The destination, once ready. A location created together with the policy may not be in the cache yet or still be
   * initialising: wait for it (bounded), so applying both at once works. A location that failed fails the backup now.
   */
  private async waitForLocation(ns: string, name: string, signal: AbortSignal): Promise<BackupLocation> {
    const deadline = Date.now() + (this.deps.locationWaitMs ?? 120_000);
    for (;;) {
      try {
        return readyLocation(ns, name, this.deps.locations);
      } catch (err) {
        const status = this.deps.locations.get(`${ns}/${name}`)?.status?.initStatus;
        if (!(err instanceof InputError) || status === 'Failed' || Date.now() >= deadline || signal.aborted) throw err;
      }
      await sleep(500, signal);
    }
  }

  /**
   * Progress to status, at most every `progressIntervalMs` (and on each phase change). Writes are chained, and `flush`
   * waits for the last, so a late progress write never lands after the final status.
   */
  private progressWriter(policy: MetadataBackupPolicy): { write: (p: BackupProgress) => void; flush: () => Promise<void> } {
    const interval = this.deps.progressIntervalMs ?? 3000;
    let last = 0;
    let lastPhase = '';
    let chain = Promise.resolve();
    return {
      write: (p) => {
        const t = Date.now();
        if (p.phase === lastPhase && t - last < interval) return;
        last = t;
        lastPhase = p.phase;
        const progress = { phase: p.phase, bytesDone: p.bytesDone, totalBytes: p.totalBytes ?? null,
          percent: p.percent === undefined ? null : Math.round(p.percent), updateTime: new Date(t).toISOString() };
        chain = chain.then(() => this.patchStatus(policy, { progress }))
          .catch((err) => this.deps.log.debug('progress write failed', { err }));
      },
      flush: () => chain,
    };
  }

  /** Creates `mbr-<snapshotId>`; an existing one (a retried write) is fine. */
  private async createRecord(policy: MetadataBackupPolicy, location: BackupLocation, r: BackupResult): Promise<MetadataBackupRecord> {
    const ns = policy.metadata.namespace ?? '';
    const name = `mbr-${r.summary.snapshotId}`;
    const record: MetadataBackupRecord = {
      apiVersion: `${BACKUP_RECORD.group}/${BACKUP_RECORD.version}`, kind: BACKUP_RECORD.kind,
      metadata: { name, namespace: ns, labels: { [POLICY_LABEL]: policy.metadata.name }, finalizers: [RECORD_FINALIZER] },
      spec: { snapshotId: r.summary.snapshotId, policy: policy.metadata.name, backuploc: location.metadata.name },
    };
    try {
      await this.deps.client.create(BACKUP_RECORD, ns, record);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    const status = {
      backupTime: this.now().toISOString(), etcdRevision: r.etcd.revision, etcdSnapshotSize: r.etcd.size, etcdSnapshotSha256: r.etcd.sha256,
      dataAdded: r.summary.dataAdded, totalBytesProcessed: r.summary.totalBytesProcessed, totalDurationSecs: seconds(r.durationSecs),
    };
    await this.deps.client.patchStatus(BACKUP_RECORD, ns, name, status);
    return { ...record, status };
  }

  private async reportSuccess(policy: MetadataBackupPolicy, r: BackupResult, record: MetadataBackupRecord): Promise<void> {
    const name = policy.metadata.name;
    const s = r.summary;
    const time = record.status?.backupTime ?? this.now().toISOString();
    await this.patchStatus(policy, {
      backupStatus: 'Completed', backupTime: time, backupErrorMessage: '',
      filesNew: s.filesNew, filesChanged: s.filesChanged, dataAdded: s.dataAdded, totalBytesProcessed: s.totalBytesProcessed,
      totalDurationSecs: seconds(r.durationSecs), snapshotId: s.snapshotId, mbrName: record.metadata.name,
      lastSuccessfulBackupTime: time, lastSuccessfulSnapshotId: s.snapshotId, progress: null,
    });
    this.deps.metrics.numSuccessful.inc({ policyName: name });
    this.deps.metrics.backupDuration.observe({ policyName: name }, r.durationSecs);
    await this.deps.recorder.event(policy, 'Normal', BACKUP_SUCCEEDED, messages.backupSucceeded(s.snapshotId));
  }

  /** Failed status (clearing the previous success's figures), a Warning event and the failure count. */
  private async reportFailure(policy: MetadataBackupPolicy, message: string, reason: string, extra: Record<string, unknown>): Promise<void> {
    const now = this.now();
    const cleared = Object.fromEntries(SUCCESS_FIGURES.map((f) => [f, null]));
    await this.patchStatus(policy, {
      ...cleared, ...extra,
      backupStatus: 'Failed', backupTime: now.toISOString(), backupErrorMessage: message, progress: null,
      observedGeneration: policy.metadata.generation ?? 0,
      conditions: setCondition(policy.status?.conditions, {
        type: READY, status: reason === 'InvalidSchedule' ? 'False' : 'True', observedGeneration: policy.metadata.generation ?? 0,
        reason, message,
      }, now),
    });
    this.deps.metrics.numFailed.inc({ policyName: policy.metadata.name });
    await this.deps.recorder.event(policy, 'Warning', BACKUP_FAILED, message);
  }

  /**
   * Keeps the newest `retainNumBackups` successful backups of this policy at this location: forgets the rest in one
   * restic run (forget + prune), then deletes their records. A failure is reported and retried after the next backup.
   */
  private async applyRetention(policy: MetadataBackupPolicy, location: BackupLocation, newest: MetadataBackupRecord): Promise<void> {
    const ns = policy.metadata.namespace ?? '';
    const mine = new Map<string, MetadataBackupRecord>();
    for (const r of this.deps.records.list()) {
      if (r.metadata.namespace === ns && r.spec.policy === policy.metadata.name && r.spec.backuploc === location.metadata.name &&
        !r.metadata.deletionTimestamp) mine.set(r.metadata.name, r);
    }
    mine.set(newest.metadata.name, newest);
    const expired = selectExpired([...mine.values()].map((r) => ({
      name: r.metadata.name, snapshotId: r.spec.snapshotId, time: r.status?.backupTime ?? r.metadata.creationTimestamp ?? '',
    })), policy.spec.retainNumBackups ?? 120);
    if (expired.length === 0) return;
    try {
      await forgetSnapshots(this.deps.restic, locationRepository(location, this.deps.secrets), expired.map((e) => e.snapshotId));
      for (const e of expired) {
        await this.deps.client.patch(BACKUP_RECORD, ns, e.name, { metadata: { annotations: { [SNAPSHOT_FORGOTTEN_ANNOTATION]: 'true' } } })
          .catch(ignoreNotFound);
        await this.deps.client.delete(BACKUP_RECORD, ns, e.name).catch(ignoreNotFound);
      }
      await this.deps.recorder.event(policy, 'Normal', BACKUPS_EXPIRED,
        `Expired ${expired.length} backup(s) beyond retainNumBackups=${policy.spec.retainNumBackups}: ${expired.map((e) => e.name).join(', ')}`);
    } catch (err) {
      const message = `retention failed, old backups kept until the next backup: ${err instanceof Error ? err.message : String(err)}`;
      await this.deps.recorder.event(policy, 'Warning', RETENTION_FAILED, message);
      this.deps.log.warn('retention failed', { policy: policy.metadata.name, error: message });
    }
  }
}
