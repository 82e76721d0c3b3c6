import { describe, expect, test } from 'bun:test';
import type { BackupLocation, ContainerStatus, MetadataBackupRecord, MetadataRestore, Pod, Toleration } from '../../src/api/types.ts';
import { type RestorePodInput, podProgress, restorePod, restoreTimeoutSeconds } from '../../src/controllers/restore-pod.ts';

const restore: MetadataRestore = {
  metadata: { name: 'r1', namespace: 'kubedr-system', uid: 'uid-1', generation: 2 },
  spec: { mbrName: 'mbr-0123abcd', pvcName: 'claim' },
};
const record: MetadataBackupRecord = {
  metadata: { name: 'mbr-0123abcd', namespace: 'kubedr-system' },
  spec: { snapshotId: '0123abcd', policy: 'daily', backuploc: 'loc' },
  status: { etcdSnapshotSha256: 'ab'.repeat(32) },
};
const location: BackupLocation = {
  metadata: { name: 'loc', namespace: 'kubedr-system' },
  spec: { url: 'https://s3.example.com', bucketName: 'backups', credentials: 's3-creds' },
};

describe('restorePod', () => {
  const pod = restorePod({ restore, record, location, image: 'registry.example.com/kubedr:1.0.0', deadlineSeconds: 7200 });
  const spec = pod.spec as Record<string, any>;
  const c = spec.containers[0];

  test('runs kubedr restore of the record\'s snapshot into the claim, checked against the record\'s hash', () => {
    expect(c.args).toEqual(['restore', '0123abcd', '--expect-sha256', 'ab'.repeat(32), '--target', '/restore', '--force', '--url', 'https://s3.example.com',
      '--bucket', 'backups', '--termination-log', '/dev/termination-log', '--timeout', '7140s']);
    expect(spec.volumes[0]).toEqual({ name: 'target', persistentVolumeClaim: { claimName: 'claim' } });
    expect(spec.activeDeadlineSeconds).toBe(7200);
  });
  test('is owned by its restore and labelled with its generation', () => {
    expect(pod.metadata.name).toBe('kubedr-restore-r1');
    expect(pod.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'MetadataRestore', name: 'r1', uid: 'uid-1', controller: true });
    expect(pod.metadata.annotations?.['kubedr.catalogicsoftware.com/restore-generation']).toBe('2');
  });
  test('takes credentials only by reference to the location\'s Secret', () => {
    const refs = c.env.filter((e: any) => e.valueFrom).map((e: any) => [e.name, e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key]);
    expect(refs).toEqual([['AWS_ACCESS_KEY_ID', 's3-creds', 'access_key'], ['AWS_SECRET_ACCESS_KEY', 's3-creds', 'secret_key'],
      ['KUBEDR_S3_CA_CERT', 's3-creds', 'ca.crt']]);
  });
  test('the repository password is a read-only file of the Secret\'s key, never in the environment', () => {
    expect(c.env.find((e: any) => e.name === 'RESTIC_PASSWORD')).toBeUndefined();
    expect(c.env.find((e: any) => e.name === 'RESTIC_PASSWORD_FILE')?.value).toBe('/var/run/kubedr/repository/restic_repo_password');
    expect(c.volumeMounts).toContainEqual({ name: 'repository-password', mountPath: '/var/run/kubedr/repository', readOnly: true });
    expect((pod.spec as any).volumes).toContainEqual({ name: 'repository-password',
      secret: { secretName: 's3-creds', items: [{ key: 'restic_repo_password', path: 'restic_repo_password' }], defaultMode: 0o400 } });
  });
  test('with spec.at: the record\'s policy to that point, of this cluster and install, with no single snapshot\'s hash to demand', () => {
    const p = restorePod({ restore: { ...restore, spec: { ...restore.spec, at: '2026-12-04T14:03:27Z' } }, record, location, image: 'i',
      deadlineSeconds: 7200, cluster: 'uid-c/kubedr-system' });
    expect((p.spec as any).containers[0].args).toEqual(['restore', '--at', '2026-12-04T14:03:27Z', '--policy', 'daily', '--cluster', 'uid-c/kubedr-system',
      '--target', '/restore', '--force', '--url', 'https://s3.example.com', '--bucket', 'backups', '--termination-log', '/dev/termination-log', '--timeout', '7140s']);
  });
  test('without a recorded hash, no hash is demanded', () => {
    const p = restorePod({ restore, record: { ...record, status: {} }, location, image: 'i', deadlineSeconds: 60 });
    expect((p.spec as any).containers[0].args).not.toContain('--expect-sha256');
  });
});

