/**
 * The MetadataRestore reconciler's decisions when it creates the restore pod, against fakes: caches filled from a
 * fixed list, an API client that records writes and answers create as told, restic answering `snapshots`. What the
 * real API server and kubelet do is in test/e2e/restore.test.ts.
 */
import { afterEach, describe, expect, test } from 'bun:test';
import type { ResourceRef } from '../../src/api/group.ts';
import type { BackupLocation, KubeObject, MetadataBackupRecord, MetadataRestore, PersistentVolumeClaim, Pod, Secret } from '../../src/api/types.ts';
import { RestoreReconciler } from '../../src/controllers/restore.ts';
import { EngineError } from '../../src/engine/errors.ts';
import { type Repository, Restic, type RunOptions, type RunResult } from '../../src/engine/restic.ts';
import { ApiError, ConnectionError } from '../../src/kube/errors.ts';
import { createMetrics } from '../../src/metrics/registry.ts';
import type { EventRecorder, EventType } from '../../src/runtime/recorder.ts';
import { createLogger } from '../../src/util/log.ts';
import { REDACTED, clearSecrets } from '../../src/util/redact.ts';
import { fakeInformer } from '../support/fakes.ts';

const log = createLogger({ level: 'error' });
const ns = 'kubedr-system';
const b64 = (s: string) => Buffer.from(s).toString('base64');
const PASSWORD = 'repo-password-123';

const restore: MetadataRestore = {
  apiVersion: 'kubedr.catalogicsoftware.com/v1alpha1', kind: 'MetadataRestore',
  metadata: { name: 'r1', namespace: ns, uid: 'uid-r1', generation: 1 },
  spec: { mbrName: 'mbr-0123abcd', pvcName: 'claim' },
};
const record: MetadataBackupRecord = {
  metadata: { name: 'mbr-0123abcd', namespace: ns }, spec: { snapshotId: '0123abcd', policy: 'daily', backuploc: 'loc' },
};
const location: BackupLocation = {
  metadata: { name: 'loc', namespace: ns }, spec: { url: 'https://s3.example.com', bucketName: 'backups', credentials: 's3-creds' },
  status: { initStatus: 'Completed' },
};
const secret: Secret = {
  metadata: { name: 's3-creds', namespace: ns },
  data: { access_key: b64('access-key-1'), secret_key: b64('secret-key-1'), restic_repo_password: b64(PASSWORD) },
};
const claim: PersistentVolumeClaim = { metadata: { name: 'claim', namespace: ns }, status: { phase: 'Bound' } };

const signal = new AbortController().signal;
afterEach(clearSecrets);

/** The API as the reconciler uses it: objects to get, a create that answers as told, and the writes made. */
class FakeApi {
  readonly objects = new Map<string, KubeObject>([
    [`persistentvolumeclaims/${ns}/claim`, claim], [`metadatarestores/${ns}/r1`, restore],
    [`metadatabackuprecords/${ns}/mbr-0123abcd`, record], [`backuplocations/${ns}/loc`, location],
  ]);
  readonly created: KubeObject[] = [];
  readonly statuses: Record<string, unknown>[] = [];
  createError: unknown;
  /** Answers to `get` of these keys (`plural/namespace/name`) instead of the object. */
  readonly getErrors = new Map<string, unknown>();

  async get<T extends KubeObject>(ref: ResourceRef, namespace: string, name: string): Promise<T> {
    const err = this.getErrors.get(`${ref.plural}/${namespace}/${name}`);
    if (err) throw err;
    const obj = this.objects.get(`${ref.plural}/${namespace}/${name}`);
    if (!obj) throw new ApiError(404, 'NotFound', `${ref.plural} "${name}" not found`, 'GET', '/x');
    return obj as T;
  }

  async list<T extends KubeObject>(ref: ResourceRef, namespace: string): Promise<{ items: T[]; resourceVersion: string }> {
    const items = [...this.objects].filter(([k]) => k.startsWith(`${ref.plural}/${namespace}/`)).map(([, o]) => o as T);
    return { items, resourceVersion: '1' };
  }

  async create<T extends KubeObject>(_ref: ResourceRef, _namespace: string, obj: T): Promise<T> {
    if (this.createError) throw this.createError;
    this.created.push(obj);
    return obj;
  }

