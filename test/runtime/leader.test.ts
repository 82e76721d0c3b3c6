/**
 * The leader elector against an in-memory Lease with client-go's rules: when a standby may take over, and what a
 * leader does when its renewals hang (a frozen API server): it must give up by the renew deadline, fence its writes and
 * abort its work with LeadershipLost. The e2e test (leader-election.test.ts) runs two real controllers.
 */
import { describe, expect, test } from 'bun:test';
import type { Lease } from '../../src/api/types.ts';
import type { KubeClient, WriteFence } from '../../src/kube/client.ts';
import { ApiError } from '../../src/kube/errors.ts';
import { LeaderElector, LeadershipLost } from '../../src/runtime/leader.ts';
import { createLogger } from '../../src/util/log.ts';

/** One Lease in memory, optimistic concurrency by resourceVersion; `hang` makes every request wait for its signal. */
function fakeApi() {
  const state = { lease: undefined as Lease | undefined, rv: 0, hang: false, fences: [] as WriteFence[] };
  const answer = <T>(signal: AbortSignal | undefined, fn: () => T): Promise<T> => {
    if (!state.hang) return Promise.resolve().then(fn);
    return new Promise((_ok, fail) => signal?.addEventListener('abort', () => fail(signal.reason), { once: true }));
  };
  const client = {
    get: (_r: unknown, _ns: string, _n: string, signal?: AbortSignal) => answer(signal, () => {
      if (!state.lease) throw new ApiError(404, 'NotFound', 'no lease', 'GET', '/lease');
      return structuredClone(state.lease);
    }),
    create: (_r: unknown, _ns: string, obj: Lease, signal?: AbortSignal) => answer(signal, () => {
      if (state.lease) throw new ApiError(409, 'AlreadyExists', 'exists', 'POST', '/lease');
      state.lease = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++state.rv) } };
      return state.lease;
    }),
    replace: (_r: unknown, _ns: string, obj: Lease, signal?: AbortSignal) => answer(signal, () => {
      if (obj.metadata.resourceVersion !== state.lease?.metadata.resourceVersion) throw new ApiError(409, 'Conflict', 'changed', 'PUT', '/lease');
      state.lease = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++state.rv) } };
      return state.lease;
    }),
    fenceWrites: (fence: WriteFence) => void state.fences.push(fence),
  } as unknown as KubeClient;
  return { state, client };
}

const log = createLogger({ level: 'error' });
/** Leads until told to stop. */
const untilAborted = (s: AbortSignal) => new Promise<void>((ok) => s.addEventListener('abort', () => ok(), { once: true }));
const timing = { leaseDurationMs: 400, renewDeadlineMs: 300, retryPeriodMs: 50 };
const elector = (client: KubeClient, identity: string) =>
  new LeaderElector({ client, namespace: 'ns', leaseName: 'l', identity, log, ...timing });

