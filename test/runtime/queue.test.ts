import { describe, expect, test } from 'bun:test';
import { RateLimiter, WorkQueue } from '../../src/runtime/queue.ts';

describe('WorkQueue', () => {
  test('a key waiting in the queue is not added twice', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('a');
    q.add('b');
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(await Promise.race([q.get(), Bun.sleep(20).then(() => 'nothing')])).toBe('nothing');
  });

  test('a key being processed is not handed out again until done, then once', async () => {
    const q = new WorkQueue();
    q.add('a');
    const first = await q.get();
    q.add('a');
    q.add('a');
    const next = q.get();
    expect(await Promise.race([next, Bun.sleep(20).then(() => 'still processing')])).toBe('still processing');
    q.done(first!);
    expect(await next).toBe('a');
    q.done('a');
    expect(await Promise.race([q.get(), Bun.sleep(20).then(() => 'once')])).toBe('once');
  });

  test('a waiting worker receives a key as soon as it is added', async () => {
    const q = new WorkQueue();
    const got = q.get();
    q.add('x');
    expect(await got).toBe('x');
  });

  test('addAfter delivers later, and an earlier visit wins', async () => {
    const q = new WorkQueue();
    q.addAfter('k', 200);
    q.addAfter('k', 20);
    const t0 = Date.now();
    expect(await q.get()).toBe('k');
    expect(Date.now() - t0).toBeLessThan(150);
  });

  test('shutDown releases waiting workers with undefined', async () => {
    const q = new WorkQueue();
    const got = q.get();
    q.shutDown();
    expect(await got).toBeUndefined();
    q.add('late');
    expect(await q.get()).toBeUndefined();
  });

  test('after shutDown nothing is handed out, not even keys queued before it', async () => {
    const q = new WorkQueue();
    q.add('queued');
    q.shutDown();
    expect(await q.get()).toBeUndefined();
  });
});

describe('RateLimiter', () => {
  test('backs off exponentially per key and forgets on success', () => {
    const r = new RateLimiter({ baseDelayMs: 5, maxDelayMs: 1000, burst: 1000 });
    expect([r.when('a'), r.when('a'), r.when('a'), r.when('b')]).toEqual([5, 10, 20, 5]);
    r.forget('a');
    expect(r.when('a')).toBe(5);
  });

  test('caps the per-key delay', () => {
    const r = new RateLimiter({ baseDelayMs: 100, maxDelayMs: 300, burst: 1000 });
    const delays = Array.from({ length: 5 }, () => r.when('a'));
    expect(delays).toEqual([100, 200, 300, 300, 300]);
  });

  test('the overall token bucket delays a burst beyond its size', () => {
    const r = new RateLimiter({ baseDelayMs: 1, qps: 10, burst: 2 });
    const delays = ['a', 'b', 'c', 'd'].map((k) => r.when(k));
    expect(delays[0]).toBe(1);
    expect(delays[1]).toBe(1);
    expect(delays[2]).toBeGreaterThanOrEqual(90);
    expect(delays[3]).toBeGreaterThan(delays[2]!);
  });
});
