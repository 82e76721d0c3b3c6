/**
 * @module Backups in flight, out of band of the reconcile that started them: at most `maxConcurrent` at once across
 * policies (they protect etcd), never two of one policy; each waits for its location, takes a slot, runs the engine
 * with its progress written to status, creates its record and reports (backup-outcome.ts), then applies retention and
 * after-backup verification. Shutdown waits for all of it within its time limit, then cancels what is left.
 */
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord, Secret } from '../api/types.ts';
import { runBackup } from '../engine/backup.ts';
import { EngineError } from '../engine/errors.ts';
import { type BackupOrigin, backupTags } from '../engine/origin.ts';
import type { Restic } from '../engine/restic.ts';
import type { KubeClient } from '../kube/client.ts';
import { readServerVersion } from '../kube/cluster-identity.ts';
import type { Metrics } from '../metrics/registry.ts';
import type { Informer } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { Logger } from '../util/log.ts';
import { Semaphore } from '../util/semaphore.ts';
import { sleep } from '../util/sleep.ts';
import { type BackupOutcomes, RecordNotWritten, seconds } from './backup-outcome.ts';
import { type RunMarks, progressWriter, runTimings } from './backup-run-report.ts';
import { InputError, etcdConnection, locationRepository, readyLocation } from './inputs.ts';
import { newestSnapshot } from './records.ts';
import type { RepositorySync } from './repository-sync.ts';
import { applyRetention } from './retention.ts';
import { type Verifier, verifyMode } from './verification.ts';

export type Trigger = 'Scheduled' | 'OnDemand';

/** Work running in the background, cancellable. */
export interface Running {
  abort: AbortController;
  done: Promise<void>;
  /** Not a backup: the resolution of one another process left unfinished (its snapshot may await adoption). */
  resolving?: boolean;
}

/** What backups of policies need: the caches, the engine and where they report. */
export interface BackupDeps {
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
  /** The command restic runs to stream a backup (this program's `backup-archive`); without it, backups are staged. */
  archiveCommand?: string[];
  now?: () => Date;
}

export type RunnerDeps = BackupDeps & { outcomes: BackupOutcomes };

/** What the composition root wires in after construction (the collaborators are built around the reconciler). */
export interface RunnerHooks {
  /** Enqueue a policy key (after a backup ends). */
  enqueue: (key: string) => void;
  /** Makes records of snapshots that have none: asked after a record write that failed. */
  sync?: Pick<RepositorySync, 'syncLocation' | 'request'>;
  /** Proves backups restore (after each backup in AfterBackup mode). */
  verifier?: Verifier;
  /** Told how many snapshots retention forgot at a location (for the pruner). */
  onForgotten?: (location: BackupLocation, count: number) => void;
  /** A location (namespace/name) whose S3 server refused the credentials mid-backup. */
  onCredentialsRefused?: (locationKey: string) => void;
}

export class BackupRunner {
  /** A policy's backup (or resolution) until it is reported: while here, another of the policy does not start. */
  private readonly running = new Map<string, Running>();
  /**
   * Every backup run until its very end: a run leaves `running` once reported, so that a new backup of its policy may
   * start, but its retention and after-backup verification go on, and a shutdown must wait for them (or cancel them).
   */
  private readonly afterwork = new Set<Running>();
  /** Policies (namespace/name) whose backup holds one of the slots, and since when. */
  private readonly slotHolders = new Map<string, number>();
  private readonly slots: Semaphore;

  constructor(private readonly deps: RunnerDeps, readonly hooks: RunnerHooks) {
    this.slots = new Semaphore(deps.maxConcurrent);
  }

  /**
   * Policies whose backup in this process ended without its outcome written (the record or the failure refused by the
   * API): their `Running` is resolved like another process's, but the attempt is counted already.
   */
  private readonly unreported = new Set<string>();

  /** Whether the policy's unresolved `Running` is this process's own, counted attempt; asking forgets it. */
  takeUnreported(key: string): boolean {
    return this.unreported.delete(key);
  }

  /** Records (namespace/name) made by a run of this process whose after-backup verification has not ended yet. */
  private readonly toVerify = new Set<string>();

  /** Whether a run of this process is still to verify the record (after its retention), or verifies it now. */
  verifiesRecord(recordKey: string): boolean {
    return this.toVerify.has(recordKey);
  }

  /** Whether the policy has a backup or a resolution in flight (another must not start). */
  has(key: string): boolean {
    return this.running.has(key);
  }

