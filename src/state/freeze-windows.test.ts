import { describe, expect, it } from 'vitest';
import { WEEKDAYS, WindowSchedule, instantOfWallClock, parseIsoWithOffset, parseTimeOfDay } from './freeze-windows.js';
import type { FreezeWindow, Weekday } from './freeze-windows.js';

function weekly(timezone: string, days: Weekday[], start: string, end: string, agents: string[] | null = null): FreezeWindow {
  return { name: 'w', reason: 'scheduled', agents, weekly: { days, start, end, timezone } };
}

/** [since, until] of the occurrences in force, as ISO strings. */
function active(window: FreezeWindow, at: string): [string, string][] {
  return new WindowSchedule([window]).activeAt(Date.parse(at)).map((occ) => [occ.sinceIso, occ.untilIso]);
}

describe('weekly windows', () => {
  // 2026: Europe/Berlin springs forward Sun 29 March 02:00 CET -> 03:00 CEST (01:00Z)
  // and falls back Sun 25 October 03:00 CEST -> 02:00 CET (01:00Z); America/New_York
  // springs forward Sun 8 March 02:00 EST -> 03:00 EDT (07:00Z) and falls back
  // Sun 1 November 02:00 EDT -> 01:00 EST (06:00Z).
  const cases: [label: string, window: FreezeWindow, at: string, expected: [string, string] | null][] = [
    // Weekdays, UTC.
    ['UTC weekday, inside', weekly('UTC', ['mon', 'tue', 'wed', 'thu', 'fri'], '09:00', '17:00'), '2026-06-03T12:00:00Z', ['2026-06-03T09:00:00.000Z', '2026-06-03T17:00:00.000Z']],
    ['UTC weekday, at start (inclusive)', weekly('UTC', ['wed'], '09:00', '17:00'), '2026-06-03T09:00:00.000Z', ['2026-06-03T09:00:00.000Z', '2026-06-03T17:00:00.000Z']],
    ['UTC weekday, a millisecond before start', weekly('UTC', ['wed'], '09:00', '17:00'), '2026-06-03T08:59:59.999Z', null],
    ['UTC weekday, at end (exclusive)', weekly('UTC', ['wed'], '09:00', '17:00'), '2026-06-03T17:00:00.000Z', null],
    ['UTC weekday, a millisecond before end', weekly('UTC', ['wed'], '09:00', '17:00'), '2026-06-03T16:59:59.999Z', ['2026-06-03T09:00:00.000Z', '2026-06-03T17:00:00.000Z']],
    ['UTC, day not listed', weekly('UTC', ['mon', 'tue', 'thu', 'fri'], '09:00', '17:00'), '2026-06-03T12:00:00Z', null],
    ['UTC, Sunday is the last weekday', weekly('UTC', ['sun'], '00:00', '01:00'), '2026-06-07T00:30:00Z', ['2026-06-07T00:00:00.000Z', '2026-06-07T01:00:00.000Z']],
    // Crossing midnight: belongs to the day it starts on.
    ['crossing midnight, evening of a listed day', weekly('UTC', ['fri'], '22:00', '06:00'), '2026-06-05T23:00:00Z', ['2026-06-05T22:00:00.000Z', '2026-06-06T06:00:00.000Z']],
    ['crossing midnight, morning after a listed day', weekly('UTC', ['fri'], '22:00', '06:00'), '2026-06-06T05:59:00Z', ['2026-06-05T22:00:00.000Z', '2026-06-06T06:00:00.000Z']],
    ['crossing midnight, morning of a listed day (started the day before, unlisted)', weekly('UTC', ['fri'], '22:00', '06:00'), '2026-06-05T03:00:00Z', null],
    ['crossing midnight, evening of an unlisted day', weekly('UTC', ['fri'], '22:00', '06:00'), '2026-06-06T22:30:00Z', null],
    ['crossing midnight, sun into mon', weekly('UTC', ['sun'], '20:00', '02:00'), '2026-06-08T01:00:00Z', ['2026-06-07T20:00:00.000Z', '2026-06-08T02:00:00.000Z']],
    ['end = start: a whole day', weekly('UTC', ['wed'], '00:00', '00:00'), '2026-06-03T23:59:59Z', ['2026-06-03T00:00:00.000Z', '2026-06-04T00:00:00.000Z']],
    ['end = start at noon: noon to noon', weekly('UTC', ['wed'], '12:00', '12:00'), '2026-06-04T11:00:00Z', ['2026-06-03T12:00:00.000Z', '2026-06-04T12:00:00.000Z']],
    // Time zones, ordinary days.
    ['Berlin in summer (UTC+2)', weekly('Europe/Berlin', ['fri'], '16:00', '23:00'), '2026-07-03T14:00:00Z', ['2026-07-03T14:00:00.000Z', '2026-07-03T21:00:00.000Z']],
    ['Berlin in summer, before local start', weekly('Europe/Berlin', ['fri'], '16:00', '23:00'), '2026-07-03T13:59:00Z', null],
    ['Berlin in winter (UTC+1)', weekly('Europe/Berlin', ['fri'], '16:00', '23:00'), '2026-01-09T15:00:00Z', ['2026-01-09T15:00:00.000Z', '2026-01-09T22:00:00.000Z']],
    ['Berlin: local Saturday while UTC is still Friday', weekly('Europe/Berlin', ['sat'], '00:00', '06:00'), '2026-07-03T22:30:00Z', ['2026-07-03T22:00:00.000Z', '2026-07-04T04:00:00.000Z']],
    ['New York: local Friday evening is UTC Saturday', weekly('America/New_York', ['fri'], '22:00', '06:00'), '2026-06-06T03:00:00Z', ['2026-06-06T02:00:00.000Z', '2026-06-06T10:00:00.000Z']],
    ['New York: UTC Saturday morning, local still Friday night', weekly('America/New_York', ['sat'], '22:00', '06:00'), '2026-06-06T03:00:00Z', null],
    ['Kolkata (UTC+5:30)', weekly('Asia/Kolkata', ['mon'], '09:30', '10:00'), '2026-06-01T04:15:00Z', ['2026-06-01T04:00:00.000Z', '2026-06-01T04:30:00.000Z']],
    // DST switch dates.
    ['Berlin spring forward: a 3-hour window lasts 2 hours', weekly('Europe/Berlin', ['sun'], '01:00', '04:00'), '2026-03-29T01:30:00Z', ['2026-03-29T00:00:00.000Z', '2026-03-29T02:00:00.000Z']],
    ['Berlin spring forward: start in the gap begins at the switch', weekly('Europe/Berlin', ['sun'], '02:30', '04:00'), '2026-03-29T01:00:00Z', ['2026-03-29T01:00:00.000Z', '2026-03-29T02:00:00.000Z']],
    ['Berlin spring forward: start in the gap, just before the switch', weekly('Europe/Berlin', ['sun'], '02:30', '04:00'), '2026-03-29T00:59:59Z', null],
    ['Berlin spring forward: end in the gap ends at the switch', weekly('Europe/Berlin', ['sun'], '01:00', '02:30'), '2026-03-29T00:59:00Z', ['2026-03-29T00:00:00.000Z', '2026-03-29T01:00:00.000Z']],
    ['Berlin spring forward: a window wholly in the gap does not happen', weekly('Europe/Berlin', ['sun'], '02:10', '02:50'), '2026-03-29T01:00:00Z', null],
    ['Berlin fall back: a 3-hour window lasts 4 hours', weekly('Europe/Berlin', ['sun'], '01:00', '04:00'), '2026-10-25T02:30:00Z', ['2026-10-24T23:00:00.000Z', '2026-10-25T03:00:00.000Z']],
    ['Berlin fall back: a window inside the repeated hour covers both passes', weekly('Europe/Berlin', ['sun'], '02:30', '02:45'), '2026-10-25T01:10:00Z', ['2026-10-25T00:30:00.000Z', '2026-10-25T01:45:00.000Z']],
    ['New York spring forward, crossing midnight Sat -> Sun: 7 hours', weekly('America/New_York', ['sat'], '22:00', '06:00'), '2026-03-08T09:59:00Z', ['2026-03-08T03:00:00.000Z', '2026-03-08T10:00:00.000Z']],
    ['New York spring forward, the end is exclusive', weekly('America/New_York', ['sat'], '22:00', '06:00'), '2026-03-08T10:00:00Z', null],
    ['New York fall back, crossing midnight Sat -> Sun: 9 hours', weekly('America/New_York', ['sat'], '22:00', '06:00'), '2026-11-01T10:30:00Z', ['2026-11-01T02:00:00.000Z', '2026-11-01T11:00:00.000Z']],
    ['New York fall back: start in the repeated hour takes the first pass', weekly('America/New_York', ['sun'], '01:30', '03:00'), '2026-11-01T05:30:00Z', ['2026-11-01T05:30:00.000Z', '2026-11-01T08:00:00.000Z']],
    ['New York, the day after a switch is ordinary', weekly('America/New_York', ['mon'], '09:00', '17:00'), '2026-03-09T13:00:00Z', ['2026-03-09T13:00:00.000Z', '2026-03-09T21:00:00.000Z']],
  ];

  it.each(cases)('%s', (_label, window, at, expected) => {
    expect(active(window, at)).toEqual(expected === null ? [] : [expected]);
  });

  /** The rule in words, computed with a formatter of its own: local weekday and time in [start, end) on a listed day. */
  function localRule(timeZone: string, days: Weekday[], start: string, end: string): (instant: number) => boolean {
    const fmt = new Intl.DateTimeFormat('en-GB', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    const names = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
    const startMin = parseTimeOfDay(start)!;
    const endMin = parseTimeOfDay(end)!;
    return (instant) => {
      const parts = Object.fromEntries(fmt.formatToParts(instant).map((p) => [p.type, p.value]));
      const day = names.indexOf(parts.weekday!);
      const minute = Number(parts.hour) * 60 + Number(parts.minute);
      const listed = (d: number): boolean => days.includes(WEEKDAYS[(d + 7) % 7]!);
      if (endMin > startMin) return listed(day) && minute >= startMin && minute < endMin;
      return (listed(day) && minute >= startMin) || (listed(day - 1) && minute < endMin);
    };
  }

  const sweeps: [timeZone: string, from: string, days: Weekday[], start: string, end: string][] = [
    ['Europe/Berlin', '2026-03-23T00:00:00Z', ['fri', 'sat', 'sun'], '22:30', '03:15'],
    ['Europe/Berlin', '2026-10-19T00:00:00Z', ['sun', 'mon'], '01:00', '05:00'],
    ['America/New_York', '2026-03-02T00:00:00Z', ['sat', 'sun'], '23:00', '04:00'],
    ['America/New_York', '2026-10-26T00:00:00Z', ['mon', 'tue', 'wed', 'thu', 'fri'], '09:00', '17:30'],
    ['Australia/Lord_Howe', '2026-04-01T00:00:00Z', ['sat', 'sun'], '01:00', '03:00'], // a 30-minute DST shift
    ['UTC', '2026-06-01T00:00:00Z', ['mon', 'wed'], '18:45', '18:45'],
  ];

  it.each(sweeps)('%s from %s: every 5 minutes for two weeks agrees with local wall-clock time, away from a switch', (timeZone, from, days, start, end) => {
    const schedule = new WindowSchedule([weekly(timeZone, days, start, end)]);
    const rule = localRule(timeZone, days, start, end);
    const offsetFormat = new Intl.DateTimeFormat('en-US', { timeZone, timeZoneName: 'longOffset' });
    const offset = (t: number): string | undefined => offsetFormat.formatToParts(t).find((part) => part.type === 'timeZoneName')?.value;
    let checked = 0;
    let activeCount = 0;
    for (let t = Date.parse(from); t < Date.parse(from) + 14 * 86_400_000; t += 5 * 60_000) {
      if (offset(t - 3 * 3_600_000) !== offset(t + 3 * 3_600_000)) continue; // near a switch: the documented rule, tested above
      const occurrences = schedule.activeAt(t);
      expect(occurrences.length > 0, new Date(t).toISOString()).toBe(rule(t));
      for (const occ of occurrences) expect(occ.since <= t && t < occ.until).toBe(true);
      checked += 1;
      if (rule(t)) activeCount += 1;
    }
    expect(checked).toBeGreaterThan(3500);
    expect(activeCount).toBeGreaterThan(10);
  });

  it('answers correctly when the clock moves backwards (the per-minute cache is keyed, not sticky)', () => {
    const schedule = new WindowSchedule([weekly('UTC', ['wed'], '09:00', '17:00')]);
    const instants = ['2026-06-03T12:00:30Z', '2026-06-03T08:59:30Z', '2026-06-03T12:00:10Z', '2026-06-03T17:00:00Z', '2026-06-03T16:59:59Z'];
    expect(instants.map((at) => schedule.activeAt(Date.parse(at)).length)).toEqual([1, 0, 1, 0, 1]);
  });

  it('reports occurrences in config order, each window with its own agents', () => {
    const schedule = new WindowSchedule([
      { name: 'deploys', reason: 'deploy', agents: ['claude'], weekly: { days: ['wed'], start: '10:00', end: '11:00', timezone: 'UTC' } },
      { name: 'nights', reason: 'night', agents: null, weekly: { days: ['tue'], start: '20:00', end: '12:00', timezone: 'UTC' } },
      { name: 'later', reason: 'later', agents: null, weekly: { days: ['wed'], start: '11:00', end: '12:00', timezone: 'UTC' } },
    ]);
    expect(schedule.activeAt(Date.parse('2026-06-03T10:30:00Z')).map((occ) => [occ.window, occ.agents])).toEqual([
      ['deploys', ['claude']],
      ['nights', null],
    ]);
    expect(schedule.activeOf('nights', Date.parse('2026-06-03T10:30:00Z'))).toHaveLength(1);
    expect(schedule.activeOf('later', Date.parse('2026-06-03T10:30:00Z'))).toHaveLength(0);
    expect(schedule.has('later')).toBe(true);
    expect(schedule.has('never')).toBe(false);
  });
});

describe('date-range windows', () => {
  const release: FreezeWindow = { name: 'release', reason: 'year-end freeze', agents: null, from: '2026-12-24T18:00:00+01:00', to: '2027-01-02T08:00:00-05:00' };
  const cases: [at: string, expected: boolean][] = [
    ['2026-12-24T16:59:59.999Z', false],
    ['2026-12-24T17:00:00Z', true],
    ['2026-12-31T23:59:00Z', true],
    ['2027-01-02T12:59:59.999Z', true],
    ['2027-01-02T13:00:00Z', false],
  ];
  it.each(cases)('at %s: %s', (at, expected) => {
    expect(active(release, at)).toEqual(expected ? [['2026-12-24T17:00:00.000Z', '2027-01-02T13:00:00.000Z']] : []);
  });
});

describe('window validation', () => {
  const base = { name: 'nightly', reason: 'night', agents: null };
  const week = { days: ['mon'] as Weekday[], start: '22:00', end: '06:00', timezone: 'Europe/Berlin' };
  const cases: [label: string, window: FreezeWindow, message: RegExp][] = [
    ['unknown time zone', { ...base, weekly: { ...week, timezone: 'Europe/Berln' } }, /time zone "Europe\/Berln" is unknown/],
    ['empty time zone', { ...base, weekly: { ...week, timezone: '' } }, /time zone/],
    ['start not HH:MM', { ...base, weekly: { ...week, start: '7:00' } }, /start "7:00"/],
    ['start hour 24', { ...base, weekly: { ...week, start: '24:00' } }, /start "24:00"/],
    ['end minute 60', { ...base, weekly: { ...week, end: '06:60' } }, /end "06:60"/],
    ['no days', { ...base, weekly: { ...week, days: [] } }, /no days/],
    ['unknown day', { ...base, weekly: { ...week, days: ['monday' as Weekday] } }, /"monday" is not a day/],
    ['empty agents list', { ...base, agents: [], weekly: week }, /freeze nobody/],
    ['from = to', { ...base, from: '2026-12-24T18:00:00+01:00', to: '2026-12-24T17:00:00Z' }, /is not before its to/],
    ['from after to', { ...base, from: '2027-01-02T00:00:00Z', to: '2026-12-24T00:00:00Z' }, /is not before its to/],
    ['from without offset', { ...base, from: '2026-12-24T18:00:00', to: '2027-01-02T00:00:00Z' }, /from "2026-12-24T18:00:00" is not an ISO 8601/],
    ['to not a date', { ...base, from: '2026-12-24T18:00:00Z', to: 'next week' }, /to "next week"/],
    ['to on 30 February', { ...base, from: '2026-01-24T18:00:00Z', to: '2026-02-30T00:00:00Z' }, /to "2026-02-30T00:00:00Z"/],
  ];
  it.each(cases)('%s is refused, naming the window', (_label, window, message) => {
    const build = (): WindowSchedule => new WindowSchedule([{ name: 'fine', reason: 'ok', agents: null, weekly: week }, window]);
    expect(build).toThrow(/Freeze window "nightly"/);
    expect(build).toThrow(message);
  });

  it('refuses a duplicate name and a missing one', () => {
    const window: FreezeWindow = { ...base, weekly: week };
    expect(() => new WindowSchedule([window, window])).toThrow(/"nightly" is defined twice/);
    expect(() => new WindowSchedule([{ ...window, name: '' }])).toThrow(/has no name/);
  });

  it('accepts the valid forms', () => {
    expect(() => new WindowSchedule([])).not.toThrow();
    expect(
      () =>
        new WindowSchedule([
          { ...base, name: 'a', weekly: { ...week, timezone: 'UTC', start: '00:00', end: '23:59' } },
          { ...base, name: 'b', agents: ['claude'], from: '2026-12-24T18:00:00.5+01:00', to: '2026-12-24T18:00:01Z' },
        ]),
    ).not.toThrow();
  });
});

describe('time parsing', () => {
  it('reads HH:MM and ISO 8601 with an offset only', () => {
    expect(['00:00', '09:05', '23:59', '24:00', '9:05', '09:5', ' 09:05'].map(parseTimeOfDay)).toEqual([0, 545, 1439, null, null, null, null]);
    expect(parseIsoWithOffset('2026-03-29T02:30:00+02:00')).toBe(Date.UTC(2026, 2, 29, 0, 30));
    expect(parseIsoWithOffset('2026-03-29T02:30Z')).toBe(Date.UTC(2026, 2, 29, 2, 30));
    expect(parseIsoWithOffset('2026-03-29T02:30:00')).toBeNull();
    expect(parseIsoWithOffset('2026-03-29')).toBeNull();
    expect(parseIsoWithOffset('2026-13-01T00:00:00Z')).toBeNull();
  });

  it('turns a wall-clock time into an instant by the documented DST rule', () => {
    const wall = (iso: string): number => Date.parse(iso + 'Z');
    const at = (iso: string, pick: 'earliest' | 'latest'): string => new Date(instantOfWallClock(wall(iso), 'America/New_York', pick)).toISOString();
    expect(at('2026-11-01T01:30:00', 'earliest')).toBe('2026-11-01T05:30:00.000Z'); // EDT
    expect(at('2026-11-01T01:30:00', 'latest')).toBe('2026-11-01T06:30:00.000Z'); // EST
    expect(at('2026-03-08T02:30:00', 'earliest')).toBe('2026-03-08T07:00:00.000Z'); // in the gap: the switch
    expect(at('2026-03-08T02:30:00', 'latest')).toBe('2026-03-08T07:00:00.000Z');
    expect(at('2026-06-01T12:00:00', 'latest')).toBe('2026-06-01T16:00:00.000Z');
  });
});
