/**
 * @module BackupLocation reconciler: make sure a restic repository exists and opens at `s3:<url>/<bucketName>` with the
 * credentials Secret, and report the outcome in status, events and metrics. Runs again when the spec or the Secret
 * changes; transient failures (endpoint down, TLS, access) are retried with backoff, bad input waits for a change.
 */
import { PROTECTED, READY, reasons, setCondition } from '../api/conditions.ts';
import { BACKUP_LOCATION } from '../api/group.ts';
import { INIT_FAILED, INIT_SUCCEEDED, KEY_ADDED, KEY_REMOVED, KEY_ROTATION_FAILED, KEY_SWITCHED, messages } from '../api/events.ts';
import type { BackupLocation, BackupLocationStatus, Condition, MetadataBackupPolicy, Secret } from '../api/types.ts';
import { readBucketProtection } from '../engine/bucket-protection.ts';
import { EngineError, isTransientKind } from '../engine/errors.ts';
import { openOrInit } from '../engine/repository.ts';
import type { Repository, Restic } from '../engine/restic.ts';
import type { KubeClient } from '../kube/client.ts';
import type { Metrics } from '../metrics/registry.ts';
import type { Reconciler, Result } from '../runtime/controller.ts';
import type { Informer } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { Logger } from '../util/log.ts';
import { InputError, type LocationPasswords, locationInputs, passwordInUse } from './inputs.ts';
import { type KeyRotation, rotateKey, rotationPending } from './key-rotation.ts';
import { type ProtectionReport, neededRetentionDays, protectionReport } from './protection.ts';

export interface BackupLocationDeps {
  client: KubeClient;
  locations: Informer<BackupLocation>;
  secrets: Informer<Secret>;
  /** The policies, for how long the location's backups are kept (spec.protection's retention check). */
  policies?: Informer<MetadataBackupPolicy>;
  recorder: EventRecorder;
  metrics: Metrics;
  restic: Restic;
  log: Logger;
  /** First retry delay after a transient failure; doubles up to `maxRetryMs`. */
  retryBaseMs?: number;
  maxRetryMs?: number;
  now?: () => Date;
}

/** Why a location is not ready: the condition reason, a message for the user, and whether to retry by ourselves. */
interface Failure {
  reason: string;
  message: string;
  transient: boolean;
}

/** What a status describes, so a reconcile can tell whether it has already handled the current inputs. */
interface Inputs {
  generation: number;
  credentialsVersion: string;
}

function toFailure(err: unknown): Failure {
  if (err instanceof InputError) return { reason: err.reason, message: err.message, transient: false };
  if (err instanceof EngineError) {
    // The condition reason is the error kind, so a restarted controller can tell from status whether to retry.
    return { reason: err.kind === 'Failed' ? reasons.initFailed : err.kind, message: err.message, transient: err.transient };
  }
  return { reason: reasons.initFailed, message: err instanceof Error ? err.message : String(err), transient: true };
}

export class BackupLocationReconciler implements Reconciler {
  private readonly attempts = new Map<string, number>();
  /** Locations to open again although their status says Completed for these inputs (see recheck). */
  private readonly rechecks = new Set<string>();
  private readonly now: () => Date;

