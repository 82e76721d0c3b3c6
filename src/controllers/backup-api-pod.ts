/**
 * @module The pod of a MetadataRestore with `spec.objects`: chosen objects of a backup re-created in the live cluster,
 * as `kubedr restore-objects` does, by the cluster's own API machinery. The backup is served read-only by a
 * kube-apiserver of the cluster's version, from the cluster's own image (kubedr's image holds no kube-apiserver, and
 * that image has no shell to copy one out), so the pod has three parts sharing one emptyDir (engine/browse/prepared.ts):
 * - init container `prepare` (kubedr's image): downloads the backup, builds the etcd data directory, the API server's
 *   keys, the read-only user's token and the EncryptionConfiguration that opens the backup's Secrets;
 * - container `kube-apiserver` (the cluster's image): serves it on loopback inside the pod, flags fixed in advance;
 * - container `restore-objects` (kubedr's image): starts etcd on the data directory, waits for the API server, and
 *   re-creates the chosen objects in the live cluster with the pod's service account; writes its summary as its
 *   termination message. The controller ends the pod once this container has ended (the API server never would).
 * The live cluster is written by the service account the controller was given (an opt-in ClusterRole in the chart):
 * the token is mounted into the pod, the repository credentials only as secretKeyRef variables, as in restore pods.
 */
import type { MetadataRestore, Pod } from '../api/types.ts';
import { PREPARED_PORTS, preparedApiserverArgs } from '../engine/browse/prepared.ts';
import { InputError } from './inputs.ts';
import { OBJECTS_CONTAINER, PREPARE_CONTAINER, SERVE_CONTAINER, backupSourceArgs, restorePodMetadata } from './restore-pod.ts';
import { CONTAINER_SECURITY, type ToolPodInput, repositoryEnv, repositoryVolume, repositoryVolumeMount, toolPodSpec } from './tool-pod.ts';

const BROWSE_DIR = '/browse';
const TERMINATION_LOG = '/dev/termination-log';
const MI = 1024 * 1024;

export interface ObjectRestorePodInput extends BackupApiPodInput {
  serviceAccount: string;
}

/**
 * The Kubernetes version of a kube-apiserver image, from its tag (registry.k8s.io/kube-apiserver:v1.20.2, as kubeadm
 * names it); an image named otherwise cannot be checked against the backup, and is refused in words.
 */
export function imageVersion(image: string): string {
  const m = /:(v\d+\.\d+\.\d+[^:@/]*)(@sha256:[0-9a-f]+)?$/.exec(image);
  if (!m) throw new InputError('NoApiserverImage', `cannot tell the Kubernetes version of kube-apiserver image "${image}" from its tag (e.g. :v1.20.2)`);
  return m[1]!;
}

/** `kubedr restore-objects`'s choice, from spec.objects. */
export function objectsArgs(objects: NonNullable<MetadataRestore['spec']['objects']>): string[] {
  return [
    ...(objects.namespace ? ['-n', objects.namespace] : []),
    ...(objects.crd ? ['--crd', objects.crd] : []),
    ...(objects.overwrite ? ['--overwrite'] : []),
    ...(objects.dryRun ? ['--dry-run'] : []),
    ...(objects.names ?? []),
  ];
}

/** What spec.objects must say for `kubedr restore-objects` to accept it; undefined when it does. */
export function objectsProblem(objects: NonNullable<MetadataRestore['spec']['objects']>): string | undefined {
  if (!objects.namespace && !objects.crd) return 'spec.objects names nothing to restore: give namespace (with names, or all of it) or crd';
  if (objects.names?.length && !objects.namespace) return 'spec.objects.names are objects of a namespace: give spec.objects.namespace too';
  const bad = objects.names?.find((n) => !/^[^/\s]+\/[^/\s]+$/.test(n));
  if (bad) return `spec.objects.names: "${bad}" is not KIND/NAME (e.g. deployment/web)`;
  return undefined;
}

/** Where a browse pod mounts the token Secret, and the port its kube-apiserver serves on (loopback of the pod). */
const TOKEN_DIR = '/var/run/kubedr/browse';
export const BROWSE_PORT = PREPARED_PORTS.apiserver;

/** What a pod serving a backup needs beyond any tool pod: the cluster's kube-apiserver image and its version. */
export interface BackupApiPodInput extends ToolPodInput {
  restore: MetadataRestore;
  apiserverImage: string;
  apiserverVersion: string;
  cluster?: string;
}

type Container = NonNullable<Pod['spec']>['containers'][number];
type Volume = NonNullable<NonNullable<Pod['spec']>['volumes']>[number];

/**
 * The pod that serves a backup: `prepare`, the kube-apiserver, and `last` (restore-objects, or serve), with `extra`
 * pod fields, volumes and prepare flags.
 */
