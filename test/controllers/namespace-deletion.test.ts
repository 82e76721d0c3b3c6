/** Records' finalizers are released, snapshots kept, only when the controller's own namespace is being deleted: the moment it is seen, and when told to stop. */
import { expect, test } from 'bun:test';
import { RECORD_FINALIZER } from '../../src/api/group.ts';
import type { KubeObject, MetadataBackupRecord } from '../../src/api/types.ts';
import { NamespaceDeletion } from '../../src/controllers/namespace-deletion.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { ApiError } from '../../src/kube/errors.ts';
import { LeadershipLost } from '../../src/runtime/leader.ts';
import { createLogger } from '../../src/util/log.ts';

const record = (name: string, finalizers: string[]): MetadataBackupRecord => ({
  metadata: { name, namespace: 'kubedr-system', finalizers, resourceVersion: '3' }, spec: { snapshotId: 'abcdef12', policy: 'p', backuploc: 'loc' },
});

function setup(namespace: KubeObject, records: MetadataBackupRecord[], patchError?: Error) {
  const patches: [string, unknown][] = [];
  const client = {
    get: async () => namespace,
    list: async (ref: { plural: string }) => ({ items: ref.plural === 'namespaces' ? [namespace] : records, resourceVersion: '9' }),
    watch: (_r: unknown, _ns: unknown, _rv: string, signal: AbortSignal) => ({
      async *[Symbol.asyncIterator]() {
        await new Promise((ok) => signal.addEventListener('abort', ok, { once: true }));
      },
    }),
    patch: async (_r: unknown, _ns: string, name: string, p: unknown) => {
      if (patchError) throw patchError;
      patches.push([name, p]);
    },
  } as unknown as KubeClient;
  return { patches, deletion: new NamespaceDeletion({ client, namespace: 'kubedr-system', log: createLogger({ level: 'error' }) }) };
}

test('a namespace that is not being deleted: nothing is touched', async () => {
  const t = setup({ metadata: { name: 'kubedr-system' } }, [record('mbr-1', [RECORD_FINALIZER])]);
  expect(await t.deletion.releaseIfNamespaceDeleted()).toBe(0);
  expect(t.patches).toEqual([]);
});

test('a namespace being deleted: every record holding the forget finalizer is released, other finalizers kept', async () => {
  const t = setup({ metadata: { name: 'kubedr-system', deletionTimestamp: '2026-12-04T19:00:00Z' } },
    [record('mbr-1', [RECORD_FINALIZER]), record('mbr-2', ['example.com/other', RECORD_FINALIZER]), record('mbr-3', [])]);
  expect(await t.deletion.releaseIfNamespaceDeleted()).toBe(2);
  expect(t.patches).toEqual([
    ['mbr-1', { metadata: { finalizers: [], resourceVersion: '3' } }],
    ['mbr-2', { metadata: { finalizers: ['example.com/other'], resourceVersion: '3' } }],
  ]);
});

test('a record gone or changed meanwhile does not stop the others', async () => {
  const t = setup({ metadata: { name: 'kubedr-system', deletionTimestamp: '2026-12-04T19:00:00Z' } },
    [record('mbr-1', [RECORD_FINALIZER])], new ApiError(404, 'NotFound', 'gone', 'PATCH', '/x'));
  expect(await t.deletion.releaseIfNamespaceDeleted()).toBe(0);
});

test('a namespace seen being deleted: released at once, without waiting to be told to stop (the credentials may go any moment)', async () => {
  const t = setup({ metadata: { name: 'kubedr-system', deletionTimestamp: '2026-12-04T19:00:00Z' } }, [record('mbr-1', [RECORD_FINALIZER])]);
  const stop = new AbortController();
  const running = t.deletion.start(stop.signal);
  const until = Date.now() + 2_000;
  while (t.patches.length === 0 && Date.now() < until) await Bun.sleep(5);
  expect(t.patches.map((p) => p[0])).toEqual(['mbr-1']);
  stop.abort();
  await running;
});

test('a namespace not being deleted: the watch does nothing, and neither does stopping', async () => {
  const t = setup({ metadata: { name: 'kubedr-system' } }, [record('mbr-1', [RECORD_FINALIZER])]);
  const stop = new AbortController();
  const running = t.deletion.start(stop.signal);
  await Bun.sleep(50);
  stop.abort();
  await running;
  expect(t.patches).toEqual([]);
});

test('a replica stopped for any reason releases the records, a lost lease included (the Lease may be deleted first)', async () => {
  const t = setup({ metadata: { name: 'kubedr-system', deletionTimestamp: '2026-12-04T19:00:00Z' } }, [record('mbr-1', [RECORD_FINALIZER])]);
  const stop = new AbortController();
  const running = t.deletion.start(stop.signal);
  stop.abort(new LeadershipLost());
  await running;
  expect(t.patches.map((p) => p[0])).toContain('mbr-1');
});
