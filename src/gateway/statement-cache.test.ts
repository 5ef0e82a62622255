import { beforeAll, describe, expect, it } from 'vitest';
import { loadParser } from '../sql/classify.js';
import { StatementCache } from './statement-cache.js';

beforeAll(async () => {
  await loadParser();
});

describe('StatementCache', () => {
  it('shares one parse between plain SELECTs that differ only in literals', () => {
    const cache = new StatementCache();
    const a = cache.classify('SELECT abalance FROM pgbench_accounts WHERE aid = 1;');
    const b = cache.classify('SELECT abalance FROM pgbench_accounts WHERE aid = 2;');
    expect(b).toBe(a);
  });

  it.each([
    ["SET standard_conforming_strings = 'on'", "SET standard_conforming_strings = 'off'"],
    ["SET client_encoding = 'UTF8'", "SET client_encoding = 'SJIS'"],
    ["SELECT set_config('application_name', 'x', false)", "SELECT set_config('default_transaction_read_only', 'off', false)"],
    ['BEGIN ISOLATION LEVEL SERIALIZABLE', 'BEGIN ISOLATION LEVEL SERIALIZABLE'],
    ["SELECT 1 FROM t WHERE a = 'x' FOR UPDATE", "SELECT 1 FROM t WHERE a = 'y' FOR UPDATE"],
  ])('never shares facts that depend on literal values: %s / %s', (first, second) => {
    const cache = new StatementCache();
    const a = cache.classify(first);
    const b = cache.classify(second);
    if (first !== second) expect(b).not.toBe(a);
    expect(b.ok && b.statements[0]!.text).toBe(second);
  });

  it('parses each new text of an unshareable kind on its own', () => {
    const cache = new StatementCache();
    const on = cache.classify("SET standard_conforming_strings = 'on'");
    const off = cache.classify("SET standard_conforming_strings = 'off'");
    expect(on.ok && on.statements[0]!.setting?.values).toEqual(['on']);
    expect(off.ok && off.statements[0]!.setting?.values).toEqual(['off']);
  });
});
