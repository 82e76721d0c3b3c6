/**
 * @module Point-in-time restore: the etcd snapshot of a moment between full backups, built by replaying stored changes
 * onto the full backup before it. The full backup is restored into a throwaway etcd, each stored revision is applied as
 * one transaction, and the result is saved as an ordinary etcd snapshot, so everything downstream (`kubedr
 * etcd-restore`, `--kubeadm`, HA members, the revision bump) works on it unchanged.
 *
 * Replaying through etcd itself, not by writing its database: etcd's own transactions give the exact revision numbers,
 * and a revision that does not land where the original did is a hole in the chain, reported, never glossed over. The
 * output is in the layout of an ordinary restore (`data/etcd-snapshot.db`, `data/certificates/` of the full backup),
 * plus `data/point-in-time.json` saying what it is.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { holdsData } from '../../util/fs.ts';
import { DATA_DIR, SNAPSHOT_FILE } from '../backup-layout.ts';
import { EtcdClient } from '../etcd-client.ts';
import { saveSnapshot } from '../etcd-snapshot.ts';
import { EngineError } from '../errors.ts';
import type { BackupOrigin } from '../origin.ts';
import { countFiles, replaceData, restoreBackup } from '../restore.ts';
import type { SnapshotInfo } from '../restic-output.ts';
import type { Repository, Restic } from '../restic.ts';
import { startThrowawayEtcd } from '../throwaway-etcd.ts';
import { chainOf, changeSetRevisions, listChain, loadChangeSet } from './change-store.ts';
import { type PointInTime, planReplay } from './window.ts';

/** TTL given to a lease first seen in the changes (etcd's watch does not say it): Kubernetes' event TTL, one hour. */
const REPLAYED_LEASE_TTL = 3600;

export interface PointInTimeRequest {
  repo: Repository;
  policy: string;
  /** Only this cluster's and install's backups (undefined: whatever the policy's tags match; the caller checked). */
  origin?: BackupOrigin;
  target: PointInTime;
  /** The policy's snapshots, already listed and narrowed to one cluster (the command line's --cluster); else listed here. */
  snapshots?: readonly SnapshotInfo[];
  /** Directory that receives `data/` as a restore writes it. */
  dir: string;
  overwrite?: boolean;
  onStep?: (step: string) => void;
  /** Told the revisions applied so far, now and then. */
  onProgress?: (applied: number, total?: number) => void;
  signal?: AbortSignal;
  etcd?: string;
  restoreTool?: string;
  /** Told the full backup the point is reached from, before anything is downloaded (see RestoreRequest.onChosen). */
  onChosen?: (base: SnapshotInfo) => void | Promise<void>;
  /** Read under restic's shared lock, so a prune cannot repack what is being read (RestoreRequest.sharedLock). */
  sharedLock?: boolean;
}

export interface PointInTimeResult {
  /** The full backup replayed onto (restic snapshot id) and its revision as restored. */
  baseSnapshot: string;
  baseRevision: number;
  /** The revision reached, and when the controller received it (the full backup's time when no change was applied). */
  revision: number;
  time: number;
  revisionsApplied: number;
  changesApplied: number;
  changeSetsRead: number;
  /** Of the resulting etcd snapshot. */
  sha256: string;
  size: number;
  /** Files and bytes of the restored `data/` (the snapshot, the certificates, extra paths). */
  files: number;
  bytes: number;
  replaySecs: number;
  durationSecs: number;
}

export const POINT_IN_TIME_FILE = 'point-in-time.json';

