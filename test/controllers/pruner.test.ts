/** When a location's repository is pruned: on its own cadence, sooner after many forgets, never all at once on a restart. */
import { expect, test } from 'bun:test';
import { pruneDue } from '../../src/controllers/pruner.ts';

const H = 3_600_000;
const base = { startedAt: 0, intervalMs: 24 * H, afterForgets: 50 };

test('a location pruned a day ago with forgets since is due; one pruned an hour ago is not', () => {
  expect(pruneDue({ ...base, lastPrune: 0, forgets: 3, now: 24 * H })).toBe(true);
  expect(pruneDue({ ...base, lastPrune: 23 * H, forgets: 3, now: 24 * H })).toBe(false);
});

test('enough forgets make it due at once', () => {
  expect(pruneDue({ ...base, lastPrune: 23 * H, forgets: 50, now: 24 * H })).toBe(true);
});

test('never pruned: counted from this process\'s start, and only once something was forgotten', () => {
  expect(pruneDue({ ...base, lastPrune: undefined, forgets: 0, now: 1 })).toBe(false);
  expect(pruneDue({ ...base, lastPrune: undefined, forgets: 0, now: 48 * H })).toBe(false);
  expect(pruneDue({ ...base, lastPrune: undefined, forgets: 2, now: 1 * H })).toBe(false);
  expect(pruneDue({ ...base, lastPrune: undefined, forgets: 2, now: 25 * H })).toBe(true);
});

test('a recorded prune is repeated each interval even without forgets seen by this process (they may predate a restart)', () => {
  expect(pruneDue({ ...base, lastPrune: 0, forgets: 0, now: 24 * H })).toBe(true);
});
