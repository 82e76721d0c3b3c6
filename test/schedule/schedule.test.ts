import { describe, expect, test } from 'bun:test';
import { ScheduleError, cronFor, dueSlot, parseSchedule } from '../../src/schedule/schedule.ts';

const t = (iso: string) => new Date(iso);

describe('parseSchedule', () => {
  test.each(['*/10 * * * *', '@hourly', '@daily', '@weekly', '@monthly', '@yearly', '0 3 * * 1-5'])('accepts %s', (s) => {
    expect(() => parseSchedule(s)).not.toThrow();
  });

  test.each([
    ['61 * * * *', 'invalid schedule "61 * * * *": Invalid value for minute: 61'],
    ['*/0 * * * *', 'invalid schedule'],
    ['* * * * * *', 'requires exactly 5 parts'],
    ['0 0 31 2 *', 'schedule "0 0 31 2 *" never fires'],
    ['', 'invalid schedule'],
  ])('rejects %s with a clear message', (s, msg) => {
    expect(() => parseSchedule(s)).toThrow(ScheduleError);
    expect(() => parseSchedule(s)).toThrow(msg);
  });

  test.each([
    ['@every 5m', 'invalid schedule "@every 5m": @every is not supported; write a cron expression instead, "*/5 * * * *" (every 5 minutes)'],
    ['@every 1m', '"* * * * *" (every minute)'],
    ['@every 30s', '"* * * * *" (every minute, the most often a schedule fires)'],
    ['@every 1h', '"0 * * * *" (every hour, or @hourly)'],
    ['@every 6h', '"0 */6 * * *" (every 6 hours)'],
    ['@every 24h', '"0 0 * * *" (every day at midnight, or @daily)'],
    ['@every 168h', '"0 0 * * 0" (every Sunday at midnight, or @weekly)'],
    ['@every 90m', 'write a cron expression instead, e.g. "*/5 * * * *" for every 5 minutes (fields: minute hour day-of-month month day-of-week)'],
    ['@every 7m', 'e.g. "*/5 * * * *" for every 5 minutes'],
    ['@every soon', 'e.g. "*/5 * * * *" for every 5 minutes'],
  ])('%s says it is not supported and what to write instead', (s, msg) => {
    expect(() => parseSchedule(s)).toThrow(ScheduleError);
    expect(() => parseSchedule(s)).toThrow(msg);
    expect(() => parseSchedule(s)).toThrow(`invalid schedule "${s}": @every is not supported; write a cron expression instead`);
  });

  test('every suggested expression is itself a valid schedule', () => {
    for (const interval of ['5m', '1m', '30s', '1h', '6h', '24h', '168h']) {
      const suggested = /^"([^"]+)"/.exec(cronFor(interval))?.[1];
      expect(suggested).toBeDefined();
      expect(() => parseSchedule(suggested!)).not.toThrow();
    }
  });

  test('rejects an unknown time zone and honours a real one', () => {
    expect(() => parseSchedule('0 2 * * *', 'Mars/Base')).toThrow('invalid time zone "Mars/Base"');
    const berlin = parseSchedule('0 2 * * *', 'Europe/Berlin');
    expect(berlin.next(t('2026-11-25T00:00:00Z')).toISOString()).toBe('2026-11-25T01:00:00.000Z');
  });

  test('next and last fire times', () => {
    const s = parseSchedule('*/10 * * * *');
    expect(s.next(t('2026-11-25T05:07:30Z')).toISOString()).toBe('2026-11-25T05:10:00.000Z');
    expect(s.lastAtOrBefore(t('2026-11-25T05:07:30Z'), t('2026-11-25T00:00:00Z'))?.toISOString()).toBe('2026-11-25T05:00:00.000Z');
    // A slot exactly now counts.
    expect(s.lastAtOrBefore(t('2026-11-25T05:10:00Z'), t('2026-11-25T00:00:00Z'))?.toISOString()).toBe('2026-11-25T05:10:00.000Z');
  });
});

describe('dueSlot', () => {
  const s = parseSchedule('*/10 * * * *');

  test('nothing is due before the first slot after creation', () => {
    expect(dueSlot({ schedule: s, now: t('2026-11-25T05:07:00Z'), suspended: false, lastServed: t('2026-11-25T05:01:00Z') })).toBeUndefined();
  });

  test('a slot that passed since the last served one is due', () => {
    expect(dueSlot({ schedule: s, now: t('2026-11-25T05:10:02Z'), suspended: false, lastServed: t('2026-11-25T05:00:00Z') })?.toISOString())
      .toBe('2026-11-25T05:10:00.000Z');
  });

  test('the slot already served is not due again', () => {
    expect(dueSlot({ schedule: s, now: t('2026-11-25T05:15:00Z'), suspended: false, lastServed: t('2026-11-25T05:10:00Z') })).toBeUndefined();
  });

  test('after an outage over many slots, exactly one catch-up: the most recent slot', () => {
    const due = dueSlot({ schedule: s, now: t('2026-11-26T09:03:00Z'), suspended: false, lastServed: t('2026-11-25T05:10:00Z') });
    expect(due?.toISOString()).toBe('2026-11-26T09:00:00.000Z');
    expect(dueSlot({ schedule: s, now: t('2026-11-26T09:03:00Z'), suspended: false, lastServed: due! })).toBeUndefined();
  });

  test('a suspended policy is never due', () => {
    expect(dueSlot({ schedule: s, now: t('2026-11-25T05:10:02Z'), suspended: true, lastServed: t('2026-11-25T05:00:00Z') })).toBeUndefined();
  });
});