export async function restorePointInTime(restic: Restic, req: PointInTimeRequest): Promise<PointInTimeResult> {
  const started = performance.now();
  const step = req.onStep ?? (() => {});
  if (!req.overwrite && await holdsData(join(req.dir, DATA_DIR))) {
    throw new EngineError('Exists', `${join(req.dir, DATA_DIR)} already exists and is not empty; choose another target, or allow replacing it (kubedr restore --force)`);
  }
  step('listing full backups and change sets');
  const { fulls, sets } = req.snapshots ? chainOf(req.snapshots) : await listChain(restic, req.repo, req.policy, req.origin, { signal: req.signal });
  const plan = planReplay(fulls, sets, req.target);
  await mkdir(req.dir, { recursive: true });
  const work = await mkdtemp(join(req.dir, '.kubedr-point-in-time-'));
  try {
    step(`restoring the full backup ${plan.base.id.slice(0, 8)} (revision ${plan.base.revision})`);
    const base = await restoreBackup(restic, { repo: req.repo, snapshot: plan.base.id, target: join(work, 'base'), onStep: step, signal: req.signal,
      onChosen: req.onChosen, sharedLock: req.sharedLock });
    step('starting a throwaway etcd on it');
    const etcd = await startThrowawayEtcd({
      snapshotFile: base.etcdSnapshot, work: join(work, 'etcd'), name: 'replay', etcd: req.etcd, restoreTool: req.restoreTool,
      sha256: base.sha256, signal: req.signal,
      // A revision may hold more changes than etcd's defaults allow in one transaction (a lease expiring deletes all its
      // keys at once): the original etcd applied it, so the replay must. The quota is lifted for the same reason.
      // Nothing of it needs to survive a crash but the snapshot saved at the end, and each transaction waits for the one
      // before it (the revisions must land in order), so fsync would set the pace: it is off.
      flags: ['--max-txn-ops', '1000000', '--max-request-bytes', String(256 << 20), '--quota-backend-bytes', String(16 * 2 ** 30),
        '--unsafe-no-fsync'],
    });
    await rm(base.etcdSnapshot, { force: true });
    const client = await EtcdClient.connect({ endpoint: etcd.endpoint });
    let stopKeepAlive = () => {};
    try {
      const baseRevision = await client.revision();
      let revision = baseRevision;
      let time = plan.base.time;
      let revisionsApplied = 0;
      let changesApplied = 0;
      let setsRead = 0;
      const leases = new Set(await client.leases());
      stopKeepAlive = client.keepLeasesAlive(() => leases);
      const replayStarted = performance.now();
      step(`replaying changes after revision ${baseRevision}`);
      const needed = plan.sets.filter((s) => s.toRevision > revision);
      // The next change set is read from S3 while this one is replayed: each read is a restic run of its own.
      const load = (i: number) => {
        const set = needed[i];
        return set ? loadChangeSet(restic, req.repo, set, { signal: req.signal, sharedLock: req.sharedLock }) : undefined;
      };
      let next = load(0);
      replay: for (let i = 0; i < needed.length; i++) {
        const set = needed[i]!;
        const text = await next!;
        next = load(i + 1);
        // A read still running when the replay stops early is not waited for; its failure does not matter then.
        next?.catch(() => undefined);
        setsRead++;
        for await (const rev of changeSetRevisions(text)) {
          if (rev.revision <= revision) continue;
          if (rev.revision > plan.untilRevision || rev.receivedAt > plan.untilTime) break replay;
          if (rev.revision !== revision + 1) {
            throw new EngineError('IntegrityError', `the stored changes skip from revision ${revision} to ${rev.revision} (change set ` +
              `${set.id.slice(0, 8)}): a hole in the chain`);
          }
          for (const ch of rev.changes) {
            if (ch.lease && !leases.has(ch.lease)) {
              await client.grantLease(ch.lease, REPLAYED_LEASE_TTL);
              leases.add(ch.lease);
            }
          }
          const landed = await client.apply(rev.changes);
          if (landed !== rev.revision) {
            throw new EngineError('IntegrityError', `revision ${rev.revision} replayed as ${landed}: the full backup and the changes do not fit together`);
          }
          revision = landed;
          time = rev.receivedAt;
          revisionsApplied++;
          changesApplied += rev.changes.length;
          if (revisionsApplied % 5000 === 0) req.onProgress?.(revisionsApplied);
        }
      }
      const replaySecs = (performance.now() - replayStarted) / 1000;
      step(`saving the etcd snapshot at revision ${revision}`);
      stopKeepAlive();
      const snapshotFile = join(work, 'base', DATA_DIR, SNAPSHOT_FILE);
      const saved = await saveSnapshot({ endpoint: etcd.endpoint }, snapshotFile, { signal: req.signal });
      const result: PointInTimeResult = {
        baseSnapshot: plan.base.id, baseRevision, revision, time, revisionsApplied, changesApplied, changeSetsRead: setsRead,
        sha256: saved.sha256, size: saved.size, replaySecs, durationSecs: 0, files: 0, bytes: 0,
      };
      await etcd.stop();
      await writeFile(join(work, 'base', DATA_DIR, POINT_IN_TIME_FILE), `${JSON.stringify({ ...result, time: new Date(time).toISOString() }, null, 2)}\n`);
      const counted = await countFiles(join(work, 'base', DATA_DIR));
      await replaceData(join(work, 'base', DATA_DIR), req.dir);
      return { ...result, ...counted, durationSecs: (performance.now() - started) / 1000 };
    } finally {
      stopKeepAlive();
      client.close();
      await etcd.stop();
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
