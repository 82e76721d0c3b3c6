/**
 * @module What a policy's full backups and change sets let one restore to, and how to get there. A chain is a full
 * backup followed by change sets whose revisions continue it without a hole; it can restore any time from the full
 * backup's to its last stored change. Where no chain reaches is a gap, and a restore to a time inside one is refused,
 * never silently answered with the nearest state. Pure functions.
 */
import { EngineError } from '../errors.ts';
import type { ChangeSet, FullBackup } from './change-store.ts';

export interface Chain {
  base: FullBackup;
  /** The change sets that continue it, in revision order (the first may start before the base's revision). */
  sets: ChangeSet[];
  /** The last revision and time it reaches (the base's own when no change set continues it). */
  toRevision: number;
  toTime: number;
}

/** The chain of every full backup (oldest first). */
export function chains(fulls: readonly FullBackup[], sets: readonly ChangeSet[]): Chain[] {
  const ordered = [...sets].sort((a, b) => a.fromRevision - b.fromRevision || a.toRevision - b.toRevision);
  return [...fulls].sort((a, b) => a.revision - b.revision).map((base) => {
    let next = base.revision + 1;
    let toTime = base.time;
    const taken: ChangeSet[] = [];
    for (const set of ordered) {
      if (set.toRevision < next) continue;
      if (set.fromRevision > next) break;
      taken.push(set);
      next = set.toRevision + 1;
      toTime = Math.max(toTime, set.toTime);
    }
    return { base, sets: taken, toRevision: next - 1, toTime };
  });
}

/** A stretch of time any second of which can be restored to. */
export interface Window {
  fromTime: number;
  toTime: number;
}

/** The restorable windows (merged, oldest first) and the gaps between them. */
export function restorableWindows(fulls: readonly FullBackup[], sets: readonly ChangeSet[]): { windows: Window[]; gaps: Window[] } {
  const spans = chains(fulls, sets).map((c) => ({ fromTime: c.base.time, toTime: c.toTime })).sort((a, b) => a.fromTime - b.fromTime);
  const windows: Window[] = [];
  for (const s of spans) {
    const last = windows.at(-1);
    if (last && s.fromTime <= last.toTime) last.toTime = Math.max(last.toTime, s.toTime);
    else windows.push({ ...s });
  }
  const gaps = windows.slice(1).map((w, i) => ({ fromTime: windows[i]!.toTime, toTime: w.fromTime }));
  return { windows, gaps };
}

/** Where to restore to: a time (ms since the epoch), a revision, or the last stored change. */
export type PointInTime = { time: number } | { revision: number } | 'latest';

export interface ReplayPlan {
  base: FullBackup;
  /** The change sets to read, in order (possibly none). */
  sets: ChangeSet[];
  /** Apply revisions up to this one (inclusive) and received at or before `untilTime`. */
  untilRevision: number;
  untilTime: number;
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Picks the chain that reaches `target` from the newest full backup before it; throws naming the nearest choices. */
export function planReplay(fulls: readonly FullBackup[], sets: readonly ChangeSet[], target: PointInTime): ReplayPlan {
  const all = chains(fulls, sets);
  if (all.length === 0) {
    throw new EngineError('NotFound', 'no full backup with a recorded etcd revision: a point-in-time restore starts from one ' +
      '(backups taken before continuous backup was enabled do not record it)');
  }
  const reaching = (c: Chain): boolean => target === 'latest' ? true
    : 'time' in target ? c.base.time <= target.time && target.time <= c.toTime
      : c.base.revision <= target.revision && target.revision <= c.toRevision;
  const candidates = all.filter(reaching);
  const pick = target === 'latest'
    // The chain that reaches furthest; of those, the one with the newest full backup (less to replay).
    ? [...all].sort((a, b) => b.toRevision - a.toRevision || b.base.revision - a.base.revision)[0]
    : candidates.sort((a, b) => b.base.revision - a.base.revision)[0];
  if (!pick) {
    const { windows } = restorableWindows(fulls, sets);
    const spans = windows.map((w) => `${iso(w.fromTime)} – ${iso(w.toTime)}`).join(', ');
    const what = target === 'latest' ? 'the latest point' : 'time' in target ? iso(target.time) : `revision ${target.revision}`;
    throw new EngineError('NotFound', `${what} cannot be restored to: no full backup with continuous changes reaches it. ` +
      `Restorable: ${spans}`);
  }
  const untilRevision = target !== 'latest' && 'revision' in target ? target.revision : pick.toRevision;
  const untilTime = target !== 'latest' && 'time' in target ? target.time : Number.MAX_SAFE_INTEGER;
  const setsNeeded = pick.sets.filter((s) => s.fromRevision <= untilRevision && s.fromTime <= untilTime);
  return { base: pick.base, sets: setsNeeded, untilRevision, untilTime };
}

/**
 * The change sets no chain can use any more: those that end at or before the oldest full backup's revision (retention
 * of full backups decides how far back a restore reaches; their changes go with them).
 */
export function expiredChangeSets(fulls: readonly FullBackup[], sets: readonly ChangeSet[]): ChangeSet[] {
  const oldest = fulls.reduce<FullBackup | undefined>((a, f) => (!a || f.revision < a.revision ? f : a), undefined);
  if (!oldest) return [];
  return sets.filter((s) => s.toRevision <= oldest.revision);
}
