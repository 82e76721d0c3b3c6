/**
 * @module What the pods that run `kubedr` from the controller's image (restore pods, verification pods) share: the
 * repository credentials only by reference to the location's Secret (the pod spec holds no secret value), the user,
 * and a locked-down container.
 */
import { LOCATION_SECRET_KEYS as K, RESTORE_UID } from '../api/group.ts';
import { CONTROL_PLANE_TOLERATIONS } from '../api/placement.ts';
import type { BackupLocation, MetadataBackupRecord, Pod, Toleration } from '../api/types.ts';

/** What such a pod is made from: the backup, its location, and where and how the pod runs. */
export interface ToolPodInput {
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

/** Where such a pod finds the repository password: a file of the Secret, mounted read-only (repositoryVolume). */
export const PASSWORD_DIR = '/var/run/kubedr/repository';

/**
 * The environment of `kubedr restore|verify`: the S3 keys and CA from the Secret `creds`, and where the password file
 * is. The password itself is not in the environment, where every process of the container could read it in
 * /proc/<pid>/environ and would inherit it; `kubedr` reads the file and hands it to restic in a file of its own.
 */
export function repositoryEnv(creds: string) {
  return [
    secretEnv('AWS_ACCESS_KEY_ID', creds, K.accessKey),
    secretEnv('AWS_SECRET_ACCESS_KEY', creds, K.secretKey),
    { name: 'RESTIC_PASSWORD_FILE', value: `${PASSWORD_DIR}/${K.repoPassword}` },
    secretEnv('KUBEDR_S3_CA_CERT', creds, K.caCert, true),
    { name: 'TMPDIR', value: '/tmp' },
  ];
}

/**
 * The Secret's password key alone, as a file readable by the pod's user only: 0400 (the kubelet adds group read for
 * the fsGroup of a non-root pod, which is the pod's own group).
 */
export function repositoryVolume(creds: string) {
  return { name: 'repository-password', secret: { secretName: creds, items: [{ key: K.repoPassword, path: K.repoPassword }], defaultMode: 0o400 } };
}

export const repositoryVolumeMount = { name: 'repository-password', mountPath: PASSWORD_DIR, readOnly: true };

/** No privilege, a read-only root filesystem (scratch space is an emptyDir at /tmp), no capability. */
export const CONTAINER_SECURITY = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } };

/**
 * The pod's user. By default the image's non-root user, with fsGroup so that the kubelet makes the claim writable for
 * it. But the kubelet applies fsGroup only to volumes that support ownership management: hostPath and local volumes
 * keep their owner and mode, and a root-owned 0755 directory there is writable only by uid 0 (every capability is
 * dropped either way, so root writes through owner permission, not CAP_DAC_OVERRIDE). Root needs no fsGroup, and
 * without one the kubelet leaves the ownership of the claim's files alone.
 */
export function podSecurityContext(uid: number) {
  const seccompProfile = { type: 'RuntimeDefault' };
  if (uid === 0) return { runAsNonRoot: false, runAsUser: 0, runAsGroup: 0, seccompProfile };
  return { runAsNonRoot: true, runAsUser: uid, runAsGroup: uid, fsGroup: uid, seccompProfile };
}

/**
 * The pod-level part of such a pod's spec: run once, within its deadline, with no API token (it talks to S3 only), on
 * the nodes asked for. The control-plane taints are tolerated by default: a claim's volume may be reachable only from a
 * control-plane node (a local volume there, a one-node cluster), which kubeadm taints; without tolerations the pod
 * would stay Unschedulable until the start timeout.
 */
export function toolPodSpec(input: Pick<ToolPodInput, 'deadlineSeconds' | 'nodeSelector' | 'tolerations' | 'runAsUser'>) {
  const nodeSelector = input.nodeSelector ?? {};
  const tolerations = input.tolerations ?? CONTROL_PLANE_TOLERATIONS;
  return {
    restartPolicy: 'Never',
    activeDeadlineSeconds: input.deadlineSeconds,
    automountServiceAccountToken: false,
    ...(Object.keys(nodeSelector).length > 0 ? { nodeSelector: { ...nodeSelector } } : {}),
    ...(tolerations.length > 0 ? { tolerations: tolerations.map((t) => ({ ...t })) } : {}),
    securityContext: podSecurityContext(input.runAsUser ?? RESTORE_UID),
  };
}

/** A pod's words, on one line and short enough for a status message. */
export const oneLine = (s: string): string => s.replace(/\s+/g, ' ').trim().slice(0, 500);

/** Why a pod ended as it did, in one line: its container's exit (code, reason, message), else the pod's own reason. */
export function podEndDetail(pod: Pod, container: string): string {
  const status = pod.status ?? {};
  const terminated = status.containerStatuses?.find((c) => c.name === container)?.state?.terminated;
  return terminated
    ? `exit code ${terminated.exitCode}${terminated.reason ? ` (${terminated.reason})` : ''}${terminated.message ? `: ${oneLine(terminated.message)}` : ''}`
    : [status.reason, status.message].filter(Boolean).join(': ') || 'no reason given';
}
