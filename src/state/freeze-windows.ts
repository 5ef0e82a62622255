/**
 * Scheduled freeze windows from the config: validation, and which occurrences
 * are in force at an instant. Pure maths on instants and the time zone data
 * of `Intl` (no dependency); `freeze-store.ts` adds the state (manual freezes,
 * windows ended early) on top.
 *
 * A weekly window is read in local time: it is active at an instant when that
 * instant's local weekday and time fall in [start, end) on a listed day; a
 * window whose end is not after its start (end <= start) crosses midnight and
 * belongs to the day it starts on. Each occurrence is computed as an instant
 * range [since, until), which is what the store and `airlock status` report.
 *
 * Daylight saving time. A wall-clock time can happen never (the spring-forward
 * gap) or twice (the fall-back overlap) on a switch day. The rule here errs on
 * the side of freezing, since a freeze is absolute (DESIGN.md, non-negotiable 4):
 * - a start or end in a gap resolves to the instant of the switch, the first
 *   instant whose local time is past it. So 02:30-04:00 in Europe/Berlin on a
 *   spring-forward day runs from 03:00 (new time) to 04:00, and a window lying
 *   wholly in the gap does not happen that day;
 * - in an overlap, a start resolves to the earlier of the two instants and an
 *   end to the later one, so the occurrence covers every instant whose local
 *   time lies in the window (and the stretch between, for a window that sits
 *   inside the repeated hour): it may last an hour longer, never shorter.
 * On ordinary days both rules reduce to "the local wall-clock times".
 * In the rare overlap where two occurrences of one window overlap (a 24-hour
 * window whose boundary sits in a repeated hour), both are reported.
 */

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** A scheduled freeze window from the config. Either weekly (local time in an IANA time zone; end may be earlier than start = crosses midnight) or a fixed date range. */
export type FreezeWindow =
  | {
      name: string;
      reason: string;
      agents: string[] | null /* null = all */;
      weekly: { days: Weekday[]; start: string /* 'HH:MM' */; end: string /* 'HH:MM' */; timezone: string };
    }
  | { name: string; reason: string; agents: string[] | null; from: string /* ISO 8601 with offset */; to: string };

/** One occurrence of a window, in force over [since, until) (milliseconds since the epoch). */
export interface WindowOccurrence {
  readonly window: string;
  readonly reason: string;
  /** null: every agent. */
  readonly agents: readonly string[] | null;
  readonly since: number;
  readonly until: number;
  /** `since` and `until` as ISO strings (UTC), computed once. */
  readonly sinceIso: string;
  readonly untilIso: string;
}

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
const HH_MM = /^([01][0-9]|2[0-3]):([0-5][0-9])$/;
const ISO_WITH_OFFSET = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-](\d{2}):(\d{2}))$/i;

/** Minutes since midnight of an 'HH:MM' string, or null if it is not one. */
export function parseTimeOfDay(text: string): number | null {
  const m = HH_MM.exec(text);
  return m ? Number(m[1]) * 60 + Number(m[2]) : null;
}