  /**
   * Whether a backup of the policy runs in this process, so its snapshot is about to get its record and a sync must
   * leave it alone. The resolution of a backup another process left unfinished does not count: it needs the sync.
   */
  isRunning(key: string): boolean {
    const r = this.running.get(key);
    return r !== undefined && !r.resolving;
  }

  /** Cancels the policy's work in flight (the policy is gone: nobody to report to). */
  cancel(key: string): void {
    this.running.get(key)?.abort.abort();
  }

  /** For a skipped run's event: what the policy's previous backup still waits for, when it waits for a slot. */
  waitingFor(key: string): string | undefined {
    const r = this.running.get(key);
    return r && !r.resolving && !this.slotHolders.has(key) ? this.queuedBehind() : undefined;
  }

  /** What a backup waiting for a slot waits for: "a backup slot (--max-concurrent-backups=1), held by ns/a (running 40 s)". */
  private queuedBehind(): string | undefined {
    if (this.slotHolders.size === 0) return undefined;
    const now = Date.now();
    const held = [...this.slotHolders].map(([k, since]) => `${k} (running ${Math.round((now - since) / 1000)} s)`);
    return `a backup slot (--max-concurrent-backups=${this.deps.maxConcurrent}), held by ${held.join(', ')}`;
  }

  /** Runs `work` for the policy as its resolution (not a backup), then enqueues the policy. */
  resolve(key: string, work: (signal: AbortSignal) => Promise<void>): void {
    const entry: Running = { abort: new AbortController(), done: Promise.resolve(), resolving: true };
    this.running.set(key, entry);
    entry.done = work(entry.abort.signal)
      .catch((err) => this.deps.log.error('resolving an unfinished backup failed', { policy: key, err }))
      .finally(() => {
        if (this.running.get(key) === entry) this.running.delete(key);
        this.hooks.enqueue(key);
      });
  }

  /** Starts a backup of the policy in the background; its `Running` status is already written. */
  start(key: string, trigger: Trigger, stopping: AbortSignal, reconciledAt: number): void {
    const abort = new AbortController();
    let release: (() => void) | undefined;
    // Called once the backup is reported, before retention: retention needs neither etcd nor this policy's slot
    // (repository operations are serialised anyway), so a new backup of the policy may start meanwhile.
    const finished = () => {
      release?.();
      this.slotHolders.delete(key);
      if (this.running.get(key) === entry) this.running.delete(key);
    };
    // The slot is taken only once the location is ready (runOne): a policy waiting for its location must not hold up
    // every other policy's backup.
    const acquire = async () => {
      const behind = this.slotHolders.size >= this.deps.maxConcurrent ? this.queuedBehind() : undefined;
      const policy = this.deps.policies.get(key);
      if (behind && policy) {
        // Said where a person looks (kubectl, kubedr status): which backups this one waits for.
        await this.deps.outcomes.patchStatus(policy, { progress: { phase: 'Queued', waitingFor: behind, updateTime: new Date().toISOString() } })
          .catch((err) => this.deps.log.debug('progress write failed', { err }));
      }
      release = await this.slots.acquire(abort.signal);
      this.slotHolders.set(key, Date.now());
    };
    const entry: Running = {
      abort,
      done: (async () => {
        try {
          await this.runOne({ key, trigger, reconciledAt }, abort.signal, acquire, finished);
        } catch (err) {
          this.deps.log.error('backup run failed unexpectedly', { policy: key, err });
        } finally {
          finished();
          if (!stopping.aborted) this.hooks.enqueue(key);
        }
      })(),
    };
    this.running.set(key, entry);
    this.afterwork.add(entry);
    void entry.done.finally(() => this.afterwork.delete(entry));
  }

  /** Waits up to `timeoutMs` for the work in flight (and `more`) to finish, then cancels the rest. */
  async drain(timeoutMs: number, more: Iterable<Running> = []): Promise<void> {
    const work = () => [...new Set([...this.running.values(), ...this.afterwork, ...more])];
    const all = () => Promise.allSettled(work().map((r) => r.done));
    const finished = await Promise.race([all().then(() => true), Bun.sleep(timeoutMs).then(() => false)]);
    if (finished) return;
    this.deps.log.warn('cancelling running backups at shutdown', { count: work().length });
    for (const r of work()) r.abort.abort();
    await all();
  }

