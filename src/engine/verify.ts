/**
 * @module Proving a backup restores: read it back from the repository (not the local file that was uploaded), check
 * the etcd snapshot's SHA-256 (its own trailer, and the record's when given), build an etcd data directory from it
 * (`etcdutl`/`etcdctl snapshot restore`), start a throwaway etcd on it on free loopback ports, and read what a
 * Kubernetes etcd must hold: its revision, its key count, and `/registry/namespaces/kube-system`. Everything it
 * started or wrote is stopped and removed on every path.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '../util/scratch.ts';
import { type CertificateExpiry, readCertificateExpiries } from './certificates.ts';
import { EngineError, type EngineErrorKind } from './errors.ts';
import { parseOutcome, restoreBackup, type SnapshotFilter } from './restore.ts';
import type { Repository, Restic } from './restic.ts';
import { etcdctl, startThrowawayEtcd } from './throwaway-etcd.ts';

/** A key every Kubernetes etcd holds: a snapshot without it is not a cluster's. */
export const KUBERNETES_KEY = '/registry/namespaces/kube-system';

export interface VerifyRequest {
  repo: Repository;
  /** Snapshot id (or "latest", or a prefix), as for a restore. */
  snapshot: string;
  /** Only snapshots of this policy and cluster, as for a restore. */
  filter?: SnapshotFilter;
  /** Read under restic's shared lock, so a prune cannot repack the data meanwhile (the controller's verifications). */
  sharedLock?: boolean;
  /** SHA-256 the etcd snapshot must have (the record's etcdSnapshotSha256), when known. */
  expectSha256?: string;
  /** Require the Kubernetes key (default true; false for a plain etcd). */
  kubernetes?: boolean;
  signal?: AbortSignal;
  /** Time limit of the whole verification. */
  timeoutMs?: number;
  onStep?: (step: string) => void;
  /** etcd binary (default: `etcd` on PATH) and the restore tool (default: etcdutl, else etcdctl). */
  etcd?: string;
  restoreTool?: string;
}

export interface VerifyResult {
  snapshotId: string;
  sha256: string;
  /** Size of the etcd snapshot file read back, bytes. */
  etcdSnapshotSize: number;
  /** The certificates the backup holds and their expiry (read from the restored copy), when it has them. */
  certificates?: CertificateExpiry[];
  revision: number;
  keyCount: number;
  durationSecs: number;
}

/**
 * What one verification run reports to whoever started it (the controller reads it from the verification pod's
 * termination message): kept under the kubelet's 4096-byte limit. `kind` names the failure as EngineError does.
 */
export type VerifyOutcome = ({ ok: true } & VerifyResult) | { ok: false; error: string; kind: EngineErrorKind };

/** The outcome in a termination message, or undefined when the message is something else (a crash's log tail). */
export function parseVerifyOutcome(message: string | undefined): VerifyOutcome | undefined {
  return parseOutcome<VerifyOutcome>(message);
}

/** Verifies one backup; throws EngineError naming what failed. */
export async function verifyBackup(restic: Restic, req: VerifyRequest): Promise<VerifyResult> {
  const started = performance.now();
  const work = await scratchDir('verify');
  const step = (s: string) => req.onStep?.(s);
  try {
    step('reading the backup back from the repository');
    const restored = await restoreBackup(restic, {
      repo: req.repo, snapshot: req.snapshot, filter: req.filter, target: join(work, 'restore'), expectSha256: req.expectSha256, sharedLock: req.sharedLock,
      signal: req.signal, timeoutMs: req.timeoutMs, onStep: step,
    });
    // Read before the copy goes: a record adopted from the repository gets its facts from here.
    const certificates = restored.certificates ? await readCertificateExpiries(restored.certificates) : undefined;
    step('building an etcd data directory from the snapshot, and starting a throwaway etcd on it');
    const etcdStarted = startThrowawayEtcd({ snapshotFile: restored.etcdSnapshot, work, name: 'verify', etcd: req.etcd,
      restoreTool: req.restoreTool, sha256: restored.sha256, signal: req.signal });
    // The downloaded copy is no longer needed once the data directory is built; a big snapshot should not sit on the
    // scratch volume twice.
    const etcd = await etcdStarted;
    await rm(join(work, 'restore'), { recursive: true, force: true });
    try {
      const status = JSON.parse(await etcdctl(etcd.endpoint, ['endpoint', 'status', '-w', 'json'], req.signal)) as
        { Status?: { header?: { revision?: number } } }[];
      const revision = Number(status[0]?.Status?.header?.revision ?? 0);
      // A range response's `count` is the number of keys in the whole range, whatever its limit (etcdctl 3.4 has no
      // --count-only): one key read, all counted.
      const count = JSON.parse(await etcdctl(etcd.endpoint, ['get', '', '--prefix', '--keys-only', '--limit', '1', '-w', 'json'], req.signal)) as { count?: number };
      const keyCount = Number(count.count ?? 0);
      if (req.kubernetes !== false) {
        const k8s = JSON.parse(await etcdctl(etcd.endpoint, ['get', KUBERNETES_KEY, '--keys-only', '-w', 'json'], req.signal)) as { count?: number };
        if (!k8s.count) {
          throw new EngineError('Failed', `the restored etcd (revision ${revision}, ${keyCount} keys) has no ${KUBERNETES_KEY}: not a Kubernetes cluster's etcd`);
        }
      }
      return { snapshotId: restored.snapshot.id, sha256: restored.sha256, etcdSnapshotSize: restored.etcdSnapshotSize, certificates,
        revision, keyCount, durationSecs: (performance.now() - started) / 1000 };
    } finally {
      await etcd.stop();
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