  async delete(): Promise<void> {}

  async patchStatus<T extends KubeObject>(ref: ResourceRef, namespace: string, name: string, status: object): Promise<T> {
    this.statuses.push({ ...status });
    return this.get<T>(ref, namespace, name);
  }
}

/** restic that knows one snapshot, the record's; `failWith` makes its next run fail. */
class OneSnapshotRestic extends Restic {
  failWith?: Error;
  calls: string[][] = [];
  override async run(_repo: Repository, args: string[], _run?: RunOptions): Promise<RunResult> {
    this.calls.push(args);
    if (this.failWith) throw this.failWith;
    if (args[0] !== 'snapshots') throw new Error(`unexpected restic ${args.join(' ')}`);
    return { stdout: JSON.stringify([{ id: `0123abcd${'0'.repeat(56)}`, short_id: '0123abcd', time: '2026-11-30T10:00:00Z' }]), stderr: '' };
  }
}

/** `cachedRecords`: what the records cache holds (the API always has `record`). */
function setup(createError?: unknown, cachedRecords: MetadataBackupRecord[] = [record],
  opts: { restore?: MetadataRestore; deps?: Partial<ConstructorParameters<typeof RestoreReconciler>[0]> } = {}) {
  const theRestore = opts.restore ?? restore;
  const api = new FakeApi();
  api.objects.set(`metadatarestores/${ns}/r1`, theRestore);
  api.createError = createError;
  const events: [EventType, string, string][] = [];
  const recorder: EventRecorder = { event: async (_obj, type, reason, message) => void events.push([type, reason, message]) };
  const metrics = createMetrics();
  const restic = new OneSnapshotRestic();
  const reconciler = new RestoreReconciler({
    client: api, restores: fakeInformer([theRestore]), records: fakeInformer(cachedRecords),
    secrets: fakeInformer([secret]), pods: fakeInformer<Pod>([]),
    recorder, metrics, restic, log, image: 'kubedr:test', startTimeoutMs: 300_000, runTimeoutMs: 7_200_000, ...opts.deps,
  });
  const count = async () => ({
    restores: (await metrics.numRestores.get()).values[0]?.value ?? 0,
    failed: (await metrics.numFailedRestores.get()).values[0]?.value ?? 0,
  });
  return { api, events, reconciler, count, restic, run: () => reconciler.reconcile(`${ns}/r1`, signal) };
}

const quota = new ApiError(403, 'Forbidden',
  'pods "kubedr-restore-r1" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=10, limited: pods=10', 'POST', `/api/v1/namespaces/${ns}/pods`);
const webhook = new ApiError(400, 'BadRequest', 'admission webhook "policy.example.com" denied the request: images must come from registry.example.com',
  'POST', `/api/v1/namespaces/${ns}/pods`);
const ownerRefs = new ApiError(403, 'Forbidden', 'pods "kubedr-restore-r1" is forbidden: cannot set blockOwnerDeletion if an ownerReference ' +
  'refers to a resource you can\'t set finalizers on: , <nil>', 'POST', `/api/v1/namespaces/${ns}/pods`);
const invalid = new ApiError(422, 'Invalid', 'Pod "kubedr-restore-r1" is invalid: spec.tolerations[0].key: Invalid value', 'POST', '/x');

describe('a restore pod the API server refuses ends the restore Failed, with the API\'s reason', () => {
  test.each([
    ['a ResourceQuota', quota, '403 Forbidden', 'fix the cause, then re-create the MetadataRestore'],
    ['an admission webhook', webhook, '400 BadRequest', 'fix the cause, then re-create the MetadataRestore'],
    ['OwnerReferencesPermissionEnforcement', ownerRefs, '403 Forbidden',
      'the controller\'s Role needs "update" on metadatarestores/finalizers (the Helm chart\'s Role grants it)'],
    ['validation', invalid, '422 Invalid', 'fix the cause, then re-create the MetadataRestore'],
  ])('%s', async (_title, err, status, fix) => {
    const t = setup(err);
    expect(await t.run()).toBeUndefined();
    const message = `restore pod kubedr-restore-r1 was refused by the API server (${status}): ${err.detail}; ${fix}`;
    expect(t.api.statuses).toEqual([expect.objectContaining({ restoreStatus: 'Failed', restoreErrorMessage: message, observedGeneration: 1 })]);
    expect(t.events).toEqual([['Warning', 'RestoreFailed', message]]);
    expect(await t.count()).toEqual({ restores: 1, failed: 1 });
    // Conditions as on a Job, so `kubectl wait --for=condition=Failed` works.
    const conditions = (t.api.statuses[0]!.conditions as { type: string; status: string }[]).map((c) => [c.type, c.status]);
    expect(conditions).toEqual([['Complete', 'False'], ['Failed', 'True']]);
    // Not the raw request line a log shows.
    expect(message).not.toContain('POST /api');
  });
});