  /** One backup from start to report. Never throws: every failure ends as Failed status, a Warning event and a metric. */
  private async runOne(run: { key: string; trigger: Trigger; reconciledAt: number }, signal: AbortSignal, acquireSlot: () => Promise<void>,
    finished: () => void): Promise<void> {
    const { key, trigger } = run;
    const policy = this.deps.policies.get(key);
    if (!policy) return;
    const { outcomes } = this.deps;
    const name = policy.metadata.name;
    const ns = policy.metadata.namespace ?? '';
    const log = this.deps.log.child({ policy: key, trigger });
    const started = performance.now();
    const marks: RunMarks = { reconciledAt: run.reconciledAt, startedAt: Date.now(), started };
    this.deps.metrics.numBackups.inc({ policyName: name });
    let verifying: string | undefined;
    try {
      const location = await this.waitForLocation(ns, policy.spec.destination, signal);
      const repo = locationRepository(location, this.deps.secrets);
      // A prune of this location may take an hour: wait for it before taking a slot, not in one (backups elsewhere go on).
      await this.deps.restic.maintenanceDone(repo, signal, (what) => void outcomes.patchStatus(policy, {
        progress: { phase: 'Queued', waitingFor: what, updateTime: new Date().toISOString() },
      }).catch((err) => log.debug('progress write failed', { err })));
      await acquireSlot();
      const etcd = etcdConnection(ns, policy.spec.etcdEndpoint ?? 'https://127.0.0.1:2379', policy.spec.etcdCreds ?? 'etcd-creds', this.deps.secrets);
      const progress = progressWriter((status) => outcomes.patchStatus(policy, status), this.deps.log, this.deps.progressIntervalMs);
      marks.engine = performance.now();
      const tags = backupTags(name, this.deps.origin, await readServerVersion(this.deps.client, signal));
      const result = await runBackup(this.deps.restic, {
        etcd, certsDir: policy.spec.certsDir || undefined, extraPaths: policy.spec.extraPaths, repo, host: this.deps.host, tags,
        parent: newestSnapshot(this.deps.records.list(), ns, name, location.metadata.name),
        signal, onProgress: progress.write, stallTimeoutMs: this.deps.stallTimeoutMs, archiveCommand: this.deps.archiveCommand,
      }).finally(() => {
        marks.engineDone = performance.now();
        return progress.flush();
      });
      marks.flushed = performance.now();
      const record = await outcomes.createRecord(policy, location, result, signal);
      marks.recorded = performance.now();
      if (this.hooks.verifier && verifyMode(policy) === 'AfterBackup') {
        verifying = `${ns}/${record.metadata.name}`;
        this.toVerify.add(verifying);
      }
      await outcomes.reportSuccess(policy, result, record, signal);
      // One line with where the time went (npm run bench reads it).
      log.info('backup completed', { snapshotId: result.summary.snapshotId, durationSecs: result.durationSecs, etcdBytes: result.etcd.size,
        ...runTimings(marks, result, performance.now()) });
      finished();
      const { client, records, secrets, restic, recorder, origin } = this.deps;
      await applyRetention({ client, records, secrets, restic, recorder, log, origin, onForgotten: this.hooks.onForgotten }, policy, location, record);
      // After the record exists, in the background of this run; its outcome never changes this backup's own status.
      if (this.hooks.verifier && verifyMode(policy) === 'AfterBackup') await this.hooks.verifier.verify(policy, location, record, signal);
    } catch (err) {
      if (err instanceof RecordNotWritten) {
        // The snapshot is stored: a sync makes its record once the API takes it. Never report such a backup failed.
        log.warn('backup stored, record not written; a repository sync will make it', { snapshotId: err.snapshotId, err: err.cause });
        this.unreported.add(key);
        this.hooks.sync?.request();
        return;
      }
      const message = signal.aborted ? 'cancelled: the controller shut down or the policy was deleted during the backup'
        : err instanceof Error ? err.message : String(err);
      const durationSecs = (performance.now() - started) / 1000;
      this.deps.metrics.backupDuration.observe({ policyName: name }, durationSecs);
      if (this.deps.policies.get(key)) {
        await outcomes.reportFailure(policy, message, 'BackupFailed', { totalDurationSecs: seconds(durationSecs) }, signal)
          .catch((e) => {
            this.unreported.add(key);
            log.warn('could not report the failure; the next controller reports it interrupted', { err: e });
          });
      }
      log.warn('backup failed', { error: message });
      // Keys revoked or changed on the S3 side leave the location looking Ready: have it checked again now, so it
      // shows the refusal and the backups of other policies there wait for a fix instead of failing one by one.
      if (err instanceof EngineError && err.kind === 'AccessDenied') this.hooks.onCredentialsRefused?.(`${ns}/${policy.spec.destination}`);
    } finally {
      if (verifying) this.toVerify.delete(verifying);
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
}
