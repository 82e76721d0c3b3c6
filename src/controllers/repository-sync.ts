/**
 * @module The repository is the truth; records are its index. A sync lists a location's snapshots (read-only, no
 * lock) and brings the records in line: every snapshot this cluster and install took (its origin tags, engine/origin.ts)
 * for a policy of this namespace that backs up to this location gets a record if it has none (adopted, with an event),
 * and every record whose snapshot is gone says so (condition and a Warning event, once). Snapshots of other clusters or
 * installs sharing the bucket are never adopted; snapshots without an origin (earlier versions) only when told to. As Velero syncs backups from its storage location. A snapshot can lack its
 * record when the controller stopped, or the API was unreachable, between storing the snapshot and writing the record,
 * and after etcd was restored from a snapshot taken while a backup ran.
 *
 * Runs while leading: at start (so on becoming leader), every `periodMs`, and on request (after a backup whose record
 * could not be written, or a `Running` status that no backup of this process matches).
 */
import { SNAPSHOT_AVAILABLE, setCondition } from '../api/conditions.ts';
import { BACKUP_ADOPTED, SNAPSHOT_MISSING, UNMARKED_SNAPSHOTS, messages } from '../api/events.ts';
import { BACKUP_RECORD, SNAPSHOT_FORGOTTEN_ANNOTATION } from '../api/group.ts';
import type { BackupLocation, Condition, MetadataBackupPolicy, MetadataBackupRecord, Secret } from '../api/types.ts';
import { type BackupOrigin, ownership } from '../engine/origin.ts';
import type { SnapshotInfo } from '../engine/restic-output.ts';
import type { Restic } from '../engine/restic.ts';
import { listSnapshots, snapshotExists } from '../engine/snapshots.ts';
import type { KubeClient } from '../kube/client.ts';
import { ignoreNotFound } from '../kube/errors.ts';
import type { Informer } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { Runnable } from '../runtime/runnable.ts';
import type { Logger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';
import { locationRepository, readyLocation } from './inputs.ts';
import { newRecord, recordMatches, writeRecord } from './records.ts';

export interface SyncPlan {
  /** Snapshots of this location's policies without a record, oldest first. */
  adopt: { snapshot: SnapshotInfo; policy: string }[];
  /** Records of this location whose snapshot is not in the repository. */
  missing: MetadataBackupRecord[];
  /** Records of this location whose snapshot is there. */
  present: MetadataBackupRecord[];
  /** Snapshots of this location's policy names without an origin and without a record, left alone (not told to adopt). */
  unmarked: SnapshotInfo[];
}

export interface OwnershipRule {
  /** This cluster and install. */
  origin: BackupOrigin;
  /** Adopt snapshots without an origin too (a person said they are this cluster's). */
  adoptUnmarked: boolean;
}

/**
 * What a sync of `location` must do, given its snapshots and this namespace's policies and records. Snapshots of
 * policies that are not here (another namespace's, or deleted), of another cluster or install, and those `busy` says a
 * running backup is about to record are left alone.
 */
export function planSync(location: BackupLocation, snapshots: SnapshotInfo[], policies: MetadataBackupPolicy[],
  records: MetadataBackupRecord[], rule: OwnershipRule, busy: (policy: string) => boolean = () => false): SyncPlan {
  const ns = location.metadata.namespace;
  const mine = new Set(policies.filter((p) => p.metadata.namespace === ns && p.spec.destination === location.metadata.name)
    .map((p) => p.metadata.name));
  const inNs = records.filter((r) => r.metadata.namespace === ns);
  const candidates = snapshots
    .filter((s) => mine.has(s.tags[0] ?? '') && !busy(s.tags[0] ?? ''))
    .filter((s) => !inNs.some((r) => recordMatches(r.spec.snapshotId, s)))
    .sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  const whose = (s: SnapshotInfo) => ownership(s.tags, rule.origin);
  const adopt = candidates
    .filter((s) => whose(s) === 'own' || (whose(s) === 'unmarked' && rule.adoptUnmarked))
    .map((snapshot) => ({ snapshot, policy: snapshot.tags[0]! }));
  const unmarked = rule.adoptUnmarked ? [] : candidates.filter((s) => whose(s) === 'unmarked');
  // A record being deleted, or whose snapshot retention forgot, is on its way out: not "missing".
  const live = inNs.filter((r) => r.spec.backuploc === location.metadata.name && !r.metadata.deletionTimestamp &&
    r.metadata.annotations?.[SNAPSHOT_FORGOTTEN_ANNOTATION] !== 'true');
  const has = (r: MetadataBackupRecord) => snapshots.some((s) => recordMatches(r.spec.snapshotId, s));
  return { adopt, missing: live.filter((r) => !has(r)), present: live.filter(has), unmarked };
}

export interface SyncDeps {
  client: KubeClient;
  locations: Informer<BackupLocation>;
  policies: Informer<MetadataBackupPolicy>;
  records: Informer<MetadataBackupRecord>;
  secrets: Informer<Secret>;
  restic: Restic;
  recorder: EventRecorder;
  log: Logger;
  /** Interval between syncs of every location. */
  periodMs: number;
  /** Which snapshots are this cluster's and install's. */
  ownership: OwnershipRule;
  /** Whether a backup of the policy (namespace/name) runs in this process right now. */
  busy?: (policyKey: string) => boolean;
  /** Told about the records just adopted (they are verified like others, which also reads their facts). */
  onAdopted?: (records: MetadataBackupRecord[]) => void;
  now?: () => Date;
}

export interface SyncResult {
  /** Records made from the repository, by policy name. */
  adopted: MetadataBackupRecord[];
}

export class RepositorySync implements Runnable {
  readonly name = 'repository-sync';
  private readonly inflight = new Map<string, Promise<SyncResult>>();
  private wake: (() => void) | undefined;
  private requested = false;

  constructor(private readonly deps: SyncDeps) {}

  /** Asks for a sync of every location soon (the loop runs it; this returns at once). */
  request(): void {
    this.requested = true;
    this.wake?.();
  }

  async start(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.requested = false;
      await this.syncAll(signal);
      if (this.requested) continue;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        void sleep(this.deps.periodMs, signal).then(resolve);
      });
      this.wake = undefined;
    }
  }

  private async syncAll(signal: AbortSignal): Promise<void> {
    for (const loc of this.deps.locations.list()) {
      if (signal.aborted) return;
      if (loc.status?.initStatus !== 'Completed') continue;
      await this.syncLocation(loc.metadata.namespace ?? '', loc.metadata.name, signal).catch((err) =>
        this.deps.log.warn('repository sync failed; next attempt at the next sync', { location: loc.metadata.name, err }));
    }
  }

  /** Syncs one location now (joining a sync of it already running). Throws when the repository cannot be listed. */
  syncLocation(ns: string, name: string, signal?: AbortSignal): Promise<SyncResult> {
    const key = `${ns}/${name}`;
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.run(ns, name, signal).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async run(ns: string, name: string, signal?: AbortSignal): Promise<SyncResult> {
    const { client, recorder, log } = this.deps;
    const started = performance.now();
    const location = readyLocation(ns, name, this.deps.locations);
    // Only records that existed before the listing can be missing from it: a backup that completes while restic lists
    // writes its snapshot and then its record, and that record, read afterwards, is not missing (the next sync sees both).
    const recordKey = (r: MetadataBackupRecord) => `${r.metadata.namespace}/${r.metadata.name}`;
    const listedBefore = new Set(this.deps.records.list().map(recordKey));
    const snapshots = await listSnapshots(this.deps.restic, locationRepository(location, this.deps.secrets), { signal }, { readOnly: true });
    const busy = (policy: string) => this.deps.busy?.(`${ns}/${policy}`) ?? false;
    const plan = planSync(location, snapshots, this.deps.policies.list(), this.deps.records.list(), this.deps.ownership, busy);
    const now = (this.deps.now ?? (() => new Date()))();
    const adopted: MetadataBackupRecord[] = [];
    const repo = locationRepository(location, this.deps.secrets);
    for (const { snapshot, policy } of plan.adopt) {
      // Retention may have forgotten it (and deleted its record) since the listing: asked again, after the records
      // were read, a snapshot still there was not expired by then, and one gone is not brought back as a record.
      if (!await snapshotExists(this.deps.restic, repo, snapshot.id, { signal })) continue;
      const record = newRecord({
        namespace: ns, policy, location: name, snapshotId: snapshot.shortId, adopted: true,
        status: { backupTime: new Date(snapshot.time).toISOString(), conditions: available(undefined, true, now) },
      });
      await writeRecord(client, record, log, signal);
      adopted.push(record);
      log.info('record adopted from the repository', { record: record.metadata.name, policy, snapshotTime: snapshot.time });
      const owner = this.deps.policies.get(`${ns}/${policy}`);
      if (owner) await recorder.event(owner, 'Normal', BACKUP_ADOPTED, messages.backupAdopted(snapshot.shortId, snapshot.time));
    }
    if (plan.unmarked.length > 0) {
      const policies = [...new Set(plan.unmarked.map((s) => s.tags[0] ?? ''))].sort();
      // The same words each sync, so the API server counts one event up instead of storing one per sync.
      await recorder.event(location, 'Warning', UNMARKED_SNAPSHOTS, messages.unmarkedSnapshots(plan.unmarked.length, policies));
      log.warn('snapshots without a cluster identity left alone', { location: name, count: plan.unmarked.length, policies });
    }
    const missing = plan.missing.filter((r) => listedBefore.has(recordKey(r)));
    for (const record of missing) {
      if (record.status?.conditions?.some((c) => c.type === SNAPSHOT_AVAILABLE && c.status === 'False')) continue;
      const message = messages.snapshotMissing(record.spec.snapshotId, name);
      await client.patchStatus(BACKUP_RECORD, ns, record.metadata.name, {
        conditions: available(record.status?.conditions, false, now, message),
      }).catch(ignoreNotFound);
      await recorder.event(record, 'Warning', SNAPSHOT_MISSING, message);
      log.warn('record without snapshot', { record: record.metadata.name });
    }
    // A snapshot that came back (a repository restored from a copy) clears the condition.
    for (const record of plan.present) {
      if (!record.status?.conditions?.some((c) => c.type === SNAPSHOT_AVAILABLE && c.status === 'False')) continue;
      await client.patchStatus(BACKUP_RECORD, ns, record.metadata.name, { conditions: available(record.status.conditions, true, now) })
        .catch(ignoreNotFound);
    }
    if (adopted.length > 0) this.deps.onAdopted?.(adopted);
    log.debug('repository synced', { location: `${ns}/${name}`, snapshots: snapshots.length, adopted: adopted.length,
      missing: missing.length, present: plan.present.length, durationMs: Math.round(performance.now() - started) });
    return { adopted };
  }
}

function available(list: Condition[] | undefined, yes: boolean, now: Date, message = ''): Condition[] {
  return setCondition(list, {
    type: SNAPSHOT_AVAILABLE, status: yes ? 'True' : 'False', reason: yes ? 'InRepository' : 'SnapshotMissing',
    message: yes ? 'The snapshot is in the repository' : message,
  }, now);
}
