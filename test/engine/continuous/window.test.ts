/** Chains, windows and replay plans from full backups and change sets: every decision path, with plain inputs. */
import { describe, expect, test } from 'bun:test';
import type { ChangeSet, FullBackup } from '../../../src/engine/continuous/change-store.ts';
import { chains, expiredChangeSets, planReplay, restorableWindows } from '../../../src/engine/continuous/window.ts';

const full = (id: string, revision: number, time: number): FullBackup => ({ id, revision, time });
const set = (id: string, fromRevision: number, toRevision: number, fromTime: number, toTime: number): ChangeSet =>
  ({ id, policy: 'p', fromRevision, toRevision, fromTime, toTime });

describe('chains', () => {
  test('change sets that continue a full backup without a hole belong to it; the chain stops at the first hole', () => {
    const c = chains([full('f1', 100, 1000)], [set('a', 101, 110, 1100, 1200), set('b', 111, 120, 1300, 1400), set('c', 125, 130, 1500, 1600)]);
    expect(c).toHaveLength(1);
    expect(c[0]!.sets.map((s) => s.id)).toEqual(['a', 'b']);
    expect(c[0]!.toRevision).toBe(120);
    expect(c[0]!.toTime).toBe(1400);
  });

  test('a set starting before the full backup (recorded before it finished) still continues it; one ending before it does not', () => {
    const c = chains([full('f1', 100, 1000)], [set('old', 50, 99, 500, 900), set('a', 95, 105, 950, 1100), set('b', 106, 110, 1150, 1200)]);
    expect(c[0]!.sets.map((s) => s.id)).toEqual(['a', 'b']);
  });

  test('duplicated or overlapping sets (two leaders for a moment) do not break a chain', () => {
    const c = chains([full('f1', 100, 1000)], [set('a', 101, 110, 1100, 1200), set('a2', 105, 112, 1150, 1250), set('b', 113, 120, 1300, 1400)]);
    expect(c[0]!.toRevision).toBe(120);
  });

  test('a full backup without change sets reaches only its own time', () => {
    expect(chains([full('f1', 100, 1000)], [])[0]).toMatchObject({ toRevision: 100, toTime: 1000, sets: [] });
  });
});

describe('restorable windows', () => {
  test('chains that meet merge into one window; a hole between chains is a gap', () => {
    const fulls = [full('f1', 100, 1000), full('f2', 200, 3000), full('f3', 400, 6000)];
    const sets = [set('a', 101, 150, 1100, 2000), set('b', 151, 210, 2100, 3500), set('c', 211, 250, 3600, 4000), set('d', 401, 410, 6100, 6500)];
    const { windows, gaps } = restorableWindows(fulls, sets);
    expect(windows).toEqual([{ fromTime: 1000, toTime: 4000 }, { fromTime: 6000, toTime: 6500 }]);
    expect(gaps).toEqual([{ fromTime: 4000, toTime: 6000 }]);
  });
});

describe('planReplay', () => {
  const fulls = [full('f1', 100, 1000), full('f2', 200, 3000)];
  const sets = [set('a', 101, 150, 1100, 2000), set('b', 151, 210, 2100, 3500), set('c', 211, 250, 3600, 4000)];

  test('a time is reached from the newest full backup before it, reading only the sets that start by then', () => {
    const p = planReplay(fulls, sets, { time: 3700 });
    expect(p.base.id).toBe('f2');
    expect(p.sets.map((s) => s.id)).toEqual(['b', 'c']);
    expect(p.untilTime).toBe(3700);
    const early = planReplay(fulls, sets, { time: 1500 });
    expect(early.base.id).toBe('f1');
    expect(early.sets.map((s) => s.id)).toEqual(['a']);
  });

  test('a revision is reached the same way', () => {
    const p = planReplay(fulls, sets, { revision: 205 });
    expect(p.base.id).toBe('f2');
    expect(p.untilRevision).toBe(205);
    expect(p.sets.map((s) => s.id)).toEqual(['b']);
  });

  test('"latest" is the furthest revision stored', () => {
    const p = planReplay(fulls, sets, 'latest');
    expect(p.base.id).toBe('f2');
    expect(p.untilRevision).toBe(250);
  });

  test('a time after the last stored change, before the first backup, or in a gap is refused with what can be restored', () => {
    expect(() => planReplay(fulls, sets, { time: 5000 })).toThrow(/1970-01-01T00:00:05Z cannot be restored to.*Restorable: 1970-01-01T00:00:01Z – 1970-01-01T00:00:04Z/);
    expect(() => planReplay(fulls, sets, { time: 500 })).toThrow(/cannot be restored to/);
    expect(() => planReplay([full('f1', 100, 1000), full('f3', 400, 6000)], [set('a', 101, 150, 1100, 2000)], { time: 4000 }))
      .toThrow(/Restorable: .*00:00:01Z – .*00:00:02Z, .*00:00:06Z – .*00:00:06Z/);
  });

  test('no full backup with a recorded revision: says why', () => {
    expect(() => planReplay([], sets, 'latest')).toThrow(/no full backup with a recorded etcd revision/);
  });
});

describe('expiredChangeSets', () => {
  test('the sets that end at or before the oldest kept full backup go; one that reaches past it stays (it continues that backup)', () => {
    const sets = [set('a', 101, 150, 1100, 2000), set('b', 151, 210, 2100, 3500), set('c', 211, 250, 3600, 4000)];
    expect(expiredChangeSets([full('f2', 200, 3000)], sets).map((s) => s.id)).toEqual(['a']);
    expect(expiredChangeSets([full('f2', 210, 3000), full('f3', 240, 3800)], sets).map((s) => s.id)).toEqual(['a', 'b']);
  });
  test('no full backup kept: nothing is forgotten (a chain may still be started from one being taken)', () => {
    expect(expiredChangeSets([], [set('a', 101, 150, 1100, 2000)])).toEqual([]);
  });
});
