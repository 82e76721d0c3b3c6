/**
 * @module Verification in a pod of its own. The throwaway etcd of a verification maps its whole database: at 1.2 GB it
 * took 1,282 MB, above the chart's default memory limit of the controller, and an out-of-memory kill there takes every
 * policy's backups down with it. So when the controller has an image for its pods (`--restore-image`, set by the
 * chart), each verification runs `kubedr verify` in a pod of its own, like a restore pod: the controller's image, the
 * restore pods' placement (node selector, tolerations, user), memory and scratch space sized from the backup, the
 * repository credentials only as secretKeyRef variables, and the outcome read from its termination message. The pod
 * belongs to the record (deleted with it) and is deleted when it has answered, or when the verification is cancelled.
 */
import { API_VERSION, BACKUP_POLICY, BACKUP_RECORD, COMPONENT, POD } from '../api/group.ts';
import type { BackupLocation, MetadataBackupPolicy, MetadataBackupRecord, Pod } from '../api/types.ts';
import type { ChainVerifyOutcome, ChainVerifyResult } from '../engine/continuous/verify-chain.ts';
import { EngineError } from '../engine/errors.ts';
import { parseOutcome } from '../engine/restore.ts';
import { type VerifyResult, parseVerifyOutcome } from '../engine/verify.ts';
import type { KubeClient } from '../kube/client.ts';
import { isAlreadyExists, isNotFound } from '../kube/errors.ts';
import type { Logger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';
import { restoreTimeoutSeconds } from './restore-pod.ts';
import { CONTAINER_SECURITY, type ToolPodInput, podEndDetail, repositoryEnv, repositoryVolume, repositoryVolumeMount, toolPodSpec } from './tool-pod.ts';

const TERMINATION_LOG = '/dev/termination-log';
const MI = 1024 * 1024;

/** `kubedr-verify-<record>`, within the 63 characters of a label value and a pod name's DNS label. */
export const verificationPodName = (recordName: string): string => `kubedr-verify-${recordName}`.slice(0, 63).replace(/[^a-z0-9]+$/, '');

/**
 * Memory and scratch space for a snapshot of `bytes`: the throwaway etcd maps its whole database (measured: 1,199 MB of
 * RSS for a 1,209 MB snapshot), restic and kubedr need about 150 MB more; the scratch space holds the downloaded
 * snapshot and the data directory built from it, each as large as the snapshot.
 */
export function verificationResources(bytes: number | undefined): { memoryMi: number; scratchMi: number } {
  const mi = Math.ceil((bytes ?? 0) / MI);
  return { memoryMi: Math.max(512, Math.ceil(mi * 1.25) + 256), scratchMi: Math.max(256, mi * 2 + 256) };
}

/** What tells one verification pod from another: its name, owner, `kubedr verify` arguments and room. */
interface VerifyPodShape {
  name: string;
  namespace?: string;
  owner: { kind: 'MetadataBackupRecord' | 'MetadataBackupPolicy'; name: string; uid?: string };
  args: string[];
  memoryMi: number;
  scratchMi: number;
}

function verifyPod(input: Omit<ToolPodInput, 'record'>, shape: VerifyPodShape): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: shape.name,
      namespace: shape.namespace,
      labels: { 'app.kubernetes.io/name': COMPONENT, 'app.kubernetes.io/component': 'verification', 'app.kubernetes.io/managed-by': COMPONENT },
      ownerReferences: [{ apiVersion: API_VERSION, kind: shape.owner.kind, name: shape.owner.name, uid: shape.owner.uid ?? '' }],
    },
    spec: {
      ...toolPodSpec(input),
      // kubedr verify stops its etcd and restic on SIGTERM within seconds; nothing of it is worth waiting 30 s for.
      terminationGracePeriodSeconds: 10,
      containers: [{
        name: 'verify',
        image: input.image,
        args: [...shape.args, '--url', input.location.spec.url, '--bucket', input.location.spec.bucketName, '--termination-log', TERMINATION_LOG],
        env: repositoryEnv(input.location.spec.credentials),
        resources: { requests: { cpu: '100m', memory: `${shape.memoryMi}Mi` }, limits: { memory: `${shape.memoryMi}Mi` } },
        securityContext: CONTAINER_SECURITY,
        terminationMessagePath: TERMINATION_LOG,
        terminationMessagePolicy: 'FallbackToLogsOnError',
        volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }, repositoryVolumeMount],
      }],
      volumes: [{ name: 'tmp', emptyDir: { sizeLimit: `${shape.scratchMi}Mi` } }, repositoryVolume(input.location.spec.credentials)],
    },
  };
}

