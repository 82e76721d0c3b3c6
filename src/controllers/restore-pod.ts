/**
 * @module The restore pod: what the MetadataRestore controller creates (a pure function of its inputs) and how it reads
 * the pod's state back. The pod runs `kubedr restore` from the controller's own image with the claim mounted; the
 * credentials reach it only as secretKeyRef environment variables, so the pod spec holds no secret value.
 */
import { API_VERSION, COMPONENT, RESTORE_GENERATION_ANNOTATION, RESTORE_LABEL } from '../api/group.ts';
import type { MetadataRestore, Pod } from '../api/types.ts';
import { parseRestoreOutcome } from '../engine/restore.ts';
import { CONTAINER_SECURITY, type ToolPodInput, oneLine, podEndDetail, repositoryEnv, repositoryVolume, repositoryVolumeMount, toolPodSpec } from './tool-pod.ts';

/** Where the claim is mounted in the pod. */
export const RESTORE_MOUNT = '/restore';
const TERMINATION_LOG = '/dev/termination-log';

export const restorePodName = (restoreName: string): string => `kubedr-restore-${restoreName}`;

/**
 * The time limit `kubedr restore` gets in a pod that the kubelet stops after `deadlineSeconds`: a little less (a tenth,
 * at most a minute), so that restic is stopped, the staged files removed and the outcome written while the pod still
 * runs. Without it, the deadline would kill the pod mid-download and the restore would end without saying why.
 */
export function restoreTimeoutSeconds(deadlineSeconds: number): number {
  return Math.max(1, deadlineSeconds - Math.min(60, Math.ceil(deadlineSeconds / 10)));
}

export interface RestorePodInput extends ToolPodInput {
  restore: MetadataRestore;
  /** `--cluster` for a point-in-time restore: this cluster and install ("<cluster id>/<namespace>"), when known. */
  cluster?: string;
}

/**
 * `kubedr restore`'s arguments: the record's backup, checked against its SHA-256; or, with `spec.at`, the record's policy
 * to that point (its chain of full backups and stored changes: no single snapshot's SHA-256 to check against).
 */
function restoreArgs(input: RestorePodInput): string[] {
  const { restore, record } = input;
  const sha = record.status?.etcdSnapshotSha256;
  if (restore.spec.at) {
    return ['restore', '--at', restore.spec.at, '--policy', record.spec.policy, ...(input.cluster ? ['--cluster', input.cluster] : [])];
  }
  return ['restore', record.spec.snapshotId, ...(sha ? ['--expect-sha256', sha] : [])];
}


export function restorePod(input: RestorePodInput): Pod {
  const { restore, location, image, deadlineSeconds } = input;
  const creds = location.spec.credentials;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: restorePodName(restore.metadata.name),
      namespace: restore.metadata.namespace,
      labels: {
        [RESTORE_LABEL]: restore.metadata.name.slice(0, 63).replace(/[^A-Za-z0-9]+$/, ''),
        'app.kubernetes.io/name': COMPONENT,
        'app.kubernetes.io/component': 'restore',
        'app.kubernetes.io/managed-by': COMPONENT,
      },
      annotations: { [RESTORE_GENERATION_ANNOTATION]: String(restore.metadata.generation ?? 0) },
      ownerReferences: [{
        apiVersion: API_VERSION, kind: 'MetadataRestore', name: restore.metadata.name, uid: restore.metadata.uid ?? '',
        controller: true, blockOwnerDeletion: true,
      }],
    },
    spec: {
      ...toolPodSpec(input),
      containers: [{
        name: 'restore',
        image,
        args: [...restoreArgs(input), '--target', RESTORE_MOUNT, '--force',
          '--url', location.spec.url, '--bucket', location.spec.bucketName, '--termination-log', TERMINATION_LOG,
          '--timeout', `${restoreTimeoutSeconds(deadlineSeconds)}s`],
        env: repositoryEnv(creds),
        resources: { requests: { cpu: '100m', memory: '256Mi' } },
        securityContext: CONTAINER_SECURITY,
        terminationMessagePath: TERMINATION_LOG,
        // A crash before the outcome is written still tells the controller something: the end of the log.
        terminationMessagePolicy: 'FallbackToLogsOnError',
        volumeMounts: [{ name: 'target', mountPath: RESTORE_MOUNT }, { name: 'tmp', mountPath: '/tmp' }, repositoryVolumeMount],
      }],
      volumes: [
        { name: 'target', persistentVolumeClaim: { claimName: restore.spec.pvcName } },
        { name: 'tmp', emptyDir: {} },
        repositoryVolume(creds),
      ],
    },
  };
}

export type PodProgress =
  | { state: 'succeeded' }
  | { state: 'failed'; message: string }
  /** Not started yet; `problem` is what keeps it (unschedulable, image pull), if the pod says. */
  | { state: 'starting'; problem?: string; sinceMs: number }
  | { state: 'running' };

/** What the pod's status says about the restore. */
export function podProgress(pod: Pod, now: Date): PodProgress {
  const status = pod.status ?? {};
  const container = status.containerStatuses?.find((c) => c.name === 'restore');
  const terminated = container?.state?.terminated;
  if (status.phase === 'Succeeded') return { state: 'succeeded' };
  if (status.phase === 'Failed') {
    const outcome = parseRestoreOutcome(terminated?.message);
    if (outcome && !outcome.ok) return { state: 'failed', message: outcome.error };
    return { state: 'failed', message: `restore pod failed: ${podEndDetail(pod, 'restore')}` };
  }
  if (container?.state?.running || terminated) return { state: 'running' };
  const sinceMs = now.getTime() - Date.parse(pod.metadata.creationTimestamp ?? now.toISOString());
  const waiting = container?.state?.waiting;
  if (waiting?.reason && waiting.reason !== 'ContainerCreating') {
    return { state: 'starting', sinceMs, problem: `${waiting.reason}${waiting.message ? `: ${oneLine(waiting.message)}` : ''}` };
  }
  const scheduled = status.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False') {
    return { state: 'starting', sinceMs, problem: `${scheduled.reason ?? 'not scheduled'}${scheduled.message ? `: ${oneLine(scheduled.message)}` : ''}` };
  }
  return { state: 'starting', sinceMs, problem: scheduled ? undefined : 'not scheduled to a node' };
}
