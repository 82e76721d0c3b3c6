/**
 * `kubedr release-records` (the chart's uninstall hook) against an in-memory API: it stops the controller before it
 * touches a record, releases only the forget finalizer, keeps going through records changed meanwhile and an API server
 * that is away for a while, and gives up with the documented exit codes.
 */
import { describe, expect, test } from 'bun:test';
import { RECORD_FINALIZER } from '../../src/api/group.ts';
import type { Deployment, MetadataBackupRecord, Pod } from '../../src/api/types.ts';
import { EXIT, exitCodeFor } from '../../src/cli/exit-codes.ts';
import { type ReleaseDeps, type ReleaseOptions, releaseNamespaceRecords } from '../../src/cli/release-records.ts';
import { ApiError, ConnectionError } from '../../src/kube/errors.ts';

const NS = 'kubedr-system';
const OTHER = 'example.com/keep-me';

const record = (id: string, finalizers: string[]): MetadataBackupRecord => ({
  metadata: { name: `mbr-${id}`, namespace: NS, finalizers, resourceVersion: '1' }, spec: { snapshotId: id, policy: 'daily', backuploc: 'loc' },
});
const controllerPod = (name: string): Pod => ({
  metadata: { name, namespace: NS, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'kubedr-5d9', uid: 'u1', controller: true }] },
  status: { phase: 'Running' },
});
/** The hook's own pod: it carries the release's labels too, but a Job made it. */
const hookPod: Pod = {
  metadata: { name: 'kubedr-release-records-x2x', namespace: NS, ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: 'kubedr-release-records', uid: 'u2', controller: true }] },
  status: { phase: 'Running' },
};

interface World {
  deployment?: Deployment;
  /** Controller pods, each gone after this many pod lists once the Deployment is at 0 (Infinity: never). */
  pods: { pod: Pod; listsLeft: number }[];
  records: MetadataBackupRecord[];
  /** Errors the next calls throw, in order, whatever the call. */
  failures?: Error[];
  /** Record patches answered 409 first (the record changed meanwhile). */
  conflicts?: number;
}

/** An in-memory API: the calls in order, the state they leave, and the command's output; a fake clock that sleeps move. */
function api(world: World) {
  const calls: string[] = [];
  let clock = 0;
  let out = '';
  const fail = () => {
    const err = world.failures?.shift();
    if (err) throw err;
  };
  const client: ReleaseDeps['client'] = {
    server: 'https://api.example:6443',
    get: (async (ref: { kind: string }, _ns: string, name: string) => {
      calls.push(`get ${ref.kind}/${name}`);
      fail();
      if (!world.deployment) throw new ApiError(404, 'NotFound', `deployments.apps "${name}" not found`, 'GET', '/x');
      return structuredClone(world.deployment);
    }) as ReleaseDeps['client']['get'],
    list: (async (ref: { kind: string }, _ns: string, query: Record<string, string> = {}) => {
      calls.push(`list ${ref.kind}${query.labelSelector ? ` ${query.labelSelector}` : ''}`);
      fail();
      if (ref.kind === 'Pod') {
        if (world.deployment?.spec?.replicas === 0) for (const p of world.pods) p.listsLeft--;
        world.pods = world.pods.filter((p) => p.listsLeft >= 0);
        return { items: [hookPod, ...world.pods.map((p) => p.pod)], resourceVersion: '1' };
      }
      return { items: structuredClone(world.records), resourceVersion: '1' };
    }) as ReleaseDeps['client']['list'],
    patch: (async (ref: { kind: string }, _ns: string, name: string, patch: { spec?: { replicas: number }; metadata?: { finalizers: string[]; resourceVersion: string } }) => {
      calls.push(`patch ${ref.kind}/${name}`);
      fail();
      if (ref.kind === 'Deployment') {
        world.deployment!.spec!.replicas = patch.spec!.replicas;
        return {};
      }
      if (world.conflicts && world.conflicts-- > 0) throw new ApiError(409, 'Conflict', 'the object has been modified', 'PATCH', '/x');
      const r = world.records.find((x) => x.metadata.name === name)!;
      expect(patch.metadata!.resourceVersion).toBe(r.metadata.resourceVersion!);
      r.metadata.finalizers = patch.metadata!.finalizers;
      return {};
    }) as ReleaseDeps['client']['patch'],
  };
  const deps: ReleaseDeps = { client, stdout: { write: (s: string) => (out += s) }, now: () => clock, sleep: async (ms) => { clock += ms; } };
  const run = (o: Partial<ReleaseOptions> = {}) => releaseNamespaceRecords(deps, { namespace: NS, timeoutMs: 120_000, ...o })
    .then((code) => ({ code }), (err: unknown) => ({ code: exitCodeFor(err), message: err instanceof Error ? err.message : String(err) }));
  return { calls, run, world, output: () => out, elapsed: () => clock };
}

const deployment = (replicas: number): Deployment => ({
  metadata: { name: 'kubedr', namespace: NS },
  spec: { replicas, selector: { matchLabels: { 'app.kubernetes.io/name': 'kubedr', 'app.kubernetes.io/instance': 'kubedr' } }, template: {} },
});