describe('anything else is retried', () => {
  test.each([
    ['a server error', new ApiError(500, 'InternalError', 'etcdserver: request timed out', 'POST', '/x')],
    ['too many requests', new ApiError(429, 'TooManyRequests', 'storage is (re)initializing', 'POST', '/x')],
    ['a lost connection', new ConnectionError('cannot reach the Kubernetes API at https://10.0.0.1:6443: ECONNRESET')],
  ])('%s: thrown for the work queue\'s backoff, nothing reported', async (_title, err) => {
    const t = setup(err);
    await expect(t.run()).rejects.toBe(err);
    expect(t.api.statuses).toEqual([]);
    expect(t.events).toEqual([]);
    expect(await t.count()).toEqual({ restores: 0, failed: 0 });
  });

  test('a pod created already (an earlier attempt whose status write failed) is followed as usual', async () => {
    const t = setup(new ApiError(409, 'AlreadyExists', 'pods "kubedr-restore-r1" already exists', 'POST', '/x'));
    expect(await t.run()).toEqual({ requeueAfter: 300_000 });
    expect(t.api.statuses).toEqual([{ restoreStatus: 'Running', restoreErrorMessage: '', observedGeneration: 1 }]);
    expect(t.events).toEqual([]);
  });
});

test('a created pod makes the restore Running', async () => {
  const t = setup();
  expect(await t.run()).toEqual({ requeueAfter: 300_000 });
  expect(t.api.created.map((p) => p.metadata.name)).toEqual(['kubedr-restore-r1']);
  expect(t.api.statuses).toEqual([{ restoreStatus: 'Running', restoreErrorMessage: '', observedGeneration: 1 }]);
});

test('status messages pass the same redactor as events and logs', async () => {
  // Reading the location's Secret registers its values; a webhook that echoes one must not put it into status.
  const echo = new ApiError(400, 'BadRequest', `admission webhook "x" denied the request: env RESTIC_PASSWORD=${PASSWORD} is not allowed`, 'POST', '/x');
  const t = setup(echo);
  await t.run();
  const message = String(t.api.statuses[0]?.restoreErrorMessage);
  expect(message).toContain(`RESTIC_PASSWORD=${REDACTED}`);
  expect(message).not.toContain(PASSWORD);
});