describe('LeaderElector', () => {
  test('a leader whose renewals hang gives up by the renew deadline: writes fenced, work aborted with LeadershipLost', async () => {
    const { state, client } = fakeApi();
    let leading: AbortSignal | undefined;
    const run = elector(client, 'a').run(new AbortController().signal, async (s) => {
      leading = s;
      await untilAborted(s);
    });
    while (!leading) await Bun.sleep(5);
    expect(state.fences.map((f) => f.refusal())).toEqual([undefined]);
    const frozeAt = performance.now();
    state.hang = true;
    const err = await run.catch((e: unknown) => e);
    const tookMs = performance.now() - frozeAt;
    expect(err).toBeInstanceOf(LeadershipLost);
    expect(leading.reason).toBeInstanceOf(LeadershipLost);
    expect(state.fences[0]!.refusal()).toBe('this replica lost the leader lease');
    // Never later than the deadline plus one retry period (and some scheduling slack), although no request answered.
    expect(tookMs).toBeLessThan(timing.renewDeadlineMs + timing.retryPeriodMs + 150);
  });

  test('a deposed leader whose work ignores the abort still rejects after the grace, so the process exits', async () => {
    const { state, client } = fakeApi();
    let leading: AbortSignal | undefined;
    let workEnded = false;
    const graceMs = 200;
    const run = new LeaderElector({ client, namespace: 'ns', leaseName: 'l', identity: 'a', log, ...timing, lostGraceMs: graceMs })
      .run(new AbortController().signal, async (s) => {
        leading = s;
        await Bun.sleep(60_000); // e.g. an etcd connection retrying, deaf to the abort
        workEnded = true;
      });
    while (!leading) await Bun.sleep(5);
    const frozeAt = performance.now();
    state.hang = true;
    const err = await run.catch((e: unknown) => e);
    const tookMs = performance.now() - frozeAt;
    expect(err).toBeInstanceOf(LeadershipLost);
    expect(workEnded).toBe(false);
    expect(tookMs).toBeGreaterThanOrEqual(timing.renewDeadlineMs + graceMs - 60);
    expect(tookMs).toBeLessThan(timing.renewDeadlineMs + timing.retryPeriodMs + graceMs + 200);
    expect(state.fences[0]!.refusal()).toBe('this replica lost the leader lease');
  });

  test('a standby takes the lease only after a whole lease duration without renewal, observed on its own clock', async () => {
    const { state, client } = fakeApi();
    const stopA = new AbortController();
    const a = elector(client, 'a').run(stopA.signal, untilAborted);
    while (state.lease?.spec?.holderIdentity !== 'a') await Bun.sleep(5);
    let bLeads = false;
    const stopB = new AbortController();
    const b = elector(client, 'b').run(stopB.signal, async (s) => {
      bLeads = true;
      await untilAborted(s);
    });
    await Bun.sleep(timing.leaseDurationMs * 2);
    expect(bLeads).toBe(false);
    // a stops renewing without releasing (as if frozen): b waits out the lease duration, then takes over.
    state.hang = true;
    await a.catch(() => undefined);
    state.hang = false;
    const frozenAt = performance.now();
    while (!bLeads) await Bun.sleep(10);
    expect(performance.now() - frozenAt).toBeGreaterThanOrEqual(timing.leaseDurationMs - timing.renewDeadlineMs - 100);
    expect(state.lease?.spec?.holderIdentity).toBe('b');
    stopB.abort();
    await b;
    stopA.abort();
  });

  test('on shutdown the leader releases the lease and is not fenced', async () => {
    const { state, client } = fakeApi();
    const stop = new AbortController();
    const run = elector(client, 'a').run(stop.signal, untilAborted);
    while (state.lease?.spec?.holderIdentity !== 'a') await Bun.sleep(5);
    stop.abort();
    await run;
    expect(state.lease?.spec?.holderIdentity).toBe('');
    expect(state.fences[0]!.refusal()).toBeUndefined();
  });

  test('a leader frozen past the renew deadline (SIGSTOP) writes nothing on waking, and its work is stopped before any renewal answers', async () => {
    const { state, client } = fakeApi();
    let leading: AbortSignal | undefined;
    const outcome = elector(client, 'a').run(new AbortController().signal, async (s) => {
      leading = s;
      await untilAborted(s);
    }).catch((e: unknown) => e);
    while (!leading) await Bun.sleep(5);
    const fence = state.fences[0]!;
    expect(fence.msLeft()).toBeGreaterThan(0);
    // Frozen: the event loop does not run for longer than the renew deadline.
    const frozen = performance.now();
    while (performance.now() - frozen < timing.renewDeadlineMs + 50) { /* the process is stopped */ }
    // Awake: the very first write, before any timer or renewal ran, is refused by time alone.
    expect(fence.refusal()).toMatch(/has not renewed the leader lease within the renew deadline \(0.3 s\): another may lead now/);
    expect(fence.msLeft()).toBeLessThanOrEqual(0);
    // The watchdog is the first timer due: the work is aborted with LeadershipLost, although the API never failed.
    state.hang = true;
    await Bun.sleep(0);
    await Bun.sleep(1);
    expect(leading.reason).toBeInstanceOf(LeadershipLost);
    expect(await outcome).toBeInstanceOf(LeadershipLost);
  });

  test('the lease is renewed while work drains after a shutdown signal, so a drain longer than the renew deadline may still write', async () => {
    const { state, client } = fakeApi();
    const stop = new AbortController();
    let drained = false;
    const refusals: (string | undefined)[] = [];
    const run = elector(client, 'a').run(stop.signal, async (s) => {
      await untilAborted(s);
      // Drains for twice the renew deadline, writing now and then.
      for (let i = 0; i < 6; i++) {
        await Bun.sleep(timing.renewDeadlineMs / 3);
        refusals.push(state.fences[0]!.refusal());
      }
      drained = true;
    });
    while (state.lease?.spec?.holderIdentity !== 'a') await Bun.sleep(5);
    stop.abort();
    await run;
    expect(drained).toBe(true);
    expect(refusals).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
    expect(state.lease?.spec?.holderIdentity).toBe('');
  });
});
