import { describe, expect, it } from 'vitest';
import type { Denial } from './decision.js';
import { compileTablePattern, matchingPattern } from './table-pattern.js';
import { Tripwire } from './tripwire.js';

const denial = (rule: string, trips = false): Denial => ({ kind: 'deny', rule, message: `m ${rule}`, hint: 'h', sqlstate: '42501', trips });

describe('Tripwire', () => {
  it('trips on the Nth destructive refusal within the window, per agent, and counts afresh after', () => {
    let now = 0;
    const t = new Tripwire(3, 10_000, () => now);
    expect(t.record('a', denial('write'))).toBeNull();
    now = 1000;
    expect(t.record('b', denial('ddl'))).toBeNull();
    expect(t.record('a', denial('setting'))).toBeNull(); // not destructive
    expect(t.record('a', denial('ddl'))).toBeNull();
    now = 2000;
    expect(t.record('a', denial('write'))).toContain('3 destructive statements refused within 10 s');
    expect(t.record('a', denial('write'))).toBeNull();
  });

  it('forgets refusals older than the window', () => {
    let now = 0;
    const t = new Tripwire(2, 5_000, () => now);
    expect(t.record('a', denial('write'))).toBeNull();
    now = 6_000;
    expect(t.record('a', denial('write'))).toBeNull();
    now = 7_000;
    expect(t.record('a', denial('write'))).not.toBeNull();
  });

  it('trips at once on a canary, or a spent write budget, saying which', () => {
    expect(new Tripwire(100, 1000).record('a', denial('canary', true))).toBe('touched a canary table (m canary)');
    expect(new Tripwire(100, 1000).record('a', denial('budget', true))).toBe('exhausted its write budget (m budget)');
    expect(new Tripwire(100, 1000).record('a', denial('other', true))).toBe('was refused by rule other (m other)');
  });

  it.each(['where-required', 'row-limit', 'budget'])('counts %s refusals as destructive', (rule) => {
    const t = new Tripwire(2, 10_000, () => 0);
    expect(t.record('a', denial(rule))).toBeNull();
    expect(t.record('a', denial(rule))).not.toBeNull();
  });

  it.each(['policy', 'approval-required', 'copy-from', 'prepared-write'])('does not count %s refusals', (rule) => {
    const t = new Tripwire(1, 10_000, () => 0);
    expect(t.record('a', denial(rule))).toBeNull();
  });
});

describe('table patterns', () => {
  it.each([
    ['public.api_keys', null, 'api_keys', true],
    ['public.api_keys', 'public', 'API_KEYS', true],
    ['public.api_keys', 'other', 'api_keys', false],
    ['honeypot.*', 'honeypot', 'anything', true],
    ['public.pay*', null, 'payroll_2026', true],
    ['public.pay*', null, 'xpayroll', false],
    ['*.secrets', 'billing', 'secrets', true],
  ])('%s matches %s.%s: %s', (pattern, schema, name, expected) => {
    expect(matchingPattern([compileTablePattern(pattern)], { schema, name }) !== undefined).toBe(expected);
  });
});