  constructor(private readonly deps: BackupLocationDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  /**
   * Opens the location's repository again at its next reconcile, whatever its status says: a backup found that the S3
   * server now refuses its credentials (keys revoked on the S3 side, where no change of the Secret tells us).
   */
  recheck(key: string): void {
    this.rechecks.add(key);
  }

  async reconcile(key: string, signal: AbortSignal): Promise<Result | void> {
    const { locations, secrets, metrics, restic } = this.deps;
    const log = this.deps.log.child({ backupLocation: key });

    // 1. Load the location, or stop if it is gone (the repository itself is the user's data: never deleted).
    const loc = locations.get(key);
    if (!loc) {
      this.attempts.delete(key);
      return;
    }

    // 2. Observe the credentials Secret and decide whether the status already describes these inputs.
    const namespace = loc.metadata.namespace ?? '';
    const secret = secrets.get(`${namespace}/${loc.spec.credentials}`);
    const inputs: Inputs = { generation: loc.metadata.generation ?? 0, credentialsVersion: secret?.metadata.resourceVersion ?? '' };
    const st = loc.status;
    const sameInputs = st?.observedGeneration === inputs.generation && (st.observedCredentialsVersion ?? '') === inputs.credentialsVersion;
    const ready = st?.conditions?.find((c) => c.type === READY);
    const recheck = this.rechecks.delete(key);
    let passwords: LocationPasswords | undefined;
    try {
      passwords = locationInputs(loc, secrets).passwords;
    } catch {
      // Reported below, where the same read fails again with its reason.
    }
    const rotate = passwords !== undefined && rotationPending(passwords);
    if (sameInputs && st?.initStatus === 'Completed' && !recheck && !rotate) return;
    const retrying = sameInputs && st?.initStatus === 'Failed';
    // A terminal failure waits for the user to change the spec or the Secret; that change enqueues us again. Its
    // failure series is kept in /metrics (at 0 after a restart): an alert on it must not resolve because we restarted.
    if (retrying && ready && !isTransientKind(ready.reason === reasons.initFailed ? 'Failed' : ready.reason)) {
      metrics.locationInitFailures.inc({ location: loc.metadata.name, reason: ready.reason }, 0);
      return;
    }

    // 3. Mark the attempt, unless this is a retry of a failure the user is already looking at, or the location is ready
    // (a changed Secret, a key rotation): backups keep using it while it is checked again, and a backup that started
    // in an "Initializing" window would fail as "not ready" although both old and new credentials still work.
    let conditions = st?.conditions;
    if (!retrying && st?.initStatus !== 'Completed') {
      conditions = await this.writeStatus(loc, conditions, inputs, { initStatus: 'Initializing', initErrorMessage: '' },
        { status: 'Unknown', reason: reasons.initializing, message: 'Opening or creating the restic repository' });
    }

    // 4. Open or create the repository.
    try {
      const { repo: base, passwords: p } = locationInputs(loc, secrets);
      const repo = { ...base, password: passwordInUse(p) };
      const { created } = await openOrInit(restic, repo, { signal });
      this.attempts.delete(key);
      // 5. A key rotation's next step (key-rotation.ts). Its failure leaves the location usable: both keys open it.
      const rotation = rotationPending(p) ? await this.rotate(loc, base, p, signal, log) : undefined;
      // 6. What the bucket provides, when the spec declares it protected. Never a failure: the repository opens.
      const protection = loc.spec.protection ? await this.checkProtection(loc, base, signal) : undefined;
      await this.writeStatus(loc, conditions, inputs, {
        initStatus: 'Completed', initErrorMessage: '', ...(rotation ? { keyRotation: rotation.status } : {}),
        ...(protection ? { protection: { ...protection.status, checkTime: this.now().toISOString() } } : {}),
      }, { status: 'True', reason: reasons.repositoryReady, message: created ? 'Created a new restic repository' : 'Opened the existing restic repository' },
      protection?.condition);
      if (!rotation || st?.initStatus !== 'Completed') await this.deps.recorder.event(loc, 'Normal', INIT_SUCCEEDED, messages.initSucceeded(repo.address));
      // A key rotation's later steps check again without an event, unless what they found changed.
      const before = st?.conditions?.find((c) => c.type === PROTECTED);
      const changed = before?.status !== protection?.condition.status || before?.reason !== protection?.condition.reason;
      if (protection && (!rotation || st?.initStatus !== 'Completed' || changed)) {
        await this.deps.recorder.event(loc, protection.event.type, protection.event.reason, protection.event.message);
        log[protection.event.type === 'Warning' ? 'warn' : 'info']('bucket protection checked', { reason: protection.condition.reason, detail: protection.condition.message });
      }
      log.info(created ? 'repository created' : 'existing repository opened', { repository: repo.address });
      if (rotation?.failed && rotation.transient) {
        const delay = this.nextRetry(key);
        log.warn('key rotation step failed; will retry', { error: rotation.status.message, retryInMs: delay });
        return { requeueAfter: delay };
      }
      return;
    } catch (err) {
      if (signal.aborted) throw err;
      const f = toFailure(err);
      await this.writeStatus(loc, conditions, inputs, { initStatus: 'Failed', initErrorMessage: f.message },
        { status: 'False', reason: f.reason, message: f.message });
      metrics.locationInitFailures.inc({ location: loc.metadata.name, reason: f.reason });
      await this.deps.recorder.event(loc, 'Warning', INIT_FAILED, f.message);
      if (!f.transient) {
        log.warn('initialisation failed; waiting for a change of the spec or Secret', { reason: f.reason, error: f.message });
        return;
      }
      const delay = this.nextRetry(key);
      log.warn('initialisation failed; will retry', { reason: f.reason, error: f.message, retryInMs: delay });
      return { requeueAfter: delay };
    }
  }

  /**
   * Reads the bucket's versioning and object lock with the location's own keys, and how long its policies keep backups
   * (from the policy cache: a policy changed later is weighed at the location's next init).
   */
  private async checkProtection(loc: BackupLocation, repo: Repository, signal: AbortSignal): Promise<ProtectionReport> {
    const found = await readBucketProtection({ url: loc.spec.url, keys: { accessKey: repo.accessKey, secretKey: repo.secretKey }, caCert: repo.caCert },
      loc.spec.bucketName, signal);
    const policies = (this.deps.policies?.list() ?? []).filter((p) => p.metadata.namespace === loc.metadata.namespace &&
      p.spec.destination === loc.metadata.name);
    return protectionReport(loc.spec.protection!, found, neededRetentionDays(loc.spec.protection!, policies.map((p) => p.spec), this.now()));
  }

  /** One key rotation step, reported as events; a failure becomes phase Failed with the ids it was working on. */
  private async rotate(loc: BackupLocation, repo: Parameters<typeof rotateKey>[1], p: LocationPasswords, signal: AbortSignal,
    log: Logger): Promise<{ status: KeyRotation; failed: boolean; transient: boolean } | undefined> {
    const { recorder, restic } = this.deps;
    try {
      const out = await rotateKey(restic, repo, p,
        { added: KEY_ADDED, switched: KEY_SWITCHED, removed: KEY_REMOVED }, { signal }, this.now());
      if (!out) return undefined;
      for (const e of out.event) {
        await recorder.event(loc, e.type, e.reason, e.message);
        log.info('key rotation', { step: e.reason, detail: e.message });
      }
      return { status: out.rotation, failed: false, transient: false };
    } catch (err) {
      if (signal.aborted) throw err;
      const f = toFailure(err);
      const message = `key rotation: ${f.message}`;
      await recorder.event(loc, 'Warning', KEY_ROTATION_FAILED, message);
      log.warn('key rotation step failed', { reason: f.reason, error: f.message });
      // The ids stay only while they name keys of this rotation (a removal to retry), not a finished one's.
      const r = p.rotation?.phase === 'Switched' || p.rotation?.phase === 'Failed' ? p.rotation : undefined;
      // '' rather than absent: status is merge-patched, and an absent field would keep the previous rotation's id.
      return { status: { phase: 'Failed', message, oldKeyId: r?.oldKeyId ?? '', newKeyId: r?.newKeyId ?? '', time: this.now().toISOString() }, failed: true, transient: f.transient };
    }
  }

  private nextRetry(key: string): number {
    const n = this.attempts.get(key) ?? 0;
    this.attempts.set(key, n + 1);
    return Math.min((this.deps.retryBaseMs ?? 10_000) * 2 ** n, this.deps.maxRetryMs ?? 300_000);
  }

  /** Patches status through /status and returns the conditions written, for the next write of this reconcile. */
  private async writeStatus(loc: BackupLocation, conditions: Condition[] | undefined, inputs: Inputs,
    fields: Pick<BackupLocationStatus, 'initStatus' | 'initErrorMessage' | 'keyRotation' | 'protection'>,
    ready: { status: 'True' | 'False' | 'Unknown'; reason: string; message: string },
    protection?: { status: 'True' | 'False' | 'Unknown'; reason: string; message: string }): Promise<Condition[]> {
    const now = this.now();
    // Protected is set by a check, kept by writes that do not check (Initializing, a failure), gone without spec.protection.
    if (protection) conditions = setCondition(conditions, { type: PROTECTED, observedGeneration: inputs.generation, ...protection }, now);
    else if (!loc.spec.protection) conditions = conditions?.filter((c) => c.type !== PROTECTED);
    const status: BackupLocationStatus = {
      ...fields,
      initTime: now.toISOString(),
      observedGeneration: inputs.generation,
      observedCredentialsVersion: inputs.credentialsVersion,
      conditions: setCondition(conditions, { type: READY, observedGeneration: inputs.generation, ...ready }, now),
    };
    await this.deps.client.patchStatus(BACKUP_LOCATION, loc.metadata.namespace ?? '', loc.metadata.name, status);
    return status.conditions ?? [];
  }
}
