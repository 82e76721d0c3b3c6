/**
 * Informer logic against a scripted source: the server's answers (lists, watch events, 410 Gone, failures) are played
 * from a script so each path is reached on purpose. The e2e tests cover the same informer against the real API server.
 */
import { expect, test } from 'bun:test';
import type { KubeObject } from '../../src/api/types.ts';
import type { ListResult, WatchEvent } from '../../src/kube/client.ts';
import { ApiError, ConnectionError } from '../../src/kube/errors.ts';
import { Informer, type ListWatch } from '../../src/runtime/informer.ts';
import { createLogger } from '../../src/util/log.ts';

const obj = (name: string, rv: string): KubeObject => ({ metadata: { name, namespace: 'ns', resourceVersion: rv } });
const gone = () => new ApiError(410, 'Expired', 'too old resource version', 'WATCH', '/x');

type Step = { events?: WatchEvent<KubeObject>[]; error?: Error };

/** Lists come from `lists` in order; each watch plays the next step, then (if no error) waits until aborted. */
function scripted(lists: KubeObject[][], steps: Step[]): ListWatch<KubeObject> & { watchedFrom: string[] } {
  let listNo = 0;
  const watchedFrom: string[] = [];
  return {
    watchedFrom,
    async list(): Promise<ListResult<KubeObject>> {
      const items = lists[Math.min(listNo++, lists.length - 1)]!;
      return { items, resourceVersion: String(100 * listNo) };
    },
    async *watch(rv: string, signal: AbortSignal) {
      watchedFrom.push(rv);
      const step = steps.shift();
      for (const ev of step?.events ?? []) yield ev;
      if (step?.error) throw step.error;
      await aborted(signal);
    },
  };
}

const aborted = (signal: AbortSignal) =>
  new Promise((ok) => (signal.aborted ? ok(undefined) : signal.addEventListener('abort', ok, { once: true })));

function record(informer: Informer<KubeObject>): string[] {
  const seen: string[] = [];
  informer.addHandlers({
    onAdd: (o) => seen.push(`add ${o.metadata.name}`),
    onUpdate: (old, o) => seen.push(old === o ? `resync ${o.metadata.name}` : `update ${o.metadata.name}@${o.metadata.resourceVersion}`),
    onDelete: (o) => seen.push(`delete ${o.metadata.name}`),
  });
  return seen;
}

const log = createLogger({ level: 'error' });

/** Runs the informer for `ms`, then stops it and waits for it to finish. */
async function runFor(informer: Informer<KubeObject>, ms: number): Promise<void> {
  const ac = new AbortController();
  const run = informer.start(ac.signal);
  await Bun.sleep(ms);
  ac.abort();
  await run;
}

test('lists, syncs, then applies watch events and resumes from the last resourceVersion', async () => {
  const source = scripted([[obj('a', '1')]], [
    { events: [{ type: 'ADDED', object: obj('b', '101') }, { type: 'MODIFIED', object: obj('a', '102') }], error: new Error('stream reset') },
    { events: [{ type: 'DELETED', object: obj('b', '103') }] },
  ]);
  const informer = new Informer({ name: 't', source, log, maxBackoffMs: 10 });
  const seen = record(informer);
  const ac = new AbortController();
  const run = informer.start(ac.signal);
  await informer.waitForSync();
  expect(informer.hasSynced()).toBe(true);
  await Bun.sleep(100);
  ac.abort();
  await run;
  expect(seen).toEqual(['add a', 'add b', 'update a@102', 'delete b']);
  // After the reset it watched again from the last event, without relisting.
  expect(source.watchedFrom).toEqual(['100', '102']);
  expect(informer.list().map((o) => o.metadata.name)).toEqual(['a']);
});

test('410 Gone relists and delivers only the difference, including deletions missed while away', async () => {
  const source = scripted([[obj('a', '1'), obj('b', '1')], [obj('a', '5'), obj('c', '6')]], [{ error: gone() }, {}]);
  const informer = new Informer({ name: 't', source, log });
  const seen = record(informer);
  await runFor(informer, 100);
  expect(seen).toEqual(['add a', 'add b', 'update a@5', 'add c', 'delete b']);
  expect(source.watchedFrom).toEqual(['100', '200']);
});

test('an unchanged object in a relist is not re-delivered', async () => {
  const source = scripted([[obj('a', '1')], [obj('a', '1')]], [{ error: gone() }, {}]);
  const informer = new Informer({ name: 't', source, log });
  const seen = record(informer);
  await runFor(informer, 50);
  expect(seen).toEqual(['add a']);
});

test('resync re-delivers every cached object as an update to itself', async () => {
  const source = scripted([[obj('a', '1')]], [{}]);
  const informer = new Informer({ name: 't', source, log, resyncMs: 40 });
  const seen = record(informer);
  await runFor(informer, 100);
  expect(seen[0]).toBe('add a');
  expect(seen.filter((s) => s === 'resync a').length).toBeGreaterThanOrEqual(1);
});

test('a failing list is retried with backoff until it works', async () => {
  let calls = 0;
  const source: ListWatch<KubeObject> = {
    async list() {
      if (++calls < 3) throw new Error('connection refused');
      return { items: [obj('a', '1')], resourceVersion: '9' };
    },
    async *watch(_rv, signal) {
      await aborted(signal);
    },
  };
  const informer = new Informer({ name: 't', source, log, maxBackoffMs: 20 });
  const ac = new AbortController();
  const run = informer.start(ac.signal);
  await informer.waitForSync();
  ac.abort();
  await run;
  expect(calls).toBe(3);
});

