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

/** The containers of an objects restore's pod (object-restore-pod.ts) whose ends decide the restore. */
export const OBJECTS_CONTAINER = 'restore-objects';
export const PREPARE_CONTAINER = 'prepare';
/** A browse pod's container that serves until the pod's time limit or deletion. */
export const SERVE_CONTAINER = 'serve';

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
 * Which backup a restore pod's `kubedr` reads: the record's, checked against its SHA-256 (`snapshot` spells the ID as
 * the command takes it); or, with `spec.at`, the record's policy at that point (its chain of full backups and stored
 * changes: no single snapshot's SHA-256 to check against).
 */
export function backupSourceArgs(input: Pick<RestorePodInput, 'restore' | 'record' | 'cluster'>, snapshot: (id: string) => string[]): string[] {
  const { restore, record } = input;
  const sha = record.status?.etcdSnapshotSha256;
  if (restore.spec.at) {
    return ['--at', restore.spec.at, '--policy', record.spec.policy, ...(input.cluster ? ['--cluster', input.cluster] : [])];
  }
  return [...snapshot(record.spec.snapshotId), ...(sha ? ['--expect-sha256', sha] : [])];
}

/** Name, labels, generation and owner of a restore's pod (of either kind): the restore controller finds it by these. */
export function restorePodMetadata(restore: MetadataRestore): Pod['metadata'] & { name: string } {
  return {
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
  };
}

export function restorePod(input: RestorePodInput): Pod {
  const { restore, location, image, deadlineSeconds } = input;
  const creds = location.spec.credentials;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: restorePodMetadata(restore),
    spec: {
      ...toolPodSpec(input),
      containers: [{
        name: 'restore',
        image,
        args: ['restore', ...backupSourceArgs(input, (id) => [id]), '--target', RESTORE_MOUNT, '--force',
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
        { name: 'target', persistentVolumeClaim: { claimName: restore.spec.pvcName! } },
        { name: 'tmp', emptyDir: {} },
        repositoryVolume(creds),
      ],
    },
  };
}

export type PodProgress =
  | { state: 'succeeded'; message?: string }
  | { state: 'failed'; message: string }
  /** Not started yet; `problem` is what keeps it (unschedulable, image pull), if the pod says. */
  | { state: 'starting'; problem?: string; sinceMs: number }
  /** `ready`: a browse pod serves (its readiness probe passed). */
  | { state: 'running'; ready?: boolean };

/**
 * What the pod's status says about the restore. A files restore ends with its pod; an objects restore when its
 * `restore-objects` container has ended (the kube-apiserver beside it serves on), and before that it may fail in its
 * init container.
 */
export function podProgress(pod: Pod, now: Date): PodProgress {
  const status = pod.status ?? {};
  const browse = pod.spec?.containers.some((c) => c.name === SERVE_CONTAINER) ?? false;
  // Both serve the backup through a kube-apiserver beside them, prepared by an init container.
  const objects = browse || (pod.spec?.containers.some((c) => c.name === OBJECTS_CONTAINER) ?? false);
  const name = browse ? SERVE_CONTAINER : objects ? OBJECTS_CONTAINER : 'restore';
  const container = status.containerStatuses?.find((c) => c.name === name);
  const terminated = container?.state?.terminated;
  // A browse ends at its time limit (the pod's deadline): what it was for.
  if (browse && status.phase === 'Failed' && status.reason === 'DeadlineExceeded') {
    // Only a browse whose serve container ran got to serve; one still preparing (a stalled S3) never did.
    return container?.state?.terminated || container?.state?.running ? { state: 'succeeded', message: 'served until its time limit' }
      : { state: 'failed', message: 'the browse reached its time limit before it served: the backup was still being prepared' };
  }
  if (browse && terminated) return { state: 'failed', message: `the browse stopped: ${podEndDetail(pod, name)}` };
  if (objects && !browse && terminated) {
    const said = terminated.message ? oneLine(terminated.message) : '';
    return terminated.exitCode === 0 ? { state: 'succeeded', message: said } : { state: 'failed', message: `restore-objects failed: ${podEndDetail(pod, name)}` };
  }
  if (status.phase === 'Succeeded') return { state: 'succeeded' };
  if (status.phase === 'Failed') {
    if (objects) {
      const init = status.initContainerStatuses?.find((c) => c.name === PREPARE_CONTAINER)?.state?.terminated;
      if (init && init.exitCode !== 0) {
        return { state: 'failed', message: `preparing the backup failed: exit code ${init.exitCode}${init.message ? `: ${oneLine(init.message)}` : ''}` };
      }
      return { state: 'failed', message: `restore pod failed: ${[status.reason, status.message].filter(Boolean).join(': ') || podEndDetail(pod, name)}` };
    }
    const outcome = parseRestoreOutcome(terminated?.message);
    if (outcome && !outcome.ok) return { state: 'failed', message: outcome.error };
    return { state: 'failed', message: `restore pod failed: ${podEndDetail(pod, 'restore')}` };
  }
  if (browse && container?.state?.running) return { state: 'running', ready: container.ready };
  if (container?.state?.running || terminated) return { state: 'running' };
  // An objects restore's init container at work (downloading the backup) is running too.
  if (objects && status.initContainerStatuses?.some((c) => c.state?.running || c.state?.terminated)) return { state: 'running' };
  const sinceMs = now.getTime() - Date.parse(pod.metadata.creationTimestamp ?? now.toISOString());
  const waiting = (objects ? status.initContainerStatuses?.find((c) => c.name === PREPARE_CONTAINER) : container)?.state?.waiting ?? container?.state?.waiting;
  if (waiting?.reason && waiting.reason !== 'ContainerCreating' && waiting.reason !== 'PodInitializing') {
    return { state: 'starting', sinceMs, problem: `${waiting.reason}${waiting.message ? `: ${oneLine(waiting.message)}` : ''}` };
  }
  const scheduled = status.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False') {
    return { state: 'starting', sinceMs, problem: `${scheduled.reason ?? 'not scheduled'}${scheduled.message ? `: ${oneLine(scheduled.message)}` : ''}` };
  }
  return { state: 'starting', sinceMs, problem: scheduled ? undefined : 'not scheduled to a node' };
}
