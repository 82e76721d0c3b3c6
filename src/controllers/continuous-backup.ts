/**
 * @module Continuous backup of each policy that asks for it (`spec.continuous.enabled`): a recorder per policy watches
 * etcd and stores every change in the policy's location between full backups (engine/continuous). Level-based: every
 * few seconds, and whenever a policy, location or Secret changes, the set of running recorders is made to match the
 * policies (started, restarted when their inputs changed, stopped). Leader only: two recorders would store the same
 * changes twice. The recorders run out of band, never in a reconcile worker.
 *
 * Where a recorder starts: after the last change set stored for the policy (another leader's, or this one's before a
 * restart), else after the newest full backup, else at etcd's current revision with a full backup asked for. If etcd
 * has compacted those revisions, the stretch is a gap: a Warning event, a metric, the status, and a full backup at once
 * so a new chain starts (the first start of a policy is not a gap: there was nothing to continue).
 */
import { CONTINUOUS_BACKUP_FAILED, CONTINUOUS_BACKUP_GAP } from '../api/events.ts';
import { BACKUP_POLICY } from '../api/group.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupPolicyStatus, MetadataBackupRecord, Secret } from '../api/types.ts';
import { listChain } from '../engine/continuous/change-store.ts';
import { forgetExpiredChangeSets } from '../engine/continuous/expiry.ts';
import { recordChanges, type StoredChangeSet } from '../engine/continuous/recorder.ts';
import { EtcdClient } from '../engine/etcd-client.ts';
import type { EtcdConnection } from '../engine/etcd-connection.ts';
import type { BackupOrigin } from '../engine/origin.ts';
import type { Repository, Restic } from '../engine/restic.ts';
import type { KubeClient } from '../kube/client.ts';
import { ignoreNotFound } from '../kube/errors.ts';
import type { Metrics } from '../metrics/registry.ts';
import { type Informer, objectKey } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { Runnable } from '../runtime/runnable.ts';
import { parseDuration } from '../util/flags.ts';
import type { Logger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';
import { etcdConnection, locationRepository } from './inputs.ts';
import { proveChain } from './continuous-proof.ts';
import type { VerificationPods } from './verification-pod.ts';

type ContinuousStatus = NonNullable<MetadataBackupPolicyStatus['continuous']>;

export interface ContinuousBackupDeps {
  client: KubeClient;
  policies: Informer<MetadataBackupPolicy>;
  locations: Informer<BackupLocation>;
  secrets: Informer<Secret>;
  restic: Restic;
  recorder: EventRecorder;
  metrics: Metrics;
  log: Logger;
  origin: BackupOrigin;
  host: string;
  /** Asks the policy's backup reconciler for a full backup now (a chain must start from one). */
  requestBackup: (key: string) => void;
  /** How often the running set is compared with the policies. */
  resyncMs?: number;
  /** How often change sets older than the oldest full backup are forgotten. */
  retentionMs?: number;
  /** How often each policy's chain is proven (0: never). */
  verifyIntervalMs?: number;
  /** The policy's records, for the size of its backups (the verification pod's memory). */
  records?: Informer<MetadataBackupRecord>;
  /** Runs the proof in a pod of its own (as verifications of full backups); without it, in this process. */
  pods?: Pick<VerificationPods, 'verifyChain'>;
  /** Takes the verification slot; returns its release. */
  acquire?: (signal: AbortSignal) => Promise<() => void>;
  /** Told how many change sets of a location were forgotten (enough of them make its prune due: the space comes back). */
  onForgotten?: (location: BackupLocation, count: number) => void;
}

/** What a recorder was started with; a change of any of it restarts the recorder. */
export interface RecorderInputs {
  etcd: EtcdConnection;
  repo: Repository;
  flushIntervalMs: number;
}

/** Pure: what a policy's continuous backup needs, or why it cannot run (undefined: not enabled). */
export function recorderInputs(p: MetadataBackupPolicy, locations: Informer<BackupLocation>, secrets: Informer<Secret>):
  RecorderInputs | { problem: string } | undefined {
  const c = p.spec.continuous;
  if (!c?.enabled || p.metadata.deletionTimestamp) return undefined;
  try {
    const ns = p.metadata.namespace ?? '';
    // Not required to be ready: a location that cannot take change sets now (S3 down, keys refused) is what the
    // recorder retries, with the changes waiting on disk and KubeDRContinuousBackupLagging telling; stopping it would
    // lose the changes and silence the alert.
    const loc = locations.get(`${ns}/${p.spec.destination}`);
    if (!loc) return { problem: `BackupLocation "${p.spec.destination}" not found` };
    const flushIntervalMs = parseDuration(c.flushInterval ?? '30s');
    if (flushIntervalMs < 1000) return { problem: `continuous.flushInterval "${c.flushInterval}" is shorter than 1s` };
    return {
      etcd: etcdConnection(ns, p.spec.etcdEndpoint ?? 'https://127.0.0.1:2379', p.spec.etcdCreds ?? 'etcd-creds', secrets),
      repo: locationRepository(loc, secrets),
      flushIntervalMs,
    };
  } catch (err) {
    return { problem: err instanceof Error ? err.message : String(err) };
  }
}

interface Running {
  inputs: string;
  stop: AbortController;
  done: Promise<void>;
}

export class ContinuousBackup implements Runnable {
  readonly name = 'continuous-backup';
  private readonly running = new Map<string, Running>();
  /** Problems already reported per policy, so a lasting one is one event, not one per resync. */
  private readonly reported = new Map<string, string>();
  /** Work a recorder starts beside it (a proof, an expiry): stopping waits for it too, so none outlives leadership. */
  private readonly sideWork = new Set<Promise<unknown>>();
  private wake: () => void = () => {};

  constructor(private readonly deps: ContinuousBackupDeps) {}

  /** Compare the running recorders with the policies now (a policy, location or Secret changed). */
  poke(): void {
    this.wake();
  }

  async start(signal: AbortSignal): Promise<void> {
    try {
      while (!signal.aborted) {
        await this.converge();
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          void sleep(this.deps.resyncMs ?? 10_000, signal).then(resolve);
        });
      }
    } finally {
      for (const r of this.running.values()) r.stop.abort();
      await Promise.all([...this.running.values()].map((r) => r.done));
      this.running.clear();
      await Promise.allSettled([...this.sideWork]);
    }
  }

  private async converge(): Promise<void> {
    const wanted = new Set<string>();
    for (const p of this.deps.policies.list()) {
      const key = objectKey(p);
      const inputs = recorderInputs(p, this.deps.locations, this.deps.secrets);
      if (!inputs) continue;
      if ('problem' in inputs) {
        if (this.reported.get(key) !== inputs.problem) {
          this.reported.set(key, inputs.problem);
          await this.report(p, { state: 'Stopped', message: `continuous backup cannot run: ${inputs.problem}` });
        }
        continue;
      }
      wanted.add(key);
      const fingerprint = JSON.stringify(inputs);
      const current = this.running.get(key);
      if (current?.inputs === fingerprint) continue;
      if (current) {
        current.stop.abort();
        await current.done;
      }
      this.reported.delete(key);
      const stop = new AbortController();
      this.running.set(key, { inputs: fingerprint, stop, done: this.run(p, inputs, stop.signal) });
    }
    for (const [key, r] of this.running) {
      if (wanted.has(key)) continue;
      r.stop.abort();
      await r.done;
      this.running.delete(key);
      const [ns, name] = key.split('/') as [string, string];
      this.deps.metrics.continuousLastStored.remove({ policyName: name });
      this.deps.metrics.continuousLastStoredRevision.remove({ policyName: name });
      this.deps.metrics.continuousLastReceived.remove({ policyName: name });
      this.deps.metrics.continuousFlushInterval.remove({ policyName: name });
      this.deps.metrics.continuousGaps.remove({ policyName: name });
      for (const what of ['watch', 'store', 'start']) this.deps.metrics.continuousFailures.remove({ policyName: name, what });
      this.deps.metrics.continuousLastVerification.remove({ policyName: name });
      const p = this.deps.policies.get(key);
      if (p) await this.report(p, { state: 'Stopped', message: 'continuous backup is not enabled' });
      else this.deps.log.info('continuous backup stopped: policy deleted', { policy: key, namespace: ns });
    }
  }

  /** One policy's recorder until `signal`; restarts after an unexpected end. Never throws. */
  private async run(p: MetadataBackupPolicy, inputs: RecorderInputs, signal: AbortSignal): Promise<void> {
    const key = objectKey(p);
    const name = p.metadata.name;
    const policyName = { policyName: name };
    const log = this.deps.log.child({ policy: key, component: 'continuous' });
    const m = this.deps.metrics;
    m.continuousFlushInterval.set(policyName, inputs.flushIntervalMs / 1000);
    // Counters from 0, so that increase() sees the first gap or failure.
    m.continuousGaps.inc(policyName, 0);
    for (const what of ['watch', 'store', 'start']) m.continuousFailures.inc({ ...policyName, what }, 0);
    // Carried over a restart: an alert on changes not being stored must see the last store before this process's first.
    const storedBefore = Date.parse(p.status?.continuous?.lastStoredTime ?? '');
    if (storedBefore) m.continuousLastStored.set(policyName, storedBefore / 1000);
    if (p.status?.continuous?.lastStoredRevision) m.continuousLastStoredRevision.set(policyName, p.status.continuous.lastStoredRevision);
    let gaps = p.status?.continuous?.gaps ?? 0;
    let lastRetention = 0;
    let lastProof = Date.parse(p.status?.continuous?.lastVerifiedTime ?? '') || 0;
    let proving = false;
    const verifyEvery = this.deps.verifyIntervalMs ?? 0;
    let failing: string | undefined;
    while (!signal.aborted) {
      try {
        const start = await this.startRevision(key, inputs, log);
        log.info('continuous backup recording', { fromRevision: start.revision, flushIntervalMs: inputs.flushIntervalMs });
        await this.report(p, { state: 'Recording', message: `watching etcd from revision ${start.revision}`, fromRevision: start.revision });
        await recordChanges(this.deps.restic, {
          etcd: inputs.etcd, repo: inputs.repo, policy: name, origin: this.deps.origin, host: this.deps.host,
          fromRevision: start.revision, flushIntervalMs: inputs.flushIntervalMs, signal,
          onReceived: () => m.continuousLastReceived.set(policyName, Date.now() / 1000),
          onStored: (s) => {
            failing = undefined;
            m.continuousLastStored.set(policyName, s.toTime / 1000);
            m.continuousLastStoredRevision.set(policyName, s.toRevision);
            void this.report(p, stored(s));
            if (Date.now() - lastRetention > (this.deps.retentionMs ?? 10 * 60_000)) {
              lastRetention = Date.now();
              this.beside(this.expire(p, inputs.repo, signal, log));
            }
            // Right after a store: etcd still holds the history of the revision just stored, to compare with.
            if (verifyEvery > 0 && !proving && Date.now() - lastProof >= verifyEvery) {
              proving = true;
              this.beside(proveChain({ ...this.deps, report: (st) => this.report(p, st) }, p, inputs, s.toRevision, signal, log).finally(() => {
                proving = false;
                lastProof = Date.now();
              }));
            }
          },
          onGap: (from, compactRevision) => {
            if (start.first) {
              log.info('continuous backup starts: etcd no longer holds the revisions after the newest full backup; taking a full backup as its base',
                { from, compactRevision });
            } else {
              gaps++;
              m.continuousGaps.inc(policyName);
              const text = `etcd compacted revisions ${from}–${compactRevision - 1} before they were stored: no restore can reach the ` +
                'time they cover; a full backup is taken now so restores after it are whole again';
              log.warn('continuous backup gap', { from, compactRevision });
              void this.deps.recorder.event(p, 'Warning', CONTINUOUS_BACKUP_GAP, text).catch(() => undefined);
              void this.report(p, { gaps, lastGap: `${new Date().toISOString()}: ${text}` });
            }
            this.deps.requestBackup(key);
          },
          onError: (err, what) => {
            m.continuousFailures.inc({ ...policyName, what });
            const text = `${what === 'watch' ? 'watching etcd' : 'storing changes'} failed (retried): ${err.message}`;
            log.warn('continuous backup: retrying', { what, error: err.message });
            if (failing !== text) {
              failing = text;
              void this.deps.recorder.event(p, 'Warning', CONTINUOUS_BACKUP_FAILED, text).catch(() => undefined);
              void this.report(p, { state: 'Retrying', message: text });
            }
          },
        });
      } catch (err) {
        if (signal.aborted) break;
        const text = `continuous backup could not start (retried): ${err instanceof Error ? err.message : String(err)}`;
        log.warn('continuous backup could not start', { error: text });
        if (failing !== text) {
          failing = text;
          m.continuousFailures.inc({ ...policyName, what: 'start' });
          await this.deps.recorder.event(p, 'Warning', CONTINUOUS_BACKUP_FAILED, text).catch(() => undefined);
          await this.report(p, { state: 'Retrying', message: text });
        }
        await sleep(15_000, signal);
      }
    }
  }

  /** Where to resume: after the last stored change set, else after the newest full backup, else now. */
  private async startRevision(key: string, inputs: RecorderInputs, log: Logger): Promise<{ revision: number; first: boolean }> {
    const name = key.split('/')[1]!;
    const { fulls, sets } = await listChain(this.deps.restic, inputs.repo, name, this.deps.origin);
    const lastSet = sets.reduce((a, s) => Math.max(a, s.toRevision), 0);
    if (lastSet > 0) return { revision: lastSet + 1, first: false };
    const newestFull = fulls.at(-1);
    if (newestFull) return { revision: newestFull.revision + 1, first: true };
    const client = await EtcdClient.connect(inputs.etcd);
    try {
      const now = await client.revision();
      log.info('continuous backup starts with no full backup to continue: taking one as its base', { revision: now });
      this.deps.requestBackup(key);
      return { revision: now + 1, first: true };
    } finally {
      client.close();
    }
  }

  /** Runs `work` beside the recorders; `start` does not return before it has ended. */
  private beside(work: Promise<unknown>): void {
    this.sideWork.add(work);
    void work.finally(() => this.sideWork.delete(work));
  }

  /** Forgets change sets that end before the policy's oldest full backup (a retry: retention does it after each backup). */
  private async expire(p: MetadataBackupPolicy, repo: Repository, signal: AbortSignal, log: Logger): Promise<void> {
    if (signal.aborted) return;
    try {
      const r = await forgetExpiredChangeSets(this.deps.restic, repo, p.metadata.name, this.deps.origin, signal);
      if (r.forgotten === 0) return;
      log.info('change sets older than the oldest full backup forgotten', { count: r.forgotten, oldestFullRevision: r.oldestFullRevision });
      const location = this.deps.locations.get(`${p.metadata.namespace ?? ''}/${p.spec.destination}`);
      if (location) this.deps.onForgotten?.(location, r.forgotten);
    } catch (err) {
      log.warn('forgetting old change sets failed; tried again later', { error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** Writes part of `status.continuous` (a merge: the rest stays); never throws. */
  private async report(p: MetadataBackupPolicy, status: Partial<ContinuousStatus>): Promise<void> {
    await this.deps.client.patchStatus(BACKUP_POLICY, p.metadata.namespace ?? '', p.metadata.name,
      { continuous: { ...status, updateTime: new Date().toISOString() } })
      .catch(ignoreNotFound)
      .catch((err) => this.deps.log.warn('continuous backup status not written', { policy: objectKey(p), err }));
  }
}

function stored(s: StoredChangeSet): Partial<ContinuousStatus> {
  return {
    state: 'Recording', message: `stored revisions ${s.fromRevision}–${s.toRevision} (${s.changes} changes, ${s.bytes} bytes) in ${Math.round(s.storeMs)} ms`,
    lastStoredRevision: s.toRevision, lastStoredTime: new Date(s.toTime).toISOString(), lastChangeSet: s.id.slice(0, 8),
  };
}
