/** The shared probe that wakes informers once an API server seen down answers again; the check is a scripted function. */
import { expect, test } from 'bun:test';
import { AnswerProbe } from '../../src/kube/answer-probe.ts';

/** A check whose answers the test sets; counts how often it was asked. */
function scriptedCheck() {
  const state = { answering: false, asked: 0 };
  return { state, check: async () => (state.asked++, state.answering) };
}

test('every waiter wakes at the first check that finds the server answering, and the loop then stops', async () => {
  const { state, check } = scriptedCheck();
  const probe = new AnswerProbe({ check, intervalMs: 20 });
  const woke: string[] = [];
  const ac = new AbortController();
  const a = probe.answered(ac.signal, true).then(() => woke.push('a'));
  const b = probe.answered(ac.signal, true).then(() => woke.push('b'));
  await Bun.sleep(110);
  // Down: asked about once an interval, nobody woken.
  expect(woke).toEqual([]);
  expect(state.asked).toBeGreaterThanOrEqual(2);
  expect(state.asked).toBeLessThanOrEqual(6);
  state.answering = true;
  await Promise.all([a, b]);
  expect(woke.sort()).toEqual(['a', 'b']);
  const asked = state.asked;
  await Bun.sleep(80);
  expect(state.asked).toBe(asked);
});

test('one loop for all waiters: five waiters do not multiply the checks', async () => {
  const { state, check } = scriptedCheck();
  const probe = new AnswerProbe({ check, intervalMs: 20 });
  const ac = new AbortController();
  for (let i = 0; i < 5; i++) void probe.answered(ac.signal, true);
  await Bun.sleep(110);
  ac.abort();
  expect(state.asked).toBeLessThanOrEqual(6);
});

test('a waiter whose signal aborts resolves at once; with no waiter left the checks stop', async () => {
  const { state, check } = scriptedCheck();
  const probe = new AnswerProbe({ check, intervalMs: 20 });
  const ac = new AbortController();
  const waiting = probe.answered(ac.signal, true);
  await Bun.sleep(50);
  ac.abort();
  await waiting;
  await Bun.sleep(30);
  const asked = state.asked;
  await Bun.sleep(80);
  expect(state.asked).toBe(asked);
  // A new waiter starts the loop again.
  state.answering = true;
  await probe.answered(new AbortController().signal, true);
  expect(state.asked).toBe(asked + 1);
});

test('a check that throws or hangs counts as no answer', async () => {
  let calls = 0;
  const probe = new AnswerProbe({
    intervalMs: 10, checkTimeoutMs: 30,
    check: (signal) => {
      calls++;
      if (calls === 1) return Promise.reject(new Error('ECONNREFUSED'));
      if (calls === 2) return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      return Promise.resolve(true);
    },
  });
  await probe.answered(new AbortController().signal, true);
  expect(calls).toBe(3);
});

test('a waiter that saw the server answer with an error wakes only after a check has seen it down, then up', async () => {
  const { state, check } = scriptedCheck();
  state.answering = true;
  const probe = new AnswerProbe({ check, intervalMs: 20 });
  let woke = false;
  const ac = new AbortController();
  const waiting = probe.answered(ac.signal, false).then(() => (woke = true));
  // Ready at every check (a broken webhook failing requests while /readyz says 200): no early wake, no list storm.
  await Bun.sleep(110);
  expect(woke).toBe(false);
  // Restarting: not ready, then ready.
  state.answering = false;
  await Bun.sleep(50);
  expect(woke).toBe(false);
  state.answering = true;
  await waiting;
  expect(woke).toBe(true);
});
