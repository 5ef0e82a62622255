/**
 * Write limits that depend on what a write did or how often the agent writes:
 * rows per statement (measured by the gateway, which rolls the write back) and
 * the per-minute and per-hour budgets. Pure bookkeeping over a clock, like the
 * tripwire, so it is tested without waiting.
 */
import type { Denial } from './decision.js';
import type { WriteLimits } from './rules.js';

interface Subject {
  agent: string;
  profile: string;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;

function rowsWord(n: number): string {
  return n === 1 ? '1 row' : `${n} rows`;
}

/** The write touched more rows than allowed: it was rolled back. `tables` maps 'schema.table' to rows changed there (cascades included). */
export function rowLimitDenial(subject: Subject, rows: number, limit: number, tables: Readonly<Record<string, number>>): Denial {
  const shares = Object.entries(tables)
    .filter(([, n]) => n > 0)
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
    .map(([table, n]) => `${table} ${n}`);
  const where = shares.length > 0 ? ` (${shares.join(', ')}; cascaded rows included)` : '';
  return {
    kind: 'deny',
    rule: 'row-limit',
    message:
      `airlock: agent "${subject.agent}" may not change ${rowsWord(rows)} in one statement${where}: ` +
      `the limit is ${limit}. The statement was rolled back; nothing was changed (profile ${subject.profile})`,
    hint:
      'Change fewer rows per statement (a narrower WHERE, or batches). If this many rows must change at once, ' +
      "a human can run it, or raise write_limits.max_rows (for this agent: agents[].write_limits.max_rows) in the Airlock config.",
    sqlstate: '54000',
  };
}

interface AgentLedger {
  /** When each write counted in the last minute started. */
  writes: number[];
  /** Rows changed by each write counted in the last hour, with when. */
  rows: { at: number; rows: number }[];
}

/**
 * Each agent's writes per minute and rows per hour, over all its sessions.
 * Sliding windows: a write counts for exactly 60 s, its rows for exactly an hour.
 */
export class WriteBudget {
  private readonly ledgers = new Map<string, AgentLedger>();

  constructor(private readonly now: () => number = Date.now) {}

  private ledger(agent: string, now: number): AgentLedger {
    let ledger = this.ledgers.get(agent);
    if (ledger === undefined) {
      ledger = { writes: [], rows: [] };
      this.ledgers.set(agent, ledger);
    }
    // Both lists are in time order: drop from the front what has left its window.
    while (ledger.writes.length > 0 && now - ledger.writes[0]! >= MINUTE_MS) ledger.writes.shift();
    while (ledger.rows.length > 0 && now - ledger.rows[0]!.at >= HOUR_MS) ledger.rows.shift();
    return ledger;
  }

  /** What the agent spent of its budgets: writes in the last minute, rows changed in the last hour (read-only; the dashboard shows it). */
  used(agent: string): { writesLastMinute: number; rowsLastHour: number } {
    const now = this.now();
    const ledger = this.ledgers.get(agent);
    if (ledger === undefined) return { writesLastMinute: 0, rowsLastHour: 0 };
    return {
      writesLastMinute: ledger.writes.filter((t) => now - t < MINUTE_MS).length,
      rowsLastHour: ledger.rows.filter((r) => now - r.at < HOUR_MS).reduce((sum, r) => sum + r.rows, 0),
    };
  }

  /** Before a write runs: a denial (rule 'budget', sqlstate '53400', trips: true) when the agent already made writesPerMinute writes in the last 60 s; else counts this write and returns null. */
  beforeWrite(subject: Subject, limits: WriteLimits): Denial | null {
    const now = this.now();
    const ledger = this.ledger(subject.agent, now);
    if (ledger.writes.length >= limits.writesPerMinute) {
      const wait = Math.max(1, Math.ceil((MINUTE_MS - (now - ledger.writes[0]!)) / 1000));
      return budgetDenial(
        subject,
        `make another write: it already made ${ledger.writes.length} in the last minute, its limit (write_limits.writes_per_minute ${limits.writesPerMinute}); the next is possible in ${wait} s`,
      );
    }
    ledger.writes.push(now);
    return null;
  }

  /** After a write measured `rows` rows: a denial (rule 'budget', trips: true) if rows changed in the last hour plus these would exceed rowsPerHour (these rows are then not counted, the write is rolled back); else counts them and returns null. */
  afterWrite(subject: Subject, rows: number, limits: WriteLimits): Denial | null {
    const now = this.now();
    const ledger = this.ledger(subject.agent, now);
    const spent = ledger.rows.reduce((sum, r) => sum + r.rows, 0);
    if (spent + rows > limits.rowsPerHour) {
      return budgetDenial(
        subject,
        `change ${rowsWord(rows)} more: it changed ${rowsWord(spent)} in the last hour, and its limit is ${limits.rowsPerHour} (write_limits.rows_per_hour). The statement was rolled back; nothing was changed`,
      );
    }
    if (rows > 0) ledger.rows.push({ at: now, rows });
    return null;
  }
}

function budgetDenial(subject: Subject, what: string): Denial {
  return {
    kind: 'deny',
    rule: 'budget',
    message: `airlock: agent "${subject.agent}" may not ${what} (profile ${subject.profile})`,
    hint:
      'An agent that spends its write budget is stopped and reported. A human can look at what it did (airlock audit tail), ' +
      'unfreeze it, or raise write_limits in the Airlock config.',
    sqlstate: '53400',
    trips: true,
  };
}
