import { describe, expect, it } from 'vitest';
import { WriteBudget, rowLimitDenial } from './limits.js';
import type { WriteLimits } from './rules.js';

const SUBJECT = { agent: 'claude', profile: 'read-write' };
const LIMITS: WriteLimits = { maxRows: 100, requireWhere: true, rowsPerHour: 10, writesPerMinute: 3 };

describe('rowLimitDenial', () => {
  it('names the count, the limit, each table\'s share and that nothing changed', () => {
    const d = rowLimitDenial(SUBJECT, 130, 100, { 'public.comments': 30, 'public.tasks': 100, 'public.empty': 0 });
    expect(d).toMatchObject({ kind: 'deny', rule: 'row-limit', sqlstate: '54000' });
    expect(d.trips).toBeUndefined();
    expect(d.message).toBe(
      'airlock: agent "claude" may not change 130 rows in one statement (public.tasks 100, public.comments 30; cascaded rows included): ' +
        'the limit is 100. The statement was rolled back; nothing was changed (profile read-write)',
    );
    expect(d.hint).toContain('write_limits.max_rows');
  });

  it('reads well without a per-table breakdown', () => {
    expect(rowLimitDenial(SUBJECT, 2, 1, {}).message).toContain('may not change 2 rows in one statement: the limit is 1.');
  });
});

describe('WriteBudget', () => {
  it('allows writesPerMinute writes in any 60 s, then refuses (and trips) until the oldest leaves the window', () => {
    let now = 0;
    const budget = new WriteBudget(() => now);
    for (let i = 0; i < 3; i++) {
      expect(budget.beforeWrite(SUBJECT, LIMITS)).toBeNull();
      now += 10_000;
    }
    const d = budget.beforeWrite(SUBJECT, LIMITS);
    expect(d).toMatchObject({ kind: 'deny', rule: 'budget', sqlstate: '53400', trips: true });
    expect(d?.message).toContain('already made 3 in the last minute');
    expect(d?.message).toContain('write_limits.writes_per_minute 3');
    expect(d?.message).toContain('the next is possible in 30 s');
    // A refused write does not count: the first one leaves the window at 60 s.
    now = 59_999;
    expect(budget.beforeWrite(SUBJECT, LIMITS)).not.toBeNull();
    now = 60_000;
    expect(budget.beforeWrite(SUBJECT, LIMITS)).toBeNull();
  });

  it('counts per agent', () => {
    const budget = new WriteBudget(() => 0);
    const one = { ...LIMITS, writesPerMinute: 1 };
    expect(budget.beforeWrite(SUBJECT, one)).toBeNull();
    expect(budget.beforeWrite({ agent: 'cursor', profile: 'read-write' }, one)).toBeNull();
    expect(budget.beforeWrite(SUBJECT, one)).not.toBeNull();
  });

  it('allows rowsPerHour rows in any hour; rows it refuses are not counted', () => {
    let now = 0;
    const budget = new WriteBudget(() => now);
    expect(budget.afterWrite(SUBJECT, 6, LIMITS)).toBeNull();
    now = 1000;
    const d = budget.afterWrite(SUBJECT, 5, LIMITS);
    expect(d).toMatchObject({ kind: 'deny', rule: 'budget', sqlstate: '53400', trips: true });
    expect(d?.message).toContain('change 5 rows more: it changed 6 rows in the last hour, and its limit is 10 (write_limits.rows_per_hour)');
    expect(d?.message).toContain('nothing was changed');
    // Exactly up to the limit is fine: the 5 refused rows were not counted.
    expect(budget.afterWrite(SUBJECT, 4, LIMITS)).toBeNull();
    expect(budget.afterWrite(SUBJECT, 1, LIMITS)).not.toBeNull();
    expect(budget.afterWrite(SUBJECT, 0, LIMITS)).toBeNull();
    // The first 6 rows leave the window an hour after they were counted.
    now = 3_600_000;
    expect(budget.afterWrite(SUBJECT, 6, LIMITS)).toBeNull();
  });
});