describe('restorePod placement and user', () => {
  const specOf = (input: Partial<RestorePodInput>) =>
    restorePod({ restore, record, location, image: 'i', deadlineSeconds: 60, ...input }).spec as Record<string, any>;
  const hardened = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } };

  test('by default it may run on any node, control-plane nodes included (kubeadm\'s taints, old and new)', () => {
    const spec = specOf({});
    expect(spec.nodeSelector).toBeUndefined();
    expect(spec.tolerations).toEqual([
      { key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' },
      { key: 'node-role.kubernetes.io/master', operator: 'Exists', effect: 'NoSchedule' },
    ]);
  });
  test('takes the configured node selector and tolerations; [] tolerates nothing', () => {
    const tolerations: Toleration[] = [{ key: 'dedicated', operator: 'Equal', value: 'restore', effect: 'NoSchedule' }];
    const spec = specOf({ nodeSelector: { 'kubernetes.io/os': 'linux', 'node-role.kubernetes.io/control-plane': '' }, tolerations });
    expect(spec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux', 'node-role.kubernetes.io/control-plane': '' });
    expect(spec.tolerations).toEqual(tolerations);
    expect(specOf({ tolerations: [] }).tolerations).toBeUndefined();
    expect(specOf({ nodeSelector: {} }).nodeSelector).toBeUndefined();
  });
  test('runs as the image\'s user 65532 with fsGroup 65532 by default', () => {
    const spec = specOf({});
    expect(spec.securityContext).toEqual({
      runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(spec.containers[0].securityContext).toEqual(hardened);
    expect(specOf({ runAsUser: 1000 }).securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000 });
  });
  test('as root (for volumes that ignore fsGroup): uid and gid 0, no fsGroup, still no capabilities and a read-only root', () => {
    const spec = specOf({ runAsUser: 0 });
    expect(spec.securityContext).toEqual({ runAsNonRoot: false, runAsUser: 0, runAsGroup: 0, seccompProfile: { type: 'RuntimeDefault' } });
    expect(spec.containers[0].securityContext).toEqual(hardened);
  });
});

describe('restoreTimeoutSeconds', () => {
  test('kubedr restore stops a little before the kubelet\'s deadline: a tenth early, at most a minute', () => {
    expect(restoreTimeoutSeconds(7200)).toBe(7140);
    expect(restoreTimeoutSeconds(300)).toBe(270);
    expect(restoreTimeoutSeconds(30)).toBe(27);
    expect(restoreTimeoutSeconds(1)).toBe(1);
  });
});

describe('podProgress', () => {
  const now = new Date('2026-11-25T10:00:10Z');
  const pod = (status: Pod['status']): Pod => ({ metadata: { name: 'p', creationTimestamp: '2026-11-25T10:00:00Z' }, status });
  /** A container status as the kubelet reports it (the fields it always sets), in `state`. */
  const container = (state: ContainerStatus['state']): ContainerStatus =>
    ({ name: 'restore', image: 'kubedr:test', imageID: '', ready: false, restartCount: 0, state });
  const terminated = (exitCode: number, message?: string) =>
    [container({ terminated: { exitCode, reason: exitCode ? 'Error' : 'Completed', message } })];

  test('succeeded and failed pods', () => {
    expect(podProgress(pod({ phase: 'Succeeded', containerStatuses: terminated(0) }), now)).toEqual({ state: 'succeeded' });
    expect(podProgress(pod({ phase: 'Failed', containerStatuses: terminated(3, '{"ok":false,"error":"wrong repository password","exitCode":3}') }), now))
      .toEqual({ state: 'failed', message: 'wrong repository password' });
    expect(podProgress(pod({ phase: 'Failed', containerStatuses: terminated(137, 'killed\n  by OOM') }), now))
      .toEqual({ state: 'failed', message: 'restore pod failed: exit code 137 (Error): killed by OOM' });
    expect(podProgress(pod({ phase: 'Failed', reason: 'DeadlineExceeded', message: 'Pod was active on the node longer than the specified deadline' }), now))
      .toEqual({ state: 'failed', message: 'restore pod failed: DeadlineExceeded: Pod was active on the node longer than the specified deadline' });
  });
  test('a pod not started yet says what keeps it', () => {
    expect(podProgress(pod({ phase: 'Pending' }), now)).toEqual({ state: 'starting', sinceMs: 10_000, problem: 'not scheduled to a node' });
    expect(podProgress(pod({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available' }] }), now))
      .toEqual({ state: 'starting', sinceMs: 10_000, problem: 'Unschedulable: 0/3 nodes are available' });
    expect(podProgress(pod({
      phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }],
      containerStatuses: [container({ waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image' } })],
    }), now)).toEqual({ state: 'starting', sinceMs: 10_000, problem: 'ImagePullBackOff: Back-off pulling image' });
    expect(podProgress(pod({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }] }), now))
      .toEqual({ state: 'starting', sinceMs: 10_000, problem: undefined });
  });
  test('a running container is running', () => {
    expect(podProgress(pod({ phase: 'Running', containerStatuses: [container({ running: {} })] }), now)).toEqual({ state: 'running' });
  });

  describe('an objects restore\'s pod: decided by its restore-objects container, not the pod (its kube-apiserver serves on)', () => {
    const objectsPod = (status: Pod['status']): Pod => ({
      metadata: { name: 'p', creationTimestamp: '2026-11-25T10:00:00Z' },
      spec: { initContainers: [{ name: 'prepare' }], containers: [{ name: 'kube-apiserver' }, { name: 'restore-objects' }] }, status,
    });
    const named = (name: string, state: ContainerStatus['state']): ContainerStatus => ({ ...container(state), name });
    const apiserverRuns = named('kube-apiserver', { running: {} });

    test('restore-objects ended: succeeded with its summary, or failed with its words, while the pod still runs', () => {
      expect(podProgress(objectsPod({ phase: 'Running', containerStatuses: [apiserverRuns,
        named('restore-objects', { terminated: { exitCode: 0, message: '57 created, 2 exists' } })] }), now))
        .toEqual({ state: 'succeeded', message: '57 created, 2 exists' });
      expect(podProgress(objectsPod({ phase: 'Running', containerStatuses: [apiserverRuns,
        named('restore-objects', { terminated: { exitCode: 2, reason: 'Error', message: 'the backup holds nothing of namespace x' } })] }), now))
        .toEqual({ state: 'failed', message: 'restore-objects failed: exit code 2 (Error): the backup holds nothing of namespace x' });
    });
    test('the backup could not be prepared: failed with the init container\'s words', () => {
      expect(podProgress(objectsPod({ phase: 'Failed', initContainerStatuses: [named('prepare', { terminated: { exitCode: 3, message: 'wrong repository password' } })] }), now))
        .toEqual({ state: 'failed', message: 'preparing the backup failed: exit code 3: wrong repository password' });
    });
    test('downloading the backup (init container running) is running; an image that cannot be pulled keeps it starting', () => {
      expect(podProgress(objectsPod({ phase: 'Pending', initContainerStatuses: [named('prepare', { running: {} })] }), now)).toEqual({ state: 'running' });
      expect(podProgress(objectsPod({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }],
        initContainerStatuses: [named('prepare', { waiting: { reason: 'ErrImagePull', message: 'not found' } })] }), now))
        .toEqual({ state: 'starting', sinceMs: 10_000, problem: 'ErrImagePull: not found' });
    });
  });

  describe('a browse pod: serving until its deadline is what it is for', () => {
    const browsePod = (status: Pod['status']): Pod => ({
      metadata: { name: 'p', creationTimestamp: '2026-11-25T10:00:00Z' },
      spec: { initContainers: [{ name: 'prepare' }], containers: [{ name: 'kube-apiserver' }, { name: 'serve' }] }, status,
    });
    const serve = (ready: boolean, state: ContainerStatus['state']): ContainerStatus => ({ ...container(state), name: 'serve', ready });
    test('running, ready once its probe passes', () => {
      expect(podProgress(browsePod({ phase: 'Running', containerStatuses: [serve(false, { running: {} })] }), now)).toEqual({ state: 'running', ready: false });
      expect(podProgress(browsePod({ phase: 'Running', containerStatuses: [serve(true, { running: {} })] }), now)).toEqual({ state: 'running', ready: true });
    });
    test('its deadline reached: succeeded; its serve container ended otherwise: failed', () => {
      expect(podProgress(browsePod({ phase: 'Failed', reason: 'DeadlineExceeded', containerStatuses: [serve(false, { terminated: { exitCode: 137 } })] }), now))
        .toEqual({ state: 'succeeded', message: 'served until its time limit' });
      expect(podProgress(browsePod({ phase: 'Failed', reason: 'DeadlineExceeded', initContainerStatuses: [{ ...container({ terminated: { exitCode: 137 } }), name: 'prepare' }] }), now))
        .toEqual({ state: 'failed', message: 'the browse reached its time limit before it served: the backup was still being prepared' });
      expect(podProgress(browsePod({ phase: 'Running', containerStatuses: [serve(false, { terminated: { exitCode: 1, reason: 'Error', message: 'etcd did not start' } })] }), now))
        .toEqual({ state: 'failed', message: 'the browse stopped: exit code 1 (Error): etcd did not start' });
    });
  });
});