test('a watch that keeps failing from one resourceVersion (etcd restored: "too large resource version") lists again', async () => {
  const tooLarge = () => new ApiError(504, 'Timeout', 'Too large resource version: 900, current: 40', 'WATCH', '/x');
  const source = scripted([[obj('a', '900')], [obj('a', '30'), obj('b', '40')]], [{ error: tooLarge() }, { error: tooLarge() }, {}]);
  const informer = new Informer({ name: 't', source, log, maxBackoffMs: 10 });
  const seen = record(informer);
  await runFor(informer, 150);
  expect(source.watchedFrom).toEqual(['100', '100', '200']);
  expect(seen).toEqual(['add a', 'update a@30', 'add b']);
});

/**
 * A source whose lists fail with `failure()` while `down` is set; `answered` records how it was asked and resolves when
 * the test says the probe found the server back.
 */
function outage(failure: () => Error) {
  const state = { down: true, lists: 0, asked: [] as boolean[] };
  let back!: () => void;
  const probeSaysBack = new Promise<void>((ok) => (back = ok));
  const source: ListWatch<KubeObject> = {
    async list() {
      state.lists++;
      if (state.down) throw failure();
      return { items: [obj('a', '1')], resourceVersion: '9' };
    },
    async *watch(_rv, signal) {
      await aborted(signal);
    },
    answered: (signal, down) => {
      state.asked.push(down);
      return Promise.race([probeSaysBack, aborted(signal).then(() => undefined)]);
    },
  };
  return { state, source, back: () => { state.down = false; back(); } };
}

/** Runs the informer 0.7 s into an outage, then brings the server back; returns how long the sync took after that. */
async function throughOutage(failure: () => Error) {
  const o = outage(failure);
  const informer = new Informer({ name: 't', source: o.source, log, maxBackoffMs: 30_000 });
  const ac = new AbortController();
  const run = informer.start(ac.signal);
  await Bun.sleep(700);
  const listsWhileDown = o.state.lists;
  const t = performance.now();
  o.back();
  await Promise.race([informer.waitForSync(), Bun.sleep(1_500)]);
  const syncedAfter = informer.hasSynced() ? performance.now() - t : Number.POSITIVE_INFINITY;
  ac.abort();
  await run;
  return { listsWhileDown, syncedAfter, asked: o.state.asked };
}

test('an unreachable server: lists back off (no hammering), and the informer lists again as soon as the probe hears it answer', async () => {
  const r = await throughOutage(() => new ConnectionError('cannot reach the Kubernetes API: ECONNREFUSED'));
  // Tries at 0, 0.2 and 0.6 s; the next one would be at 1.4 s.
  expect(r.listsWhileDown).toBe(3);
  expect(r.syncedAfter).toBeLessThan(100);
  // Its own failure showed the server down.
  expect(r.asked).toEqual([true, true, true]);
});

test('a server that answers 503 (starting up): the probe is asked too, but must see it down itself', async () => {
  const r = await throughOutage(() => new ApiError(503, 'ServiceUnavailable', 'server is starting', 'GET', '/x'));
  expect(r.listsWhileDown).toBe(3);
  expect(r.syncedAfter).toBeLessThan(100);
  expect(r.asked).toEqual([false, false, false]);
});

test('a refusal (403) is no outage: the probe is not asked and the backoff holds', async () => {
  const r = await throughOutage(() => new ApiError(403, 'Forbidden', 'cannot list', 'GET', '/x'));
  expect(r.listsWhileDown).toBe(3);
  // Synced at the next backoff step (1.4 s into the outage), not when the probe said so.
  expect(r.syncedAfter).toBeGreaterThan(500);
  expect(r.asked).toEqual([]);
});

test('a watch that lasted until the server closed it clears the backoff: the next failure waits 0.2 s again', async () => {
  const starts: number[] = [];
  const plan = ['fail', 'fail', 'fail', 'closed', 'fail', 'open'];
  const source: ListWatch<KubeObject> = {
    list: async () => ({ items: [], resourceVersion: '1' }),
    async *watch(_rv, signal) {
      starts.push(performance.now());
      const step = plan.shift();
      if (step === 'fail') throw new Error('stream reset');
      if (step === 'open') await aborted(signal);
    },
  };
  // Waits 0.2, 0.4, 0.8 s, none after the close, then 0.2 s (it would be 1.6 s without the reset).
  await runFor(new Informer({ name: 't', source, log }), 2_000);
  expect(starts).toHaveLength(6);
  expect(starts[5]! - starts[4]!).toBeLessThan(700);
});

test('a server that answers 503 while its probe never sees it down (ready ahead of its lists) is asked again within 3 s, not at the 30 s backoff', async () => {
  let failing = 8;
  const lists: number[] = [];
  const started = performance.now();
  const source: ListWatch<KubeObject> = {
    async list() {
      lists.push(performance.now() - started);
      if (failing-- > 0) throw new ApiError(503, 'ServiceUnavailable', 'the server is currently unable to handle the request', 'GET', '/x');
      return { items: [obj('a', '1')], resourceVersion: '9' };
    },
    async *watch(_rv, signal) {
      await aborted(signal);
    },
    // The probe never answers "back" (it never saw the server down): only the capped backoff wakes the informer.
    answered: (signal) => aborted(signal).then(() => undefined),
  };
  const informer = new Informer({ name: 't', source, log, maxBackoffMs: 30_000 });
  const ac = new AbortController();
  const run = informer.start(ac.signal);
  await informer.waitForSync();
  ac.abort();
  await run;
  const gaps = lists.slice(1).map((t, i) => t - lists[i]!);
  expect(Math.max(...gaps)).toBeLessThan(3_500);
  expect(gaps.filter((g) => g > 2_500).length).toBeGreaterThan(0);
}, 30_000);