export function verificationPod(input: ToolPodInput): Pod {
  const { record } = input;
  const sha = record.status?.etcdSnapshotSha256;
  const { memoryMi, scratchMi } = verificationResources(record.status?.etcdSnapshotSize);
  return verifyPod(input, {
    name: verificationPodName(record.metadata.name), namespace: record.metadata.namespace,
    owner: { kind: 'MetadataBackupRecord', name: record.metadata.name, uid: record.metadata.uid },
    args: ['verify', record.spec.snapshotId, '--lock', '--timeout', `${restoreTimeoutSeconds(input.deadlineSeconds)}s`, ...(sha ? ['--expect-sha256', sha] : [])],
    memoryMi, scratchMi,
  });
}

/** `kubedr-verify-chain-<policy>`, within the 63 characters of a pod name. */
export const chainVerificationPodName = (policy: string): string => `kubedr-verify-chain-${policy}`.slice(0, 63).replace(/[^a-z0-9]+$/, '');

/**
 * A pod proving a policy's continuous backup (`kubedr verify --continuous`): it rebuilds `revision` from the full
 * backup before it and the stored changes, in a throwaway etcd, then starts the saved result in another. Sized like a
 * verification of the newest full backup, with room for the changes (the replay's etcd grows with them) and, on disk,
 * for the downloaded full backup, the replay's data directory, the saved result and the data directory built from it.
 */
export function chainVerificationPod(input: Omit<ToolPodInput, 'record'> & { policy: MetadataBackupPolicy; revision: number; compactRevision: number;
  sizeBytes?: number; }): Pod {
  const { policy, revision, compactRevision } = input;
  const { memoryMi, scratchMi } = verificationResources(input.sizeBytes);
  return verifyPod(input, {
    name: chainVerificationPodName(policy.metadata.name), namespace: policy.metadata.namespace,
    owner: { kind: 'MetadataBackupPolicy', name: policy.metadata.name, uid: policy.metadata.uid },
    // etcd says -1 when it never compacted: nothing to compact to then.
    args: ['verify', '--continuous', '--policy', policy.metadata.name, '--revision', String(revision), '--lock',
      ...(compactRevision > 0 ? ['--compact-revision', String(compactRevision)] : [])],
    memoryMi: memoryMi + 256, scratchMi: scratchMi * 2,
  });
}

/** The verification's result from the finished pod, or an EngineError saying why it has none. */
export function verificationOutcome(pod: Pod): VerifyResult {
  const terminated = pod.status?.containerStatuses?.find((c) => c.name === 'verify')?.state?.terminated;
  const outcome = parseVerifyOutcome(terminated?.message);
  if (outcome?.ok) {
    const { ok: _ok, ...result } = outcome;
    return result;
  }
  if (outcome) throw new EngineError(outcome.kind, outcome.error);
  const detail = podEndDetail(pod, 'verify');
  // OOMKilled, DeadlineExceeded, evicted: not the data's fault; kinds that do not have the repository checked.
  throw new EngineError(/OOMKilled/.test(detail) ? 'InvalidInput' : 'Timeout', `verification pod failed: ${detail}`);
}

/** The pods' image and placement, as for restore pods, and how long one may take to start. */
export interface VerificationPodsDeps extends Omit<ToolPodInput, 'record' | 'location'> {
  client: KubeClient;
  log: Logger;
  startTimeoutMs: number;
  pollMs?: number;
}

/** Runs a verification in its pod and waits for its answer. */
export class VerificationPods {
  constructor(private readonly deps: VerificationPodsDeps) {}

