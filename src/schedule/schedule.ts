/**
 * @module Schedules, with croner: parse and validate a policy's cron expression, find when it next fires, and decide
 * whether a backup is due now. Pure: the caller passes the time, so tests need no clock.
 */
import { Cron } from 'croner';

export class ScheduleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScheduleError';
  }
}

export interface Schedule {
  /** The next fire time strictly after `after`. */
  next(after: Date): Date;
  /** The most recent fire time at or before `at`, or undefined if none since `since`. */
  lastAtOrBefore(at: Date, since: Date): Date | undefined;
}

/**
 * Parses a CronJob-style schedule (5 fields, or @hourly, @daily, @weekly, @monthly, @yearly) in an optional IANA time
 * zone. Throws ScheduleError when it is invalid or never fires (e.g. `0 0 31 2 *`).
 */
export function parseSchedule(expr: string, timeZone?: string): Schedule {
  let cron: Cron;
  try {
    cron = new Cron(expr.trim(), { paused: true, mode: '5-part', timezone: timeZone || undefined });
  } catch (err) {
    throw new ScheduleError(`invalid schedule "${expr}": ${cleanMessage(err)}`);
  }
  let first: Date | null;
  try {
    // A bad time zone surfaces only when a time is computed.
    first = cron.nextRun(new Date());
  } catch (err) {
    throw new ScheduleError(`invalid time zone "${timeZone}": use an IANA name such as Europe/Berlin`);
  }
  if (!first) throw new ScheduleError(`schedule "${expr}" never fires`);
  return {
    next: (after) => cron.nextRun(after) ?? first,
    lastAtOrBefore: (at, since) => {
      // previousRuns excludes its reference instant; a slot exactly at `at` counts as at-or-before.
      const [prev] = cron.previousRuns(1, new Date(at.getTime() + 1));
      return prev && prev.getTime() > since.getTime() ? prev : undefined;
    },
  };
}

function cleanMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/^CronPattern:\s*/, '');
}

export interface DueInput {
  schedule: Schedule;
  now: Date;
  suspended: boolean;
  /** The slot last served (run or skipped), or when the policy was created if never. */
  lastServed: Date;
}

/**
 * The scheduled slot a backup is due for, if any: the most recent fire time after the last served one. After an
 * outage that covers many slots, this is still one slot, so there is at most one catch-up backup.
 */
export function dueSlot({ schedule, now, suspended, lastServed }: DueInput): Date | undefined {
  if (suspended) return undefined;
  return schedule.lastAtOrBefore(now, lastServed);
}