describe('the record and its location are read from the API, not the caches', () => {
  test('a record created a moment before the restore, not yet in the cache, is restored', async () => {
    const t = setup(undefined, []);
    expect(await t.run()).toEqual({ requeueAfter: 300_000 });
    expect(t.api.created.map((p) => p.metadata.name)).toEqual(['kubedr-restore-r1']);
  });

  test('a record the API does not have either ends the restore Failed, saying so', async () => {
    const t = setup();
    t.api.objects.delete(`metadatabackuprecords/${ns}/mbr-0123abcd`);
    await t.run();
    expect(t.api.created).toEqual([]);
    expect(t.events).toEqual([['Warning', 'RestoreFailed', 'MetadataBackupRecord "mbr-0123abcd" not found']]);
  });

  test('a location the API says is not ready ends the restore Failed with its reason', async () => {
    const t = setup();
    const failed: BackupLocation = { ...location, status: { initStatus: 'Failed', initErrorMessage: 'credentials Secret "s3-creds" not found' } };
    t.api.objects.set(`backuplocations/${ns}/loc`, failed);
    await t.run();
    expect(t.events).toEqual([['Warning', 'RestoreFailed', 'BackupLocation "loc" is not ready: credentials Secret "s3-creds" not found']]);
  });

  test.each([
    ['the API server failing', new ApiError(503, 'ServiceUnavailable', 'etcdserver: leader changed', 'GET', '/x')],
    ['a lost connection', new ConnectionError('cannot reach the Kubernetes API at https://10.0.0.1:6443: ECONNRESET')],
  ])('%s while reading them is retried with backoff, not the end of the restore', async (_title, err) => {
    const t = setup();
    t.api.getErrors.set(`metadatabackuprecords/${ns}/mbr-0123abcd`, err);
    await expect(t.run()).rejects.toBe(err);
    expect(t.api.statuses).toEqual([]);
    expect(t.events).toEqual([]);
    t.api.getErrors.clear();
    expect(await t.run()).toEqual({ requeueAfter: 300_000 });
  });

  test.each([
    ['S3 unreachable', new EngineError('Unreachable', 'S3 endpoint unreachable: https://10.0.0.9:9000: connect ECONNREFUSED')],
    ['a prune holding the repository', new EngineError('Locked', 'repository is locked by PID 9 on cp-1 since 2026-12-04 18:00:00 (exclusive)')],
  ])('the repository away for now (%s) while looking for the snapshot is retried, not the end of the restore', async (_title, err) => {
    const t = setup();
    t.restic.failWith = err;
    await expect(t.run()).rejects.toBe(err);
    expect(t.api.statuses).toEqual([]);
    expect(t.restic.calls[0]).toEqual(['snapshots', '--json', '--no-lock', '0123abcd']);
    t.restic.failWith = undefined;
    expect(await t.run()).toEqual({ requeueAfter: 300_000 });
  });

  test('a read the API server refuses (RBAC) ends the restore Failed with its reason', async () => {
    const t = setup();
    const forbidden = new ApiError(403, 'Forbidden', 'metadatabackuprecords.kubedr.catalogicsoftware.com "mbr-0123abcd" is forbidden', 'GET', '/x');
    t.api.getErrors.set(`metadatabackuprecords/${ns}/mbr-0123abcd`, forbidden);
    await t.run();
    const message = `the API server refused a read the restore needs (403 Forbidden): ${forbidden.detail}`;
    expect(t.api.statuses).toEqual([expect.objectContaining({ restoreStatus: 'Failed', restoreErrorMessage: message })]);
    expect(t.events).toEqual([['Warning', 'RestoreFailed', message]]);
  });
});

