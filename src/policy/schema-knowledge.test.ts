import { beforeAll, describe, expect, it } from 'vitest';
import { classify, loadParser } from '../sql/classify.js';
import { judgeClassification } from './read-only.js';
import { untrustedCall } from './schema-knowledge.js';
import type { SchemaKnowledge, UserFunction } from './schema-knowledge.js';

function fns(list: UserFunction[]): Map<string, UserFunction[]> {
  const m = new Map<string, UserFunction[]>();
  for (const f of list) m.set(f.name, [...(m.get(f.name) ?? []), f]);
  return m;
}

const knowledge: SchemaKnowledge = {
  catalogFunctions: new Set(['count', 'lower', 'now', 'pg_notify', 'format_type']),
  userFunctions: fns([
    { schema: 'public', name: 'notify_change', extensionNonVolatile: false },
    { schema: 'public', name: 'format_money', extensionNonVolatile: false },
    { schema: 'public', name: 'crypt', extensionNonVolatile: true },
    { schema: 'app', name: 'lower', extensionNonVolatile: false },
  ]),
  unsafeViews: new Map([['public.job_locks', 'it calls pg_try_advisory_lock()']]),
  unsafeOperators: new Map([['###', 'it runs public.notify_op(), which is a function Airlock cannot see inside']]),
  unsafePolicies: new Map([['public.watched_notes', 'its row-level security policy calls public.notify_op()']]),
  canaryViews: new Map(),
  viewReads: new Map(),
  relations: [],
  functionsByOid: new Map(),
  operatorFunctions: new Map(),
  catalogOperators: new Set(),
  version: '',
};
const trusted = new Set(['public.format_money']);

describe('untrustedCall', () => {
  it.each([
    ['count', null],
    ['pg_catalog.count', null],
    ['public.format_money', null],
    ['format_money', null],
    ['crypt', null],
    ['information_schema._pg_expandarray', null],
  ])('lets %s through', (name, expected) => {
    expect(untrustedCall(name, knowledge, trusted)).toBe(expected);
  });

  it.each([
    ['notify_change', 'cannot see inside'],
    ['public.notify_change', 'cannot see inside'],
    ['brand_new_function', 'not a function Airlock knows'],
    ['pg_catalog.not_there', 'not a known function'],
    // An unqualified name that a user schema shadows may resolve to the user's function.
    ['lower', 'cannot see inside'],
    ['other.format_money', 'not a function Airlock knows'],
  ])('refuses %s', (name, why) => {
    expect(untrustedCall(name, knowledge, trusted)).toContain(why);
  });
});

describe('the read-only policy with schema knowledge', () => {
  beforeAll(async () => {
    await loadParser();
  });

  const subject = { agent: 'claude', profile: 'read-only', schema: knowledge, trustedFunctions: trusted };
  const judge = (sql: string) => judgeClassification(classify(sql), subject, () => undefined);

  it.each([
    ["SELECT notify_change('x')", 'untrusted-function'],
    ['SELECT * FROM job_locks', 'unsafe-view'],
    ['SELECT * FROM public.job_locks j', 'unsafe-view'],
    ['SELECT e.notify_change FROM executives e', 'untrusted-function'],
    ['SELECT (e).notify_change FROM executives e', 'untrusted-function'],
    ['SELECT * FROM executives WHERE id IN (SELECT count(*) FROM job_locks)', 'unsafe-view'],
    ["SELECT 'a' ### 'b'", 'untrusted-function'],
    ["SELECT 'a' OPERATOR(public.###) 'b'", 'untrusted-function'],
    ['SELECT * FROM watched_notes', 'unsafe-policy'],
  ])('refuses %s by rule %s', (sql, rule) => {
    expect(judge(sql)).toMatchObject({ kind: 'deny', rule, sqlstate: '42501' });
  });

  it.each(['SELECT format_money(1)', 'SELECT count(*) FROM executives', 'SELECT e.full_name FROM executives e', "SELECT 'a' OPERATOR(pg_catalog.||) 'b'"])('serves %s', (sql) => {
    expect(judge(sql).kind).toBe('allow-read');
  });
});
