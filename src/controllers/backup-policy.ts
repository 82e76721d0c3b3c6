/**
 * @module MetadataBackupPolicy reconciler: decide from the schedule, `suspend` and the backup-now annotation whether a
 * backup is due; start it (in the background, under a global concurrency limit, never two for one policy); when it
 * ends, create the MetadataBackupRecord and write status (both retried until they land), emit events and metrics, and
 * apply retention (retention.ts). A `Running` status that no backup of this process matches is resolved from the
 * repository (repository-sync.ts): adopted if the backup stored its snapshot, interrupted if not.
 */
import { LAST_BACKUP_SUCCEEDED, READY, setCondition } from '../api/conditions.ts';
import { BACKUP_NOW_ANNOTATION, BACKUP_POLICY, BACKUP_RECORD, POLICY_LABEL } from '../api/group.ts';
import { BACKUP_FAILED, BACKUP_SKIPPED, BACKUP_SUCCEEDED, messages } from '../api/events.ts';
import type { BackupLocation, Condition, MetadataBackupPolicy, MetadataBackupPolicyStatus, MetadataBackupRecord, Secret } from '../api/types.ts';
import { type BackupProgress, type BackupResult, runBackup } from '../engine/backup.ts';
import { EngineError } from '../engine/errors.ts';
import { type BackupOrigin, originTags } from '../engine/origin.ts';
import type { Restic } from '../engine/restic.ts';
import type { KubeClient } from '../kube/client.ts';
import { ignoreNotFound } from '../kube/errors.ts';
import type { Metrics } from '../metrics/registry.ts';
import type { Reconciler, Result } from '../runtime/controller.ts';
import { type Informer, objectKey } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import { ScheduleError, dueSlot, parseSchedule } from '../schedule/schedule.ts';
import type { Logger } from '../util/log.ts';
import { Semaphore } from '../util/semaphore.ts';
import { retryUntilDone } from '../util/retry.ts';
import { sleep } from '../util/sleep.ts';
import { InputError, etcdConnection, locationRepository, readyLocation } from './inputs.ts';
import { isPermanent, newRecord, newestSnapshot, policyLabelValue, writeRecord } from './records.ts';
import type { RepositorySync } from './repository-sync.ts';
import { waitForOtherWriters } from './other-writers.ts';
import { applyRetention } from './retention.ts';
import { type Verifier, verifyMode } from './verification.ts';

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
  /** This cluster and install, recorded with every backup (restic tags) so a shared bucket tells them apart. */
  origin: BackupOrigin;
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
  /** Not a backup: the resolution of one another process left unfinished (its snapshot may await adoption). */
  resolving?: boolean;
}

/** The backup stored its snapshot, but its record could not be written; a repository sync will make it. */
class RecordNotWritten extends Error {
  constructor(readonly snapshotId: string, cause: unknown) {
    super(`snapshot ${snapshotId} stored, but its record could not be written`, { cause });
    this.name = 'RecordNotWritten';
  }
}

/** Moments of one backup run: wall-clock epoch ms where another process compares them, else the monotonic clock. */
interface RunMarks {
  /** The reconcile that started the run (wall clock). */
  reconciledAt: number;
  /** The run began, its `Running` status written (wall clock). */
  startedAt: number;
  started: number;
  /** The engine was called (location ready, slot taken). */
  engine?: number;
  engineDone?: number;
  /** The last progress write landed. */
  flushed?: number;
  recorded?: number;
}