describe('spec.objects: chosen objects re-created in the live cluster by a pod that serves the backup', () => {
  const objectsRestore = (objects: NonNullable<MetadataRestore['spec']['objects']>, pvcName?: string): MetadataRestore =>
    ({ ...restore, spec: { mbrName: 'mbr-0123abcd', ...(pvcName ? { pvcName } : {}), objects } });
  const apiserverPod: Pod = {
    metadata: { name: 'kube-apiserver-cp1', namespace: 'kube-system', labels: { component: 'kube-apiserver' } },
    spec: { containers: [{ name: 'kube-apiserver', image: 'registry.k8s.io/kube-apiserver:v1.20.2' }] },
  };
  const containers = (p: KubeObject) => {
    const spec = (p as Pod).spec!;
    return [...(spec.initContainers ?? []), ...spec.containers].map((c) => [c.name, c.image, ...(c.args ?? [])]);
  };

  test('the pod: prepare from kubedr\'s image, the cluster\'s own kube-apiserver image (read from its static pod), restore-objects as the account given', async () => {
    const t = setup(undefined, [record], { restore: objectsRestore({ namespace: 'shop', names: ['cm/a'], overwrite: true }),
      deps: { objectRestoreServiceAccount: 'kubedr-object-restore' } });
    t.api.objects.set('pods/kube-system/kube-apiserver-cp1', apiserverPod);
    expect(await t.run()).toEqual({ requeueAfter: 300_000 });
    const pod = t.api.created[0] as Pod;
    expect(pod.spec?.serviceAccountName).toBe('kubedr-object-restore');
    expect(pod.spec?.automountServiceAccountToken).toBe(true);
    const [prepare, apiserver, objects] = containers(pod);
    expect(prepare!.slice(0, 4)).toEqual(['prepare', 'kubedr:test', 'browse', '--prepare']);
    expect(prepare).toEqual(expect.arrayContaining(['--from', '0123abcd', '--apiserver-version', 'v1.20.2']));
    expect(apiserver!.slice(0, 2)).toEqual(['kube-apiserver', 'registry.k8s.io/kube-apiserver:v1.20.2']);
    expect(apiserver).toEqual(expect.arrayContaining(['--bind-address=127.0.0.1', '--authorization-mode=ABAC', '--anonymous-auth=false']));
    expect(objects).toEqual(['restore-objects', 'kubedr:test', 'restore-objects', '--prepared', '/browse', '-n', 'shop', '--overwrite', 'cm/a',
      '--termination-log', '/dev/termination-log']);
    // The repository credentials by reference only, in the container that reads the repository.
    expect(JSON.stringify(pod)).not.toContain(PASSWORD);
    expect(JSON.stringify(pod)).not.toContain('secret-key-1');
  });

  test('an image given to the controller is used as it is; its version comes from its tag', async () => {
    const t = setup(undefined, [record], { restore: objectsRestore({ crd: 'widgets.example.com' }),
      deps: { objectRestoreServiceAccount: 'sa', kubeApiserverImage: 'mirror.example.com/kube-apiserver:v1.20.7' } });
    await t.run();
    const [prepare, apiserver, objects] = containers(t.api.created[0]!);
    expect(apiserver![1]).toBe('mirror.example.com/kube-apiserver:v1.20.7');
    expect(prepare).toContain('v1.20.7');
    expect(objects).toContain('--crd');
  });

  type Objects = NonNullable<MetadataRestore['spec']['objects']>;
  type Deps = Partial<ConstructorParameters<typeof RestoreReconciler>[0]>;
  test.each<[string, Objects | undefined, string | undefined, Deps, string]>([
    ['no service account given to the controller', { namespace: 'shop' }, undefined, {}, '--object-restore-service-account'],
    ['neither pvcName nor objects', undefined, undefined, { objectRestoreServiceAccount: 'sa' }, 'give one of spec.pvcName'],
    ['both pvcName and objects', { namespace: 'shop' }, 'claim', { objectRestoreServiceAccount: 'sa' }, 'give one of spec.pvcName'],
    ['objects naming nothing', {}, undefined, { objectRestoreServiceAccount: 'sa' }, 'names nothing to restore'],
    ['names without a namespace', { crd: 'w.example.com', names: ['cm/a'] }, undefined, { objectRestoreServiceAccount: 'sa' }, 'give spec.objects.namespace'],
    ['a name that is no KIND/NAME', { namespace: 'shop', names: ['web'] }, undefined, { objectRestoreServiceAccount: 'sa' }, '"web" is not KIND/NAME'],
    ['no kube-apiserver static pod and no image', { namespace: 'shop' }, undefined, { objectRestoreServiceAccount: 'sa' }, '--kube-apiserver-image'],
    ['an image whose tag is no version', { namespace: 'shop' }, undefined, { objectRestoreServiceAccount: 'sa', kubeApiserverImage: 'k/apiserver:latest' },
      'cannot tell the Kubernetes version'],
  ])('%s: Failed, saying what to do, no pod', async (_title, objects, pvcName, deps, says) => {
    const spec = objects === undefined ? { mbrName: 'mbr-0123abcd', ...(pvcName ? { pvcName } : {}) } : objectsRestore(objects, pvcName).spec;
    const t = setup(undefined, [record], { restore: { ...restore, spec }, deps });
    await t.run();
    expect(t.api.created).toEqual([]);
    expect(t.api.statuses[0]).toEqual(expect.objectContaining({ restoreStatus: 'Failed' }));
    expect(String(t.api.statuses[0]!.restoreErrorMessage)).toContain(says);
  });
});

