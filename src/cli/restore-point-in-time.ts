/**
 * @module `kubedr restore --at TIME|latest` and `--revision N`: a restore of a continuous policy to a point between
 * its full backups (engine/continuous/replay.ts), from S3 alone. The output has an ordinary restore's layout, so
 * `kubedr etcd-restore` takes it as it is. A chain belongs to one policy of one cluster: --policy is required, and
 * several clusters' chains of that policy in one bucket must be told apart with --cluster, as for "latest".
 */
import { ofPolicy } from '../engine/continuous/change-store.ts';
import { type PointInTimeResult, restorePointInTime } from '../engine/continuous/replay.ts';
import type { PointInTime } from '../engine/continuous/window.ts';
import { EngineError } from '../engine/errors.ts';
import { clusterLabel, isChangeSet, matchesCluster, originOf } from '../engine/origin.ts';
import { type SnapshotInfo, parseSnapshots } from '../engine/restic-output.ts';
import type { Repository, Restic } from '../engine/restic.ts';
import { withBucketCheck } from '../engine/repository.ts';
import { UsageError } from '../util/flags.ts';

/** The point `--at` / `--revision` name; undefined when neither is given (an ordinary restore). */
export function pointInTimeFrom(at: string | undefined, revision: number | undefined): PointInTime | undefined {
  if (at !== undefined && revision !== undefined) throw new UsageError('--at and --revision name the same thing: give one');
  if (revision !== undefined) {
    if (!Number.isSafeInteger(revision) || revision <= 0) throw new UsageError(`--revision ${revision} is not an etcd revision (a positive integer)`);
    return { revision };
  }
  if (at === undefined) return undefined;
  if (at === 'latest') return 'latest';
  // RFC 3339 with a zone: a time without one would mean the zone of whatever machine runs the restore.
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(at) || Number.isNaN(Date.parse(at))) {
    throw new UsageError(`--at "${at}" is not a time: give RFC 3339 with a zone, e.g. 2026-12-04T14:03:27Z, or "latest"`);
  }
  return { time: Date.parse(at) };
}

/** The policy's snapshots of one cluster: all of them, or those --cluster names; refuses a choice between several. */
export async function chainSnapshots(restic: Restic, repo: Repository, policy: string, cluster: string | undefined, signal?: AbortSignal) {
  const { stdout } = await withBucketCheck(repo, (s) => restic.run(repo, ['snapshots', '--json', '--no-lock'], { signal: s }), signal);
  const mine = parseSnapshots(stdout).filter((s) => ofPolicy(s, policy) && (!cluster || matchesCluster(s.tags, cluster)));
  if (mine.length === 0) {
    throw new EngineError('NotFound', `no backups of policy "${policy}"${cluster ? ` of cluster ${cluster}` : ''} in the repository`);
  }
  const origins = new Map(mine.map((s) => {
    const o = originOf(s.tags);
    return [o ? `${o.clusterId}/${o.namespace}` : '-', s] as const;
  }));
  if (origins.size > 1) {
    const named = [...origins.values()].map((s) => `${clusterLabel(s.tags)} in namespace ${originOf(s.tags)?.namespace ?? '-'}`).sort();
    throw new EngineError('InvalidInput', `the bucket holds backups of policy "${policy}" of several clusters or installs (${named.join('; ')}): ` +
      'choose one with --cluster NAME|ID (see kubedr snapshots)');
  }
  return mine;
}

/**
 * Whether "latest" of `policy` means its last stored change rather than its newest full backup: it does for a policy
 * that records changes (its snapshots include change sets), as the issue and docs promise. Its chain's snapshots when
 * it does (restoreToPoint takes them, so the repository is listed once), else undefined. A listing that fails, or
 * names several clusters, says no: the ordinary restore then reports that itself, in its own words.
 */
export async function latestChangeChain(restic: Restic, repo: Repository, policy: string, cluster: string | undefined,
  signal?: AbortSignal): Promise<SnapshotInfo[] | undefined> {
  try {
    const snapshots = await chainSnapshots(restic, repo, policy, cluster, signal);
    return snapshots.some((s) => isChangeSet(s.tags)) ? snapshots : undefined;
  } catch {
    return undefined;
  }
}

export interface PointInTimeFlags {
  repo: Repository;
  policy: string | undefined;
  cluster: string | undefined;
  target: string;
  overwrite: boolean;
  signal: AbortSignal;
  onStep: (step: string) => void;
  /** Told the full backup the point is reached from, before anything is downloaded; throwing stops the restore. */
  onChosen?: (base: SnapshotInfo) => void | Promise<void>;
  /** The chain's snapshots, already listed by chainSnapshots (latestChangeChain); else listed here. */
  snapshots?: SnapshotInfo[];
}

export async function restoreToPoint(restic: Restic, point: PointInTime, f: PointInTimeFlags): Promise<PointInTimeResult> {
  if (!f.policy) throw new UsageError('a restore to a point in time needs --policy: a chain of changes belongs to one policy');
  const snapshots = f.snapshots ?? await chainSnapshots(restic, f.repo, f.policy, f.cluster, f.signal);
  if (!snapshots.some((s) => isChangeSet(s.tags))) {
    throw new EngineError('NotFound', `policy "${f.policy}" has no stored changes: it is not a continuous policy (spec.continuous.enabled), ` +
      'so it restores only to its full backups (kubedr restore <snapshot-id|latest>)');
  }
  return restorePointInTime(restic, { repo: f.repo, policy: f.policy, snapshots, target: point, dir: f.target, overwrite: f.overwrite,
    signal: f.signal, onStep: f.onStep, onProgress: (n) => f.onStep(`${n} revisions replayed`), onChosen: f.onChosen });
}

export function pointInTimeSummary(r: PointInTimeResult, snapshotFile: string): string {
  const at = new Date(r.time).toISOString();
  return [
    `Restored the cluster as it was at ${at} (revision ${r.revision}): full backup ${r.baseSnapshot.slice(0, 8)} (revision ${r.baseRevision}) ` +
      `and ${r.changesApplied} changes in ${r.revisionsApplied} revisions from ${r.changeSetsRead} change set(s), in ${r.durationSecs.toFixed(1)} s ` +
      `(replay ${r.replaySecs.toFixed(1)} s)`,
    `  etcd snapshot: ${snapshotFile} (${r.size} bytes, SHA-256 ${r.sha256}; every replayed revision landed on its own number)`,
    '',
    `Next: kubedr etcd-restore --snapshot ${snapshotFile} --help`,
    '',
  ].join('\n');
}