/** The instant of an ISO 8601 date-time that carries an offset (or Z), or null: without an offset the time would depend on the host's zone. */
export function parseIsoWithOffset(text: string): number | null {
  const m = ISO_WITH_OFFSET.exec(text);
  if (!m) return null;
  const [year, month, day, hour, minute, second, offH, offM] = m.slice(1).map((part) => (part === undefined ? 0 : Number(part))) as number[];
  // Date.parse accepts 2026-02-30 (as 2 March): check the calendar ourselves.
  const daysInMonth = new Date(Date.UTC(year!, month!, 0)).getUTCDate();
  if (month! < 1 || month! > 12 || day! < 1 || day! > daysInMonth || hour! > 23 || minute! > 59 || second! > 59 || offH! > 23 || offM! > 59) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** A formatter giving local calendar fields in a zone; throws RangeError for a zone Intl does not know. Cached: building one costs far more than using it. */
function zoneFormatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      // h23, not hour12: false, which some ICU versions render as "24" at midnight.
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
      numberingSystem: 'latn',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** Whether Intl knows the time zone (an IANA name such as Europe/Berlin, or UTC). */
export function isKnownTimeZone(timeZone: string): boolean {
  if (timeZone.trim() === '') return false;
  try {
    zoneFormatter(timeZone);
    return true;
  } catch (err) {
    // Intl's way of saying "unknown zone"; anything else is not ours to hide.
    if (err instanceof RangeError) return false;
    throw err;
  }
}

/**
 * The local wall-clock time of an instant in a zone, as milliseconds "as if
 * UTC" (Date.UTC of the local fields), to the second. Local weekday and date
 * then come from the UTC getters of that number.
 */
export function wallClockAt(instant: number, timeZone: string): number {
  const fields = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
  for (const part of zoneFormatter(timeZone).formatToParts(instant)) {
    if (part.type in fields) fields[part.type as keyof typeof fields] = Number(part.value);
  }
  return Date.UTC(fields.year, fields.month - 1, fields.day, fields.hour, fields.minute, fields.second);
}

/** The zone's offset from UTC at an instant, in milliseconds (local = UTC + offset). */
function offsetAt(instant: number, timeZone: string): number {
  const whole = instant - (((instant % 1000) + 1000) % 1000);
  return wallClockAt(whole, timeZone) - whole;
}

/**
 * The instant a local wall-clock time (ms "as if UTC", whole seconds) names in
 * a zone, by the rule in this file's header: `earliest` or `latest` of the two
 * in an overlap, the switch instant in a gap.
 */
export function instantOfWallClock(wall: number, timeZone: string, pick: 'earliest' | 'latest'): number {
  // The offsets in force around the wall time: before and after any switch
  // near it (zones switch at most twice a year, never twice within two days).
  const offsets = new Set([offsetAt(wall - DAY_MS, timeZone), offsetAt(wall, timeZone), offsetAt(wall + DAY_MS, timeZone)]);
  const matches = [...offsets]
    .map((offset) => wall - offset)
    .filter((instant) => wallClockAt(instant, timeZone) === wall)
    .sort((a, b) => a - b);
  if (matches.length > 0) return pick === 'earliest' ? matches[0]! : matches[matches.length - 1]!;
  // A gap: no instant shows this wall time. Local time just before the switch
  // is below it and just after above it; find the switch to the second.
  let lo = wall - Math.max(...offsets); // local time here is before `wall`
  let hi = wall - Math.min(...offsets); // and here after it
  if (!(lo < hi)) return wall - offsetAt(wall, timeZone); // no switch nearby after all: cannot happen with real zone data
  lo = Math.floor(lo / 1000);
  hi = Math.ceil(hi / 1000);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (wallClockAt(mid * 1000, timeZone) >= wall) hi = mid;
    else lo = mid;
  }
  return hi * 1000;
}

/** A window checked and turned into numbers once, at start-up. */
interface CompiledWindow {
  readonly name: string;
  readonly reason: string;
  readonly agents: readonly string[] | null;
  /** Occurrences in force at an instant, earliest first. */
  activeAt(instant: number): readonly WindowOccurrence[];
}

function occurrence(window: { name: string; reason: string; agents: readonly string[] | null }, since: number, until: number): WindowOccurrence {
  return Object.freeze({
    window: window.name,
    reason: window.reason,
    agents: window.agents,
    since,
    until,
    sinceIso: new Date(since).toISOString(),
    untilIso: new Date(until).toISOString(),
  });
}

class WeeklyWindow implements CompiledWindow {
  /**
   * Whether the window is active can only change on a whole UTC minute (HH:MM
   * boundaries; zone offsets and switches are whole minutes), so the answer
   * for a minute is kept: the hot path then pays a number comparison, not
   * several Intl calls (~4 µs each).
   */
  private cachedMinute = Number.NaN;
  private cached: readonly WindowOccurrence[] = [];

  constructor(
    readonly name: string,
    readonly reason: string,
    readonly agents: readonly string[] | null,
    private readonly days: ReadonlySet<number>,
    private readonly start: number,
    private readonly end: number,
    private readonly timeZone: string,
  ) {}

  activeAt(instant: number): readonly WindowOccurrence[] {
    const minute = Math.floor(instant / MINUTE_MS);
    if (minute !== this.cachedMinute) {
      this.cached = this.computeActiveAt(minute * MINUTE_MS);
      this.cachedMinute = minute;
    }
    return this.cached;
  }

  private computeActiveAt(instant: number): readonly WindowOccurrence[] {
    const localDay = Math.floor(wallClockAt(instant, this.timeZone) / DAY_MS) * DAY_MS;
    const found: WindowOccurrence[] = [];
    // The day before (a window crossing midnight), the day itself, and the day
    // after (a start resolved into the previous local date by a switch at midnight).
    for (const day of [localDay - DAY_MS, localDay, localDay + DAY_MS]) {
      // getUTCDay: 0 = Sunday; WEEKDAYS starts on Monday.
      if (!this.days.has((new Date(day).getUTCDay() + 6) % 7)) continue;
      const since = instantOfWallClock(day + this.start * MINUTE_MS, this.timeZone, 'earliest');
      const endDay = this.end <= this.start ? day + DAY_MS : day;
      const until = instantOfWallClock(endDay + this.end * MINUTE_MS, this.timeZone, 'latest');
      if (since <= instant && instant < until) found.push(occurrence(this, since, until));
    }
    return found;
  }
}

class DateRangeWindow implements CompiledWindow {
  private readonly occurrences: readonly WindowOccurrence[];
  constructor(
    readonly name: string,
    readonly reason: string,
    readonly agents: readonly string[] | null,
    private readonly from: number,
    private readonly to: number,
  ) {
    this.occurrences = [occurrence(this, from, to)];
  }

