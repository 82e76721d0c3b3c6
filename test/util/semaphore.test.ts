import { expect, test } from 'bun:test';
import { Semaphore } from '../../src/util/semaphore.ts';

test('at most `limit` holders; waiters proceed in order as slots free up', async () => {
  const s = new Semaphore(1);
  const order: string[] = [];
  const r1 = await s.acquire();
  const p2 = s.acquire().then((r) => { order.push('2'); return r; });
  const p3 = s.acquire().then((r) => { order.push('3'); return r; });
  await Bun.sleep(5);
  expect(order).toEqual([]);
  r1();
  r1(); // releasing twice frees one slot only
  const r2 = await p2;
  await Bun.sleep(5);
  expect(order).toEqual(['2']);
  r2();
  (await p3)();
  expect(order).toEqual(['2', '3']);
});

test('an aborted waiter leaves the line without taking a slot', async () => {
  const s = new Semaphore(1);
  const r1 = await s.acquire();
  const ac = new AbortController();
  const waiting = s.acquire(ac.signal);
  ac.abort();
  await expect(waiting).rejects.toBeDefined();
  r1();
  const r = await s.acquire();
  r();
});
