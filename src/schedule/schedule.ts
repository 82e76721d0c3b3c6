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
 * zone. Throws ScheduleError when it is invalid or never fires (e.g. `0 0 31 2 *`). `@every 5m` (robfig/cron, which Go
 * tools accept) is refused with the cron expression to write instead.
 */
export function parseSchedule(expr: string, timeZone?: string): Schedule {
  const every = /^@every\s+(\S+)$/.exec(expr.trim());
  if (every) throw new ScheduleError(`invalid schedule "${expr}": @every is not supported; write a cron expression instead, ${cronFor(every[1]!)}`);
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

const GENERIC_ADVICE = 'e.g. "*/5 * * * *" for every 5 minutes (fields: minute hour day-of-month month day-of-week)';

/**
 * The cron expression that fires as `@every <interval>` (a Go duration, as robfig/cron takes it) would, with its
 * meaning; a general example when cron cannot repeat at that interval (it counts within the hour and the day).
 */
export function cronFor(interval: string): string {
  const unit: Record<string, number> = { h: 3600, m: 60, s: 1 };
  const parts = [...interval.matchAll(/(\d+)(h|m|s)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== interval) return GENERIC_ADVICE;
  const secs = parts.reduce((sum, p) => sum + Number(p[1]) * (unit[p[2]!] ?? 0), 0);
  const minutes = secs / 60;
  const hours = minutes / 60;
  if (secs < 60) return '"* * * * *" (every minute, the most often a schedule fires)';
  if (Number.isInteger(minutes) && minutes < 60 && 60 % minutes === 0) {
    return minutes === 1 ? '"* * * * *" (every minute)' : `"*/${minutes} * * * *" (every ${minutes} minutes)`;
  }
  if (Number.isInteger(hours) && hours < 24 && 24 % hours === 0) {
    return hours === 1 ? '"0 * * * *" (every hour, or @hourly)' : `"0 */${hours} * * *" (every ${hours} hours)`;
  }
  if (hours === 24) return '"0 0 * * *" (every day at midnight, or @daily)';
  if (hours === 24 * 7) return '"0 0 * * 0" (every Sunday at midnight, or @weekly)';
  return GENERIC_ADVICE;
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