/** Where the time of a successful run went, in whole milliseconds, as fields of one log line. */
function runTimings(m: RunMarks, r: BackupResult, done: number): Record<string, unknown> {
  const ms = (x: number) => Math.round(x);
  const t = r.timings;
  return {
    reconciledAt: new Date(m.reconciledAt).toISOString(),
    timingsMs: {
      start: m.startedAt - m.reconciledAt, wait: ms((m.engine ?? m.started) - m.started), stage: ms(t.stageMs),
      etcdConnect: ms(t.etcd.connectMs), etcdStream: ms(t.etcd.streamMs), hash: ms(t.etcd.hashMs), write: ms(t.etcd.writeMs),
      repoWait: ms(t.repoWaitMs), upload: ms(t.uploadMs), uploadOwnCpu: ms(t.uploadOwnCpuMs), resticOwn: ms(r.summary.totalDuration * 1000), cleanup: ms(t.cleanupMs),
      progressFlush: ms((m.flushed ?? done) - (m.engineDone ?? done)), record: ms((m.recorded ?? done) - (m.flushed ?? done)),
      status: ms(done - (m.recorded ?? done)), total: ms(done - m.started),
    },
  };
}

/** Seconds as KubeDR wrote them: a string with nanosecond precision, e.g. "0.318463127". */
const seconds = (s: number): string => s.toFixed(9);

/** Longest requeue: timers beyond ~24 days overflow, and an hourly look costs nothing. */
const MAX_REQUEUE_MS = 60 * 60_000;

/** Fields of a successful backup that a failure must clear rather than leave beside its error. */
const SUCCESS_FIGURES = ['filesNew', 'filesChanged', 'dataAdded', 'totalBytesProcessed', 'snapshotId', 'mbrName'] as const;

export class BackupPolicyReconciler implements Reconciler {
  private readonly running = new Map<string, Running>();
  /** The LastBackupSucceeded condition this process last wrote, per policy: the cache may not show it yet. */
  private readonly health = new Map<string, Condition>();
  /** What this process has served, ahead of the (possibly stale) cache: the slot and the backup-now value. */
  private readonly served = new Map<string, { slot?: number; backupNow?: string }>();
  private readonly slots: Semaphore;
  private readonly now: () => Date;
  /** Set by the composition root: enqueue a policy key (after a backup ends). */
  enqueue: (key: string) => void = () => {};
  /**
   * Set by the composition root: makes records of snapshots that have none; asked after a record write that failed
   * and for a backup another process left unfinished.
   */
  sync?: Pick<RepositorySync, 'syncLocation' | 'request'>;
  /** Set by the composition root: proves backups restore (after each backup, or on the policy's verification schedule). */
  verifier?: Verifier;
  /** Scheduled verifications running now, by policy key, and the slot each served (ahead of the cache). */
  private readonly verifying = new Map<string, Running>();
  private readonly verifiedSlot = new Map<string, number>();
  /**
   * Every backup run until its very end: a run leaves `running` once reported, so that a new backup of its policy may
   * start, but its retention and after-backup verification go on, and a shutdown must wait for them (or cancel them).
   */
  private readonly afterwork = new Set<Running>();
  /** Policies (namespace/name) whose backup holds one of the --max-concurrent-backups slots, and since when. */
  private readonly slotHolders = new Map<string, number>();

  /** What a backup waiting for a slot waits for: "a backup slot (1 at a time), held by ns/a (running 2m10s)". */
  private queuedBehind(): string | undefined {
    if (this.slotHolders.size === 0) return undefined;
    const now = Date.now();
    const held = [...this.slotHolders].map(([k, since]) => `${k} (running ${Math.round((now - since) / 1000)} s)`);
    return `a backup slot (--max-concurrent-backups=${this.deps.maxConcurrent}), held by ${held.join(', ')}`;
  }
  /** Set by the composition root: told how many snapshots retention forgot at a location (for the pruner). */
  onForgotten?: (location: BackupLocation, count: number) => void;
  /** Set by the composition root: a location (namespace/name) whose S3 server refused the credentials mid-backup. */
  onCredentialsRefused?: (locationKey: string) => void;

  constructor(private readonly deps: BackupPolicyDeps) {
    this.slots = new Semaphore(deps.maxConcurrent);
    this.now = deps.now ?? (() => new Date());
  }

