/**
 * @module The restore pod: what the MetadataRestore controller creates (a pure function of its inputs) and how it reads
 * the pod's state back. The pod runs `kubedr restore` from the controller's own image with the claim mounted; the
 * credentials reach it only as secretKeyRef environment variables, so the pod spec holds no secret value.
 */
import {
  API_VERSION, COMPONENT, LOCATION_SECRET_KEYS as K, RESTORE_GENERATION_ANNOTATION, RESTORE_LABEL, RESTORE_UID,
} from '../api/group.ts';
import { CONTROL_PLANE_TOLERATIONS } from '../api/placement.ts';
import type { BackupLocation, MetadataBackupRecord, MetadataRestore, Pod, Toleration } from '../api/types.ts';
import { parseRestoreOutcome } from '../engine/restore.ts';

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

export interface RestorePodInput {
  restore: MetadataRestore;
  record: MetadataBackupRecord;
  location: BackupLocation;
  image: string;
  /** The kubelet fails the pod after this long (spec.activeDeadlineSeconds). */
  deadlineSeconds: number;
  /** Node labels the pod's node must have; default any node. */
  nodeSelector?: Record<string, string>;
  /** Default: the control-plane taints (CONTROL_PLANE_TOLERATIONS). */
  tolerations?: readonly Toleration[];
  /** uid and gid of the pod; default the image's non-root user, 0 for root. */
  runAsUser?: number;
}

const secretEnv = (name: string, secret: string, key: string, optional = false) =>
  ({ name, valueFrom: { secretKeyRef: { name: secret, key, ...(optional ? { optional: true } : {}) } } });

/**
 * The pod's user. By default the image's non-root user, with fsGroup so that the kubelet makes the claim writable for
 * it. But the kubelet applies fsGroup only to volumes that support ownership management: hostPath and local volumes
 * keep their owner and mode, and a root-owned 0755 directory there is writable only by uid 0 (every capability is
 * dropped either way, so root writes through owner permission, not CAP_DAC_OVERRIDE). Root needs no fsGroup, and
 * without one the kubelet leaves the ownership of the claim's files alone.
 */
function podSecurityContext(uid: number) {
  const seccompProfile = { type: 'RuntimeDefault' };
  if (uid === 0) return { runAsNonRoot: false, runAsUser: 0, runAsGroup: 0, seccompProfile };
  return { runAsNonRoot: true, runAsUser: uid, runAsGroup: uid, fsGroup: uid, seccompProfile };
}

export function restorePod(input: RestorePodInput): Pod {
  const { restore, record, location, image, deadlineSeconds } = input;
  const nodeSelector = input.nodeSelector ?? {};
  const tolerations = input.tolerations ?? CONTROL_PLANE_TOLERATIONS;
  const creds = location.spec.credentials;
  const sha = record.status?.etcdSnapshotSha256;
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
      restartPolicy: 'Never',
      activeDeadlineSeconds: deadlineSeconds,
      // The pod talks to S3 only, never to the Kubernetes API.
      automountServiceAccountToken: false,
      ...(Object.keys(nodeSelector).length > 0 ? { nodeSelector: { ...nodeSelector } } : {}),
      // The claim's volume may be reachable only from a control-plane node (a local volume there, a one-node cluster),
      // which kubeadm taints; without tolerations the pod would stay Unschedulable until the start timeout.
      ...(tolerations.length > 0 ? { tolerations: tolerations.map((t) => ({ ...t })) } : {}),
      securityContext: podSecurityContext(input.runAsUser ?? RESTORE_UID),
      containers: [{
        name: 'restore',
        image,
        args: ['restore', record.spec.snapshotId, '--target', RESTORE_MOUNT, '--force',
          '--url', location.spec.url, '--bucket', location.spec.bucketName, '--termination-log', TERMINATION_LOG,
          '--timeout', `${restoreTimeoutSeconds(deadlineSeconds)}s`,
          ...(sha ? ['--expect-sha256', sha] : [])],
        env: [
          secretEnv('AWS_ACCESS_KEY_ID', creds, K.accessKey),
          secretEnv('AWS_SECRET_ACCESS_KEY', creds, K.secretKey),
          secretEnv('RESTIC_PASSWORD', creds, K.repoPassword),
          secretEnv('KUBEDR_S3_CA_CERT', creds, K.caCert, true),
          { name: 'TMPDIR', value: '/tmp' },
        ],
        resources: { requests: { cpu: '100m', memory: '256Mi' } },
        securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
        terminationMessagePath: TERMINATION_LOG,
        // A crash before the outcome is written still tells the controller something: the end of the log.
        terminationMessagePolicy: 'FallbackToLogsOnError',
        volumeMounts: [{ name: 'target', mountPath: RESTORE_MOUNT }, { name: 'tmp', mountPath: '/tmp' }],
      }],
      volumes: [
        { name: 'target', persistentVolumeClaim: { claimName: restore.spec.pvcName } },
        { name: 'tmp', emptyDir: {} },
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

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim().slice(0, 500);

/** What the pod's status says about the restore. */
export function podProgress(pod: Pod, now: Date): PodProgress {
  const status = pod.status ?? {};
  const container = status.containerStatuses?.find((c) => c.name === 'restore');
  const terminated = container?.state?.terminated;
  if (status.phase === 'Succeeded') return { state: 'succeeded' };
  if (status.phase === 'Failed') {
    const outcome = parseRestoreOutcome(terminated?.message);
    if (outcome && !outcome.ok) return { state: 'failed', message: outcome.error };
    const detail = terminated
      ? `exit code ${terminated.exitCode}${terminated.reason ? ` (${terminated.reason})` : ''}${terminated.message ? `: ${oneLine(terminated.message)}` : ''}`
      : [status.reason, status.message].filter(Boolean).join(': ') || 'no reason given';
    return { state: 'failed', message: `restore pod failed: ${detail}` };
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