describe('spec.browse: the backup served read-only in a pod until its time limit', () => {
  const browseRestore: MetadataRestore = { ...restore, spec: { mbrName: 'mbr-0123abcd', browse: { tokenSecret: 'tok', timeLimit: '30m' } } };
  const deps = { kubeApiserverImage: 'registry.k8s.io/kube-apiserver:v1.20.2' };

  test('the pod: the token from the Secret named, no service account token, the time limit as its deadline, a readiness probe', async () => {
    const t = setup(undefined, [record], { restore: browseRestore, deps });
    await t.run();
    const pod = t.api.created[0] as Pod;
    expect(pod.spec?.activeDeadlineSeconds).toBe(1800);
    expect(pod.spec?.automountServiceAccountToken).toBe(false);
    expect(pod.spec?.serviceAccountName).toBeUndefined();
    expect(pod.spec?.initContainers?.[0]?.args).toEqual(expect.arrayContaining(['--token-file', '/var/run/kubedr/browse/token']));
    expect(pod.spec?.volumes).toContainEqual(expect.objectContaining({ name: 'browse-token', secret: expect.objectContaining({ secretName: 'tok' }) }));
    const serve = pod.spec?.containers.find((c) => c.name === 'serve');
    expect(serve?.args).toEqual(['browse', '--serve-prepared', '--dir', '/browse']);
    expect(serve?.readinessProbe?.exec?.command).toEqual(['kubedr', 'browse', '--ready', '--dir', '/browse']);
  });

  test('a time limit that is no duration: Failed, saying so', async () => {
    const t = setup(undefined, [record], { restore: { ...browseRestore, spec: { ...browseRestore.spec, browse: { tokenSecret: 'tok', timeLimit: 'soon' } } }, deps });
    await t.run();
    expect(t.api.created).toEqual([]);
    expect(String(t.api.statuses[0]!.restoreErrorMessage)).toContain('spec.browse.timeLimit');
  });

  test('its pod ready: the restore\'s Ready condition and one BrowseReady event; its deadline: Completed, the pod deleted', async () => {
    const servingPod = (ready: boolean, status: Pod['status'] = {}): Pod => ({
      metadata: { name: 'kubedr-restore-r1', namespace: ns, annotations: { 'kubedr.catalogicsoftware.com/restore-generation': '1' }, creationTimestamp: '2026-11-30T10:00:00Z' },
      spec: { activeDeadlineSeconds: 1800, initContainers: [{ name: 'prepare' }], containers: [{ name: 'kube-apiserver' }, { name: 'serve' }] },
      status: { phase: 'Running', startTime: '2026-11-30T10:00:00Z',
        containerStatuses: [{ name: 'serve', image: 'k', imageID: '', ready, restartCount: 0, state: { running: {} } }], ...status },
    });
    const running = { ...browseRestore, status: { restoreStatus: 'Running' as const, observedGeneration: 1 } };
    const t = setup(undefined, [record], { restore: running, deps: { ...deps } });
    const reconcile = (pod: Pod) => new RestoreReconciler({
      client: t.api, restores: fakeInformer([t.api.objects.get(`metadatarestores/${ns}/r1`) as MetadataRestore]), records: fakeInformer([record]),
      secrets: fakeInformer([secret]), pods: fakeInformer<Pod>([pod]), recorder: { event: async (_o, type, reason, message) => void t.events.push([type, reason, message]) },
      metrics: createMetrics(), restic: t.restic, log, image: 'kubedr:test', startTimeoutMs: 300_000, runTimeoutMs: 7_200_000, ...deps,
    }).reconcile(`${ns}/r1`, signal);
    await reconcile(servingPod(false));
    expect(t.api.statuses).toEqual([]);
    await reconcile(servingPod(true));
    expect(t.api.statuses).toEqual([{ conditions: [expect.objectContaining({ type: 'Ready', status: 'True', reason: 'Serving',
      message: 'The backup is served until 2026-11-30T10:30:00.000Z: kubedr browse --restore r1 -n kubedr-system port-forwards to it and writes a kubeconfig' })] }]);
    expect(t.events.map((e) => e[1])).toEqual(['BrowseReady']);

    await reconcile(servingPod(false, { phase: 'Failed', reason: 'DeadlineExceeded' }));
    const last = t.api.statuses.at(-1) as { restoreStatus: string; conditions: { type: string; status: string; message: string }[] };
    expect(last.restoreStatus).toBe('Completed');
    expect(last.conditions.map((c) => [c.type, c.status, c.message])).toEqual([
      ['Complete', 'True', 'The browse ended: served until its time limit'], ['Failed', 'False', 'The browse ended: served until its time limit'],
      ['Ready', 'False', 'The browse has ended']]);
    expect(t.events.at(-1)).toEqual(['Normal', 'RestoreSucceeded', 'Restore from snapshot 0123abcd completed: the browse served until its time limit']);
  });
});