  async verify(location: BackupLocation, record: MetadataBackupRecord, signal: AbortSignal): Promise<VerifyResult> {
    const ns = record.metadata.namespace ?? '';
    // The pod belongs to the record; one just made by this process is known here by name only, its uid by the API.
    const owner = record.metadata.uid ? record : await this.deps.client.get<MetadataBackupRecord>(BACKUP_RECORD, ns, record.metadata.name, signal);
    const pod = verificationPod({ record: owner, location, ...this.deps });
    return verificationOutcome(await this.run(pod, signal, { record: record.metadata.name }));
  }

  /** Proves a policy's continuous backup at `revision` (see chainVerificationPod). */
  async verifyChain(location: BackupLocation, policy: MetadataBackupPolicy, revision: number, compactRevision: number, sizeBytes: number | undefined,
    signal: AbortSignal): Promise<ChainVerifyResult> {
    const ns = policy.metadata.namespace ?? '';
    const owner = policy.metadata.uid ? policy : await this.deps.client.get<MetadataBackupPolicy>(BACKUP_POLICY, ns, policy.metadata.name, signal);
    const pod = chainVerificationPod({ policy: owner, location, revision, compactRevision, sizeBytes, ...this.deps });
    const done = await this.run(pod, signal, { policy: policy.metadata.name, revision });
    const terminated = done.status?.containerStatuses?.find((c) => c.name === 'verify')?.state?.terminated;
    const outcome = parseOutcome<ChainVerifyOutcome>(terminated?.message);
    if (outcome?.ok) {
      const { ok: _ok, ...result } = outcome;
      return result;
    }
    if (outcome) throw new EngineError(outcome.kind, outcome.error);
    const detail = podEndDetail(done, 'verify');
    throw new EngineError(/OOMKilled/.test(detail) ? 'InvalidInput' : 'Timeout', `chain verification pod failed: ${detail}`);
  }

  /** Creates the pod afresh, waits until it has ended, returns it as it ended, and deletes it on every path. */
  private async run(pod: Pod, signal: AbortSignal, about: Record<string, string | number>): Promise<Pod> {
    const { client, log } = this.deps;
    const ns = pod.metadata.namespace ?? '';
    const name = pod.metadata.name;
    // A pod left by an earlier run (a restarted controller) answers for another attempt: start afresh.
    await client.delete(POD, ns, name, { gracePeriodSeconds: 0 }).catch((err) => { if (!isNotFound(err)) throw err; });
    for (let i = 0; ; i++) {
      try {
        await client.create(POD, ns, pod, signal);
        // Logged once it exists: a refused create (a deposed leader's fenced write) must not read as a started pod.
        log.info('verification pod created', { pod: name, ...about });
        break;
      } catch (err) {
        if (!isAlreadyExists(err) || i >= 30) throw err;
        await sleep(1000, signal); // the old one is still going
      }
    }
    const created = Date.now();
    try {
      for (;;) {
        await sleep(this.deps.pollMs ?? 1000, signal);
        if (signal.aborted) throw new EngineError('Cancelled', 'verification cancelled');
        const now = await client.get<Pod>(POD, ns, name, signal).catch((err) => {
          // Deleted under it: with its owner (retention, by hand: the owner reference), or by a person.
          if (isNotFound(err)) throw new EngineError('Cancelled', `verification pod ${name} was deleted before it answered (its owner deleted?)`);
          throw err;
        });
        const phase = now.status?.phase;
        if (phase === 'Succeeded' || phase === 'Failed') return now;
        const started = now.status?.containerStatuses?.some((c) => c.state?.running || c.state?.terminated);
        if (!started && Date.now() - created > this.deps.startTimeoutMs) {
          const waiting = now.status?.containerStatuses?.[0]?.state?.waiting;
          const why = waiting?.reason ?? now.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False')?.message ?? 'not started';
          throw new EngineError('Timeout', `verification pod did not start within ${Math.round(this.deps.startTimeoutMs / 1000)} s: ${why}`);
        }
      }
    } finally {
      await client.delete(POD, ns, name, { gracePeriodSeconds: 0 }).catch((err) => log.warn('could not delete the verification pod', { pod: name, err }));
    }
  }
}