  activeAt(instant: number): readonly WindowOccurrence[] {
    return this.from <= instant && instant < this.to ? this.occurrences : [];
  }
}

/** What is wrong with one window, in words, or null. */
function windowProblem(window: FreezeWindow): string | null {
  if (typeof window.reason !== 'string') return 'its reason must be a string.';
  if (window.agents !== null) {
    if (!Array.isArray(window.agents)) return 'its agents must be a list of agent names, or null for every agent.';
    if (window.agents.length === 0) return 'its agents list is empty, so it would freeze nobody; leave agents out to freeze every agent.';
    if (window.agents.some((agent) => typeof agent !== 'string' || agent === '')) return 'its agents must be non-empty agent names.';
  }
  if ('weekly' in window) {
    const { days, start, end, timezone } = window.weekly;
    if (!Array.isArray(days) || days.length === 0) return `it lists no days; name at least one of ${WEEKDAYS.join(', ')}.`;
    const unknown = days.find((day) => !(WEEKDAYS as readonly string[]).includes(day));
    if (unknown !== undefined) return `"${String(unknown)}" is not a day; use ${WEEKDAYS.join(', ')}.`;
    if (parseTimeOfDay(start) === null) return `its start "${start}" is not a time of day as HH:MM (00:00 to 23:59).`;
    if (parseTimeOfDay(end) === null) return `its end "${end}" is not a time of day as HH:MM (00:00 to 23:59); an end at midnight is 00:00.`;
    if (typeof timezone !== 'string' || !isKnownTimeZone(timezone)) return `its time zone "${String(timezone)}" is unknown; use an IANA name such as Europe/Berlin, America/New_York or UTC.`;
    return null;
  }
  const from = parseIsoWithOffset(window.from);
  const to = parseIsoWithOffset(window.to);
  if (from === null) return `its from "${window.from}" is not an ISO 8601 date-time with an offset, such as 2026-12-24T18:00:00+01:00.`;
  if (to === null) return `its to "${window.to}" is not an ISO 8601 date-time with an offset, such as 2027-01-02T08:00:00+01:00.`;
  if (from >= to) return `its from (${window.from}) is not before its to (${window.to}).`;
  return null;
}

/**
 * The config's windows, checked and compiled. Throws an Error naming the
 * first bad window (a bad time zone, HH:MM, empty days, from >= to, a
 * duplicate name: a window is ended early by its name).
 */
export class WindowSchedule {
  private readonly windows: readonly CompiledWindow[];
  private readonly byName: ReadonlyMap<string, CompiledWindow>;

  constructor(windows: readonly FreezeWindow[]) {
    const compiled: CompiledWindow[] = [];
    const byName = new Map<string, CompiledWindow>();
    for (const window of windows) {
      if (typeof window.name !== 'string' || window.name === '') throw new Error('A freeze window has no name: give every window a unique name, since an admin ends a window early by its name.');
      const problem = windowProblem(window);
      if (problem !== null) throw new Error(`Freeze window "${window.name}" is invalid: ${problem}`);
      if (byName.has(window.name)) throw new Error(`Freeze window "${window.name}" is defined twice: window names must be unique, since an admin ends a window early by its name.`);
      const agents = window.agents === null ? null : Object.freeze([...new Set(window.agents)]);
      const entry: CompiledWindow =
        'weekly' in window
          ? new WeeklyWindow(
              window.name,
              window.reason,
              agents,
              new Set(window.weekly.days.map((day) => WEEKDAYS.indexOf(day))),
              parseTimeOfDay(window.weekly.start)!,
              parseTimeOfDay(window.weekly.end)!,
              window.weekly.timezone,
            )
          : new DateRangeWindow(window.name, window.reason, agents, parseIsoWithOffset(window.from)!, parseIsoWithOffset(window.to)!);
      compiled.push(entry);
      byName.set(window.name, entry);
    }
    this.windows = compiled;
    this.byName = byName;
  }

  /** Whether the config has a window of that name. */
  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The occurrences in force at an instant, windows in config order. */
  activeAt(instant: number): WindowOccurrence[] {
    const found: WindowOccurrence[] = [];
    for (const window of this.windows) found.push(...window.activeAt(instant));
    return found;
  }

  /** The occurrences of one window in force at an instant (none for an unknown name). */
  activeOf(name: string, instant: number): readonly WindowOccurrence[] {
    return this.byName.get(name)?.activeAt(instant) ?? [];
  }

  /** Calls `visit` for each occurrence in force at an instant, in config order, until it returns a value; that value, or null. Allocation-free for the hot path. */
  firstActive<T>(instant: number, visit: (occurrence: WindowOccurrence) => T | null): T | null {
    for (const window of this.windows) {
      for (const occ of window.activeAt(instant)) {
        const result = visit(occ);
        if (result !== null) return result;
      }
    }
    return null;
  }
}
