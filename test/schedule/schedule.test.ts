import { describe, expect, test } from 'bun:test';
import { ScheduleError, dueSlot, parseSchedule } from '../../src/schedule/schedule.ts';

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
