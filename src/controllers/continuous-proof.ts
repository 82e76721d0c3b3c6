/**
 * @module Proving a policy's continuous backup while it runs: the newest stored revision rebuilt from S3 (in a pod of
 * its own when the controller has an image for one, as verifications of full backups) must have exactly the history
 * etcd has at that revision (engine/continuous/verify-chain.ts). A failed proof is a Warning event, a metric at 0, the
 * policy's status, and a full backup at once: a chain that does not rebuild must not be the only way back.
 */
import { CONTINUOUS_BACKUP_VERIFICATION_FAILED, CONTINUOUS_BACKUP_VERIFIED } from '../api/events.ts';
import { keysDigest, contentHashAt, verifyChain } from '../engine/continuous/verify-chain.ts';
import { EtcdClient } from '../engine/etcd-client.ts';
import type { Logger } from '../util/log.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupPolicyStatus, MetadataBackupRecord } from '../api/types.ts';
import type { BackupOrigin } from '../engine/origin.ts';
import type { EtcdConnection } from '../engine/etcd-connection.ts';
import type { Repository, Restic } from '../engine/restic.ts';
import type { Metrics } from '../metrics/registry.ts';
import { type Informer, objectKey } from '../runtime/informer.ts';
import type { EventRecorder } from '../runtime/recorder.ts';
import type { VerificationPods } from './verification-pod.ts';

export interface ProofDeps {
  locations: Informer<BackupLocation>;
  records?: Informer<MetadataBackupRecord>;
  restic: Restic;
  recorder: EventRecorder;
  metrics: Metrics;
  origin: BackupOrigin;
  pods?: Pick<VerificationPods, 'verifyChain'>;
  acquire?: (signal: AbortSignal) => Promise<() => void>;
  requestBackup: (key: string) => void;
  /** Writes part of the policy's status.continuous. */
  report: (status: Partial<NonNullable<MetadataBackupPolicyStatus['continuous']>>) => Promise<void>;
}

/**
 * Proves the chain at `revision`: etcd's digest of its keys' history and its content hash at that revision first
 * (before it compacts it), then the same revision rebuilt from S3 (in a pod when there is one), compacted as far, and
 * its digest and hash; they must be equal. Never throws.
 */
export async function proveChain(deps: ProofDeps, p: MetadataBackupPolicy, inputs: { etcd: EtcdConnection; repo: Repository }, revision: number,
signal: AbortSignal, log: Logger): Promise<boolean | undefined> {
  const name = p.metadata.name;
  let release: (() => void) | undefined;
  let passed: boolean;
  let message: string;
  try {
    const client = await EtcdClient.connect(inputs.etcd);
    let live;
    try {
      live = { ...await keysDigest(client, revision), ...await contentHashAt(client, revision) };
    } finally {
      client.close();
    }
    // Reading etcd takes no signal: stopped meanwhile (leadership lost, policy changed), nothing more is started.
    if (signal.aborted) return undefined;
    release = await deps.acquire?.(signal);
    const location = deps.locations.get(`${p.metadata.namespace}/${p.spec.destination}`);
    const size = deps.records?.list().filter((r) => r.spec.policy === name && r.metadata.namespace === p.metadata.namespace)
      .map((r) => r.status?.etcdSnapshotSize ?? 0).reduce((a, b) => Math.max(a, b), 0);
    const rebuilt = deps.pods && location
      ? await deps.pods.verifyChain(location, p, revision, live.compactRevision, size || undefined, signal)
      : await verifyChain(deps.restic, { repo: inputs.repo, policy: name, origin: deps.origin, revision, compactRevision: live.compactRevision, signal,
        sharedLock: true });
    passed = rebuilt.digest === live.digest && rebuilt.keyCount === live.keyCount && rebuilt.contentHash === live.contentHash;
    message = passed
      ? `revision ${revision} rebuilt from full backup ${rebuilt.baseSnapshot.slice(0, 8)} and ${rebuilt.changesApplied} stored changes ` +
        `has exactly etcd's history and content (${rebuilt.keyCount} keys, etcd hash ${rebuilt.contentHash}` +
        `${live.compactRevision > 0 ? ` since compacted revision ${live.compactRevision}` : ''}) ` +
        `in ${rebuilt.durationSecs.toFixed(1)} s`
      : `revision ${revision} rebuilt from S3 differs from etcd's: ${rebuilt.keyCount} keys against ${live.keyCount}, history digests ` +
        `${rebuilt.digest.slice(0, 12)} and ${live.digest.slice(0, 12)}, etcd hashes ${rebuilt.contentHash} and ${live.contentHash}: ` +
        'restores to a time may not be the cluster as it was; a full backup is taken now';
  } catch (err) {
    if (signal.aborted) return undefined;
    passed = false;
    message = `proving the chain at revision ${revision} failed: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    release?.();
  }
  deps.metrics.continuousLastVerification.set({ policyName: name }, passed ? 1 : 0);
  if (passed) log.info('continuous backup proven', { revision });
  else {
    log.warn('continuous backup proof failed', { revision, error: message });
    // A chain that does not rebuild must not be the only way back: a full backup starts a sound one.
    deps.requestBackup(objectKey(p));
  }
  await deps.recorder.event(p, passed ? 'Normal' : 'Warning', passed ? CONTINUOUS_BACKUP_VERIFIED : CONTINUOUS_BACKUP_VERIFICATION_FAILED, message)
    .catch(() => undefined);
  await deps.report({ lastVerifiedTime: new Date().toISOString(), lastVerifiedRevision: revision, lastVerificationResult: passed ? 'Passed' : 'Failed',
    lastVerificationMessage: message });
  return passed;
}
