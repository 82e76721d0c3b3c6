import { expect, test } from 'bun:test';
import { selectExpired } from '../../src/engine/retention.ts';

const b = (name: string, time: string) => ({ name, snapshotId: name, time });
const four = [b('a', '2026-01-01T00:00:00Z'), b('c', '2026-01-03T00:00:00Z'), b('b', '2026-01-02T00:00:00Z'), b('d', '2026-01-04T00:00:00Z')];

test('keeps the newest N and expires the rest, whatever the input order', () => {
  expect(selectExpired(four, 2).map((x) => x.name)).toEqual(['b', 'a']);
});

test('nothing expires while there are no more than N', () => {
  expect(selectExpired(four, 4)).toEqual([]);
  expect(selectExpired(four, 120)).toEqual([]);
});

test('the newest backup is never expired, even if asked to keep none', () => {
  expect(selectExpired(four, 0).map((x) => x.name)).toEqual(['c', 'b', 'a']);
});

test('equal times break ties by name, so repeated runs agree', () => {
  const same = [b('x', '2026-01-01T00:00:00Z'), b('y', '2026-01-01T00:00:00Z')];
  expect(selectExpired(same, 1).map((x) => x.name)).toEqual(['x']);
});