function backupApiPod(input: BackupApiPodInput, last: (mounts: { name: string; mountPath: string }[], memory: string) => Container,
  extra: { spec?: Partial<NonNullable<Pod['spec']>>; volumes?: Volume[]; prepareArgs?: string[]; prepareMounts?: Container['volumeMounts'];
    apiserverProbe?: Container['readinessProbe'] } = {}): Pod {
  const { restore, record, location, image } = input;
  const creds = location.spec.credentials;
  const source = backupSourceArgs(input, (id) => ['--from', id]);
  // The snapshot, and the etcd data directory built from it: each as large as the snapshot.
  const mi = Math.ceil((record.status?.etcdSnapshotSize ?? 0) / MI);
  const mounts = [{ name: 'browse', mountPath: BROWSE_DIR }, { name: 'tmp', mountPath: '/tmp' }];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: restorePodMetadata(restore),
    spec: {
      ...toolPodSpec(input),
      ...extra.spec,
      initContainers: [{
        name: PREPARE_CONTAINER,
        image,
        args: ['browse', '--prepare', '--dir', BROWSE_DIR, ...source, '--apiserver-version', input.apiserverVersion,
          '--url', location.spec.url, '--bucket', location.spec.bucketName, ...(extra.prepareArgs ?? [])],
        env: repositoryEnv(creds),
        resources: { requests: { cpu: '100m', memory: '256Mi' } },
        securityContext: CONTAINER_SECURITY,
        terminationMessagePolicy: 'FallbackToLogsOnError',
        volumeMounts: [...mounts, repositoryVolumeMount, ...(extra.prepareMounts ?? [])],
      }],
      containers: [{
        name: 'kube-apiserver',
        image: input.apiserverImage,
        command: ['kube-apiserver'],
        args: preparedApiserverArgs(BROWSE_DIR),
        resources: { requests: { cpu: '100m', memory: '256Mi' } },
        securityContext: CONTAINER_SECURITY,
        volumeMounts: mounts,
      },
      // etcd on the backup maps its whole database.
      last(mounts, `${Math.max(256, mi + 128)}Mi`)],
      volumes: [
        { name: 'browse', emptyDir: { sizeLimit: `${Math.max(256, mi * 2 + 256)}Mi` } },
        { name: 'tmp', emptyDir: {} },
        repositoryVolume(creds),
        ...(extra.volumes ?? []),
      ],
    },
  };
}

export function objectRestorePod(input: ObjectRestorePodInput): Pod {
  const objects = input.restore.spec.objects!;
  return backupApiPod(input, (mounts, memory) => ({
    name: OBJECTS_CONTAINER,
    image: input.image,
    args: ['restore-objects', '--prepared', BROWSE_DIR, ...objectsArgs(objects), '--termination-log', TERMINATION_LOG],
    env: [{ name: 'TMPDIR', value: '/tmp' }],
    resources: { requests: { cpu: '100m', memory } },
    securityContext: CONTAINER_SECURITY,
    terminationMessagePath: TERMINATION_LOG,
    terminationMessagePolicy: 'FallbackToLogsOnError',
    volumeMounts: mounts,
  }), {
    // restore-objects writes to the live cluster with it; the other two containers do not talk to the cluster.
    spec: { automountServiceAccountToken: true, serviceAccountName: input.serviceAccount },
  });
}

/**
 * A browse pod: the backup served read-only until its time limit (activeDeadlineSeconds) or its deletion. Its one
 * user's token comes from the Secret spec.browse.tokenSecret names (made by whoever asked for the browse, and theirs
 * to share); the pod gets no service account token. Ready once the kube-apiserver answers the token.
 */
export function browsePod(input: BackupApiPodInput & { timeLimitSeconds: number }): Pod {
  const browse = input.restore.spec.browse!;
  return backupApiPod(input, (mounts, memory) => ({
    name: SERVE_CONTAINER,
    image: input.image,
    args: ['browse', '--serve-prepared', '--dir', BROWSE_DIR],
    env: [{ name: 'TMPDIR', value: '/tmp' }],
    resources: { requests: { cpu: '100m', memory } },
    securityContext: CONTAINER_SECURITY,
    terminationMessagePolicy: 'FallbackToLogsOnError',
    volumeMounts: mounts,
    // The API server listens on the pod's loopback, where the kubelet's TCP and HTTP probes do not reach; the serve
    // container says when it answers.
    readinessProbe: { exec: { command: ['kubedr', 'browse', '--ready', '--dir', BROWSE_DIR] }, periodSeconds: 3, failureThreshold: 2 },
  }), {
    spec: { activeDeadlineSeconds: input.timeLimitSeconds },
    prepareArgs: ['--token-file', `${TOKEN_DIR}/token`],
    prepareMounts: [{ name: 'browse-token', mountPath: TOKEN_DIR, readOnly: true }],
    volumes: [{ name: 'browse-token', secret: { secretName: browse.tokenSecret, items: [{ key: 'token', path: 'token' }], defaultMode: 0o400 } }],
  });
}