describe('releaseNamespaceRecords', () => {
  test('releases the forget finalizer only, keeps other finalizers, says what it released; a second run changes nothing', async () => {
    const t = api({ pods: [], records: [record('aaaa1111', [RECORD_FINALIZER]), record('bbbb2222', [OTHER, RECORD_FINALIZER]), record('cccc3333', [])] });
    expect(await t.run()).toEqual({ code: EXIT.ok });
    expect(t.world.records.map((r) => r.metadata.finalizers)).toEqual([[], [OTHER], []]);
    expect(t.output()).toBe('released mbr-aaaa1111 (loc, snapshot aaaa1111): its snapshot stays in S3\n' +
      'released mbr-bbbb2222 (loc, snapshot bbbb2222): its snapshot stays in S3\n' +
      '2 MetadataBackupRecord(s) in namespace kubedr-system released; their snapshots stay in S3, where a new install finds them\n');
    const patches = t.calls.filter((c) => c.startsWith('patch')).length;
    expect(await t.run()).toEqual({ code: EXIT.ok });
    expect(t.calls.filter((c) => c.startsWith('patch')).length).toBe(patches);
    expect(t.output()).toEndWith('no MetadataBackupRecord in namespace kubedr-system holds the forget finalizer: nothing to release\n');
  });

  test('--stop-deployment: scales the controller to 0 and touches no record until its pods are gone (its own pod aside)', async () => {
    const t = api({ deployment: deployment(2), pods: [{ pod: controllerPod('kubedr-5d9-a'), listsLeft: 1 }, { pod: controllerPod('kubedr-5d9-b'), listsLeft: 3 }],
      records: [record('aaaa1111', [RECORD_FINALIZER])] });
    expect(await t.run({ stopDeployment: 'kubedr' })).toEqual({ code: EXIT.ok });
    expect(t.world.deployment?.spec?.replicas).toBe(0);
    const selector = 'app.kubernetes.io/name=kubedr,app.kubernetes.io/instance=kubedr';
    expect(t.calls).toEqual(['get Deployment/kubedr', 'patch Deployment/kubedr', `list Pod ${selector}`, `list Pod ${selector}`,
      `list Pod ${selector}`, `list Pod ${selector}`, 'list MetadataBackupRecord', 'patch MetadataBackupRecord/mbr-aaaa1111']);
    expect(t.output()).toStartWith('deployment/kubedr scaled to 0: the controller stops (it would put the finalizers back)\n' +
      'waiting for the controller\'s pods to stop: kubedr-5d9-a, kubedr-5d9-b\nthe controller is stopped\nreleased mbr-aaaa1111');
  });

  test('a Deployment already at 0 is not written; one that is gone is said so, and the records are released all the same', async () => {
    const stopped = api({ deployment: deployment(0), pods: [], records: [record('aaaa1111', [RECORD_FINALIZER])] });
    expect(await stopped.run({ stopDeployment: 'kubedr' })).toEqual({ code: EXIT.ok });
    expect(stopped.calls.filter((c) => c.startsWith('patch Deployment'))).toEqual([]);
    const gone = api({ pods: [], records: [record('aaaa1111', [RECORD_FINALIZER])] });
    expect(await gone.run({ stopDeployment: 'kubedr' })).toEqual({ code: EXIT.ok });
    expect(gone.output()).toStartWith('deployment/kubedr not found in namespace kubedr-system: no controller to stop\n');
    expect(gone.world.records[0]!.metadata.finalizers).toEqual([]);
  });

  test('pods that do not stop: gives up at --timeout with exit 9, and no record is released', async () => {
    const t = api({ deployment: deployment(1), pods: [{ pod: controllerPod('kubedr-5d9-a'), listsLeft: Number.POSITIVE_INFINITY }],
      records: [record('aaaa1111', [RECORD_FINALIZER])] });
    const r = await t.run({ stopDeployment: 'kubedr', timeoutMs: 70_000 });
    expect(r).toEqual({ code: EXIT.timedOut, message: 'gave up after 70 s (--timeout): the controller\'s pods still run (kubedr-5d9-a); ' +
      'no record was released, since a running controller puts the finalizer back' });
    expect(t.world.records[0]!.metadata.finalizers).toEqual([RECORD_FINALIZER]);
    expect(t.elapsed()).toBe(70_000);
  });

  test('a record changed meanwhile (409) is listed again and released', async () => {
    const t = api({ pods: [], records: [record('aaaa1111', [RECORD_FINALIZER])], conflicts: 2 });
    expect(await t.run()).toEqual({ code: EXIT.ok });
    expect(t.calls.filter((c) => c === 'list MetadataBackupRecord').length).toBe(3);
    expect(t.world.records[0]!.metadata.finalizers).toEqual([]);
  });

  test('an API server away for a while is waited for; one that stays away ends at --timeout with exit 9', async () => {
    const away = () => new ConnectionError('cannot reach the Kubernetes API at https://api.example:6443: connection refused');
    const t = api({ deployment: deployment(1), pods: [], records: [record('aaaa1111', [RECORD_FINALIZER])], failures: [away(), away()] });
    expect(await t.run({ stopDeployment: 'kubedr' })).toEqual({ code: EXIT.ok });
    expect(t.output()).toStartWith('reading deployment/kubedr: the API server does not answer (cannot reach the Kubernetes API at https://api.example:6443: connection refused); trying again\n');
    expect(t.world.records[0]!.metadata.finalizers).toEqual([]);
    const down = api({ pods: [], records: [record('aaaa1111', [RECORD_FINALIZER])], failures: Array.from({ length: 100 }, away) });
    expect(await down.run({ timeoutMs: 10_000 })).toMatchObject({ code: EXIT.timedOut, message: expect.stringContaining('releasing the records: cannot reach') });
  });

  test('refused credentials end at once with exit 3 (the chart\'s Role lacks a grant)', async () => {
    const t = api({ deployment: deployment(1), pods: [], records: [],
      failures: [new ApiError(403, 'Forbidden', 'deployments.apps "kubedr" is forbidden', 'GET', '/x')] });
    expect(await t.run({ stopDeployment: 'kubedr' })).toMatchObject({ code: EXIT.credentials });
    expect(t.calls).toEqual(['get Deployment/kubedr']);
  });
});