  async reconcile(key: string, signal: AbortSignal): Promise<Result | void> {
    const reconciledAt = Date.now();
    // 1. Load the policy, or stop if it is gone (cancelling a backup it was running: there is nobody to report to).
    const policy = this.deps.policies.get(key);
    if (!policy) {
      this.running.get(key)?.abort.abort();
      this.served.delete(key);
      this.health.delete(key);
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

    // 3. A `Running` status that no backup of this process matches was left by a previous process (or came back with a
    // restored etcd). The cache may only lag behind our own final write, so the API decides; then the repository tells
    // whether that backup stored its snapshot (adopted) or not (interrupted), in the background.
    if (st.backupStatus === 'Running' && !this.running.has(key)) {
      const live = await this.deps.client.get<MetadataBackupPolicy>(BACKUP_POLICY, policy.metadata.namespace ?? '', policy.metadata.name)
        .catch(ignoreNotFound);
      if (live?.status?.backupStatus === 'Running') {
        this.resolveUnfinished(key, live);
        return;
      }
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
      conditions: this.withHealth(key, setCondition(st.conditions, {
        type: READY, status: 'True', observedGeneration: generation,
        reason: policy.spec.suspend ? 'Suspended' : 'Scheduled',
        message: policy.spec.suspend ? 'Scheduled backups are paused' : `Next backup at ${next?.toISOString()}`,
      }, now)),
    };
    if (slot) update.lastScheduleTime = slot.toISOString();
    if (onDemand) update.backupNowServed = nowValue;

    // 5. Start the backup, or count it as skipped if this policy's previous one still runs.
    let start: Trigger | undefined;
    if (slot || onDemand) {
      const trigger: Trigger = onDemand ? 'OnDemand' : 'Scheduled';
      if (this.running.has(key)) {
        this.deps.metrics.skipped.inc({ policyName: policy.metadata.name });
        const queued = !this.slotHolders.has(key) && !this.running.get(key)?.resolving ? this.queuedBehind() : undefined;
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
    if (this.statusChanged(st, update)) await this.patchStatus(policy, update);
    this.served.set(key, { slot: slot?.getTime() ?? mem.slot, backupNow: onDemand ? nowValue : mem.backupNow });
    if (start) {
      this.start(key, start, signal, reconciledAt);
      log.info('backup started', { trigger: start, slot: slot?.toISOString() });
    }
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
    if (verifyMode(policy) !== 'Schedule' || !this.verifier || !policy.spec.verification?.schedule) return undefined;
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
    const newest = this.deps.records.list()
      .filter((r) => r.metadata.namespace === ns && r.spec.policy === policy.metadata.name && !r.metadata.deletionTimestamp)
      .sort((a, b) => Date.parse(b.status?.backupTime ?? '') - Date.parse(a.status?.backupTime ?? ''))[0];
    const location = this.deps.locations.get(`${ns}/${policy.spec.destination}`);
    if (slot && newest && location && !this.verifying.has(key)) {
      this.verifiedSlot.set(key, slot.getTime());
      const abort = new AbortController();
      const done = this.verifier.verify(policy, location, newest, abort.signal).then(() => undefined)
        .finally(() => this.verifying.delete(key));
      this.verifying.set(key, { abort, done });
    }
    return schedule.next(now) ?? undefined;
  }

  /**
   * Whether a backup of the policy runs in this process, so its snapshot is about to get its record and a sync must
   * leave it alone. The resolution of a backup another process left unfinished does not count: it needs the sync.
   */
  isRunning(key: string): boolean {
    const r = this.running.get(key);
    return r !== undefined && !r.resolving;
  }

  /**
   * A backup another process started and never reported: sync its location, then report it Completed if the
   * repository holds a snapshot of this policy newer than its last success (its record was just adopted), or
   * interrupted if it holds none. Counted once either way, so kubedr_num_backups stays successes + failures.
   */
  private resolveUnfinished(key: string, policy: MetadataBackupPolicy): void {
    const entry: Running = { abort: new AbortController(), done: Promise.resolve(), resolving: true };
    this.running.set(key, entry);
    entry.done = this.resolve(policy, entry.abort.signal)
      .catch((err) => this.deps.log.error('resolving an unfinished backup failed', { policy: key, err }))
      .finally(() => {
        if (this.running.get(key) === entry) this.running.delete(key);
        this.enqueue(key);
      });
  }

  private async resolve(policy: MetadataBackupPolicy, signal: AbortSignal): Promise<void> {
    const name = policy.metadata.name;
    const ns = policy.metadata.namespace ?? '';
    this.deps.metrics.numBackups.inc({ policyName: name });
    const since = Date.parse(policy.status?.lastSuccessfulBackupTime ?? '') || 0;
    let found: MetadataBackupRecord | undefined;
    let unknown = '';
    try {
      if (!this.sync) throw new Error('no repository sync');
      // The earlier leader's restic may still be uploading (that controller frozen, or cut off from the API only).
      const location = this.deps.locations.get(`${ns}/${policy.spec.destination}`);
      if (location) {
        await waitForOtherWriters(this.deps.restic, locationRepository(location, this.deps.secrets),
          { maxWaitMs: this.deps.stallTimeoutMs ?? 5 * 60_000, signal, log: this.deps.log.child({ policy: `${ns}/${name}` }) });
      }
      await this.sync.syncLocation(ns, policy.spec.destination, signal);
      // From the API, not the cache: a record the sync (this one, or one a moment ago) just made may not be cached yet.
      const { items } = await this.deps.client.list<MetadataBackupRecord>(BACKUP_RECORD, ns,
        { labelSelector: `${POLICY_LABEL}=${policyLabelValue(name)}` });
      found = items
        .filter((r) => r.spec.policy === name && Date.parse(r.status?.backupTime ?? '') > since)
        .sort((a, b) => Date.parse(b.status?.backupTime ?? '') - Date.parse(a.status?.backupTime ?? ''))[0];
    } catch (err) {
      unknown = err instanceof Error ? err.message : String(err);
    }
    if (found) return this.reportAdopted(policy, found, signal);
    const message = unknown
      ? `interrupted: the controller stopped during the backup; whether it stored a snapshot could not be checked (${unknown}); a later repository sync records it if it did`
      : 'interrupted: the controller stopped during the backup, before it stored a snapshot';
    await this.reportFailure(policy, message, 'Interrupted', {}, signal);
  }

  /** Waits up to `timeoutMs` for running backups (and verifications) to finish, then cancels the rest. */
  async drain(timeoutMs: number): Promise<void> {
    const work = () => [...new Set([...this.running.values(), ...this.verifying.values(), ...this.afterwork])];
    const all = () => Promise.allSettled(work().map((r) => r.done));
    const finished = await Promise.race([all().then(() => true), Bun.sleep(timeoutMs).then(() => false)]);
    if (finished) return;
    this.deps.log.warn('cancelling running backups at shutdown', { count: work().length });
    for (const r of work()) r.abort.abort();
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

  /**
   * A final status (Completed, Failed) must land, or the policy would read `Running` while nothing runs: retried
   * through API outages until it does, the policy is gone, or `signal` aborts (then the next controller resolves it).
   */
  private async patchStatusUntilDone(policy: MetadataBackupPolicy, status: Record<string, unknown>, signal?: AbortSignal): Promise<void> {
    await retryUntilDone(() => this.patchStatus(policy, status).catch(ignoreNotFound), {
      signal, permanent: isPermanent,
      onRetry: (err, attempt, delayMs) => this.deps.log.warn('status write failed; retrying', { policy: policy.metadata.name, attempt, delayMs, err }),
    });
  }

  private start(key: string, trigger: Trigger, stopping: AbortSignal, reconciledAt: number): void {
    const abort = new AbortController();
    let release: (() => void) | undefined;
    // Called once the backup is reported, before retention: retention needs neither etcd nor this policy's slot
    // (repository operations are serialised anyway), so a new backup of the policy may start meanwhile.
    const finished = () => {
      release?.();
      this.slotHolders.delete(key);
      if (this.running.get(key) === entry) this.running.delete(key);
    };
    const entry: Running = {
      abort,
      done: (async () => {
        try {
          // The slot is taken only once the location is ready (runOne): a policy waiting for its location must not
          // hold up every other policy's backup.
          const acquire = async () => {
            const behind = this.slotHolders.size >= this.deps.maxConcurrent ? this.queuedBehind() : undefined;
            const policy = this.deps.policies.get(key);
            if (behind && policy) {
              // Said where a person looks (kubectl, kubedr status): which backups this one waits for.
              await this.patchStatus(policy, { progress: { phase: 'Queued', waitingFor: behind, updateTime: new Date().toISOString() } })
                .catch((err) => this.deps.log.debug('progress write failed', { err }));
            }
            release = await this.slots.acquire(abort.signal);
            this.slotHolders.set(key, Date.now());
          };
          await this.runOne({ key, trigger, reconciledAt }, abort.signal, acquire, finished);
        } catch (err) {
          this.deps.log.error('backup run failed unexpectedly', { policy: key, err });
        } finally {
          finished();
          if (!stopping.aborted) this.enqueue(key);
        }
      })(),
    };
    this.running.set(key, entry);
    this.afterwork.add(entry);
    void entry.done.finally(() => this.afterwork.delete(entry));
  }

  /** One backup from start to report. Never throws: every failure ends as Failed status, a Warning event and a metric. */
  private async runOne(run: { key: string; trigger: Trigger; reconciledAt: number }, signal: AbortSignal, acquireSlot: () => Promise<void>,
    finished: () => void): Promise<void> {
    const { key, trigger } = run;
    const policy = this.deps.policies.get(key);
    if (!policy) return;
    const name = policy.metadata.name;
    const ns = policy.metadata.namespace ?? '';
    const log = this.deps.log.child({ policy: key, trigger });
    const started = performance.now();
    const marks: RunMarks = { reconciledAt: run.reconciledAt, startedAt: Date.now(), started };
    this.deps.metrics.numBackups.inc({ policyName: name });
    try {
      const location = await this.waitForLocation(ns, policy.spec.destination, signal);
      await acquireSlot();
      const repo = locationRepository(location, this.deps.secrets);
      const etcd = etcdConnection(ns, policy.spec.etcdEndpoint ?? 'https://127.0.0.1:2379', policy.spec.etcdCreds ?? 'etcd-creds', this.deps.secrets);
      const progress = this.progressWriter(policy);
      marks.engine = performance.now();
      const result = await runBackup(this.deps.restic, {
        etcd, certsDir: policy.spec.certsDir || undefined, extraPaths: policy.spec.extraPaths, repo, host: this.deps.host, tags: [name, ...originTags(this.deps.origin)],
        parent: newestSnapshot(this.deps.records.list(), ns, name, location.metadata.name),
        signal, onProgress: progress.write, stallTimeoutMs: this.deps.stallTimeoutMs,
      }).finally(() => {
        marks.engineDone = performance.now();
        return progress.flush();
      });
      marks.flushed = performance.now();
      const record = await this.createRecord(policy, location, result, signal);
      marks.recorded = performance.now();
      await this.reportSuccess(policy, result, record, signal);
      // One line with where the time went (npm run bench reads it).
      log.info('backup completed', { snapshotId: result.summary.snapshotId, durationSecs: result.durationSecs, etcdBytes: result.etcd.size,
        ...runTimings(marks, result, performance.now()) });
      finished();
      const { client, records, secrets, restic, recorder, origin } = this.deps;
      await applyRetention({ client, records, secrets, restic, recorder, log, origin, onForgotten: this.onForgotten }, policy, location, record);
      // After the record exists, in the background of this run; its outcome never changes this backup's own status.
      if (this.verifier && verifyMode(policy) === 'AfterBackup') await this.verifier.verify(policy, location, record, signal);
    } catch (err) {
      if (err instanceof RecordNotWritten) {
        // The snapshot is stored: a sync makes its record once the API takes it. Never report such a backup failed.
        log.warn('backup stored, record not written; a repository sync will make it', { snapshotId: err.snapshotId, err: err.cause });
        this.sync?.request();
        return;
      }
      const message = signal.aborted ? 'cancelled: the controller shut down or the policy was deleted during the backup'
        : err instanceof Error ? err.message : String(err);
      const durationSecs = (performance.now() - started) / 1000;
      this.deps.metrics.backupDuration.observe({ policyName: name }, durationSecs);
      if (this.deps.policies.get(key)) {
        await this.reportFailure(policy, message, 'BackupFailed', { totalDurationSecs: seconds(durationSecs) }, signal)
          .catch((e) => log.warn('could not report the failure; the next controller reports it interrupted', { err: e }));
      }
      log.warn('backup failed', { error: message });
      // Keys revoked or changed on the S3 side leave the location looking Ready: have it checked again now, so it
      // shows the refusal and the backups of other policies there wait for a fix instead of failing one by one.
      if (err instanceof EngineError && err.kind === 'AccessDenied') this.onCredentialsRefused?.(`${policy.metadata.namespace}/${policy.spec.destination}`);
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
        // A change of phase, or into or out of a wait, is written at once; steady progress at most every interval.
        const state = `${p.phase}/${p.waitingFor ?? ''}`;
        if (state === lastPhase && t - last < interval) return;
        last = t;
        lastPhase = state;
        const progress = { phase: p.phase, bytesDone: p.bytesDone, totalBytes: p.totalBytes ?? null,
          percent: p.percent === undefined ? null : Math.round(p.percent), waitingFor: p.waitingFor ?? null, updateTime: new Date(t).toISOString() };
        chain = chain.then(() => this.patchStatus(policy, { progress }))
          .catch((err) => this.deps.log.debug('progress write failed', { err }));
      },
      flush: () => chain,
    };
  }

  /**
   * Creates `mbr-<snapshotId>` and its status, retrying through API outages until they land. Throws RecordNotWritten
   * when they cannot (a permanent error, or the controller is stopping): the snapshot is stored either way.
   */
  private async createRecord(policy: MetadataBackupPolicy, location: BackupLocation, r: BackupResult, signal: AbortSignal): Promise<MetadataBackupRecord> {
    const record = newRecord({
      namespace: policy.metadata.namespace ?? '', policy: policy.metadata.name, location: location.metadata.name,
      snapshotId: r.summary.snapshotId,
      status: {
        backupTime: this.now().toISOString(), etcdRevision: r.etcd.revision, etcdSnapshotSize: r.etcd.size, etcdSnapshotSha256: r.etcd.sha256,
        dataAdded: r.summary.dataAdded, totalBytesProcessed: r.summary.totalBytesProcessed, totalDurationSecs: seconds(r.durationSecs),
        certificates: r.certificates, earliestCertificateExpiry: r.earliestCertificateExpiry,
      },
    });
    try {
      await writeRecord(this.deps.client, record, this.deps.log, signal);
    } catch (err) {
      throw new RecordNotWritten(r.summary.snapshotId, err);
    }
    return record;
  }

  private async reportSuccess(policy: MetadataBackupPolicy, r: BackupResult, record: MetadataBackupRecord, signal: AbortSignal): Promise<void> {
    const name = policy.metadata.name;
    const s = r.summary;
    const time = record.status?.backupTime ?? this.now().toISOString();
    await this.patchStatusUntilDone(policy, {
      backupStatus: 'Completed', backupTime: time, backupErrorMessage: '',
      filesNew: s.filesNew, filesChanged: s.filesChanged, dataAdded: s.dataAdded, totalBytesProcessed: s.totalBytesProcessed,
      totalDurationSecs: seconds(r.durationSecs), snapshotId: s.snapshotId, mbrName: record.metadata.name,
      lastSuccessfulBackupTime: time, lastSuccessfulSnapshotId: s.snapshotId, progress: null,
      conditions: this.backupHealth(policy, 'True', 'Succeeded', messages.backupSucceeded(s.snapshotId)),
    }, signal);
    this.deps.metrics.numSuccessful.inc({ policyName: name });
    this.deps.metrics.backupDuration.observe({ policyName: name }, r.durationSecs);
    await this.deps.recorder.event(policy, 'Normal', BACKUP_SUCCEEDED, messages.backupSucceeded(s.snapshotId));
  }

  /**
   * A backup another process ran, found complete in the repository: Completed status from its adopted record (restic's
   * per-backup figures are not known), the success count, and the usual event.
   */
  private async reportAdopted(policy: MetadataBackupPolicy, record: MetadataBackupRecord, signal: AbortSignal): Promise<void> {
    const time = record.status?.backupTime ?? this.now().toISOString();
    const cleared = Object.fromEntries(SUCCESS_FIGURES.map((f) => [f, null]));
    await this.patchStatusUntilDone(policy, {
      ...cleared, backupStatus: 'Completed', backupTime: time, backupErrorMessage: '', snapshotId: record.spec.snapshotId,
      mbrName: record.metadata.name, lastSuccessfulBackupTime: time, lastSuccessfulSnapshotId: record.spec.snapshotId, progress: null,
      conditions: this.backupHealth(policy, 'True', 'Adopted', `${messages.backupSucceeded(record.spec.snapshotId)} (recorded from the repository)`),
    }, signal);
    this.deps.metrics.numSuccessful.inc({ policyName: policy.metadata.name });
    await this.deps.recorder.event(policy, 'Normal', BACKUP_SUCCEEDED, messages.backupSucceeded(record.spec.snapshotId));
  }

  /** The LastBackupSucceeded condition after a backup ended, the other conditions as they are. */
  private backupHealth(policy: MetadataBackupPolicy, status: 'True' | 'False', reason: string, message: string): Condition[] {
    const list = setCondition(policy.status?.conditions, {
      type: LAST_BACKUP_SUCCEEDED, status, reason, message, observedGeneration: policy.metadata.generation ?? 0,
    }, this.now());
    this.health.set(objectKey(policy), list.find((c) => c.type === LAST_BACKUP_SUCCEEDED)!);
    return list;
  }

  /**
   * Conditions for a status write made from the cache: the cache may not show the LastBackupSucceeded this process
   * wrote a moment ago, and a merge patch replaces the whole list, so put back the newest one known here.
   */
  private withHealth(key: string, list: Condition[]): Condition[] {
    const mine = this.health.get(key);
    return mine ? [...list.filter((c) => c.type !== LAST_BACKUP_SUCCEEDED), mine] : list;
  }

  /** Failed status (clearing the previous success's figures), a Warning event and the failure count. */
  private async reportFailure(policy: MetadataBackupPolicy, message: string, reason: string, extra: Record<string, unknown>,
    signal?: AbortSignal): Promise<void> {
    const now = this.now();
    const cleared = Object.fromEntries(SUCCESS_FIGURES.map((f) => [f, null]));
    await this.patchStatusUntilDone(policy, {
      ...cleared, ...extra,
      backupStatus: 'Failed', backupTime: now.toISOString(), backupErrorMessage: message, progress: null,
      observedGeneration: policy.metadata.generation ?? 0,
      // An invalid schedule makes the policy not Ready; any other failure is about this backup, not the policy.
      conditions: reason === 'InvalidSchedule'
        ? setCondition(policy.status?.conditions, { type: READY, status: 'False', observedGeneration: policy.metadata.generation ?? 0, reason, message }, now)
        : this.backupHealth(policy, 'False', reason, message),
    }, signal);
    this.deps.metrics.numFailed.inc({ policyName: policy.metadata.name });
    await this.deps.recorder.event(policy, 'Warning', BACKUP_FAILED, message);
  }
}
