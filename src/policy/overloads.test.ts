/**
 * Which statements need the server's word on what they call, and how that
 * word is judged: by the table.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classify, loadParser } from '../sql/classify.js';
import { judgeClassification } from './read-only.js';
import type { PolicySubject } from './read-only.js';
import { isAmbiguousFunction, isAmbiguousOperator, resolvedCallProblem, statementsToResolve } from './overloads.js';
import type { ResolvedCalls } from './overloads.js';
import type { SchemaKnowledge, UserFunction } from './schema-knowledge.js';

const USER_LOWER: UserFunction = { schema: 'public', name: 'lower', extensionNonVolatile: false };
const VCAT: UserFunction = { schema: 'public', name: 'vcat', extensionNonVolatile: false };
const SHOUT: UserFunction = { schema: 'public', name: 'shout', extensionNonVolatile: false };
const APP_UPPER: UserFunction = { schema: 'app', name: 'upper', extensionNonVolatile: false };
const CRYPT: UserFunction = { schema: 'public', name: 'crypt', extensionNonVolatile: true };
const NOTIFY: UserFunction = { schema: 'public', name: 'pg_notify', extensionNonVolatile: true };

const knowledge: SchemaKnowledge = {
  catalogFunctions: new Set(['lower', 'upper', 'count', 'textcat', 'pg_notify']),
  userFunctions: new Map([
    ['lower', [USER_LOWER]],
    ['vcat', [VCAT]],
    ['shout', [SHOUT]],
    ['upper', [APP_UPPER]],
    ['crypt', [CRYPT]],
  ]),
  unsafeViews: new Map(),
  unsafeOperators: new Map([
    ['||', 'it runs public.vcat(), which is a function Airlock cannot see inside'],
    ['###', 'it runs public.vcat(), which is a function Airlock cannot see inside'],
  ]),
  unsafePolicies: new Map(),
  canaryViews: new Map(),
  viewReads: new Map(),
  relations: [],
  functionsByOid: new Map([
    [16393, USER_LOWER],
    [16394, VCAT],
    [16396, SHOUT],
    [16397, CRYPT],
    [16398, NOTIFY],
    [16399, { schema: 'pg_catalog', name: 'plpgsql_call_handler', extensionNonVolatile: false }],
  ]),
  operatorFunctions: new Map([
    [16395, 16394],
    [16400, 1258],
  ]),
  catalogOperators: new Set(['||', '=', '<']),
  version: 'v1',
};
const NONE: ReadonlySet<string> = new Set();

beforeAll(async () => {
  await loadParser();
});

describe('ambiguous names', () => {
  it.each([
    ['lower', true],
    ['upper', true], // app.upper is not on the search path: the name may only reach the built-in
    ['shout', false], // no built-in: the user's function is what runs
    ['crypt', false], // trusted (an extension's non-volatile function)
    ['count', false], // built-in only
    ['public.lower', false], // qualified: the user's, whatever the types
    ['pg_catalog.lower', false],
  ])('function %s: %s', (name, expected) => {
    expect(isAmbiguousFunction(name, knowledge, NONE)).toBe(expected);
  });

  it('a trusted user function is nothing to ask about', () => {
    expect(isAmbiguousFunction('lower', knowledge, new Set(['public.lower']))).toBe(false);
  });

  it.each([
    ['||', true],
    ['###', false],
    ['public.||', false],
    ['=', false],
  ])('operator %s: %s', (op, expected) => {
    expect(isAmbiguousOperator(op, knowledge)).toBe(expected);
  });
});

describe('statementsToResolve', () => {
  it.each([
    ['SELECT lower(x) FROM t', [0]],
    ['SELECT a || b FROM t', [0]],
    ['SELECT t.lower FROM t', [0]],
    ['SELECT 1; SELECT lower(x) FROM t', [1]],
    ['SELECT upper(x), count(*) FROM t', [0]],
    ['SELECT count(*) FROM t', []],
    ['SELECT lower(x), shout(x) FROM t', []], // refused for shout() whatever lower() is
    ['SELECT a ### b, lower(x) FROM t', []],
    ['SELECT public.lower(x) FROM t', []],
    ['EXPLAIN SELECT lower(x) FROM t', []],
    ['DECLARE c CURSOR FOR SELECT lower(x) FROM t', []],
    ['COPY (SELECT lower(x) FROM t) TO STDOUT', []],
    ['SELECT lower(x) FROM t FOR UPDATE', []],
    ['DELETE FROM t WHERE lower(x) = $1', []],
    ['SELECT lower(x) INTO u FROM t', []],
  ])('%s → %j', (sql, expected) => {
    expect(statementsToResolve(classify(sql), knowledge, NONE)).toEqual(expected);
  });

  it('asks nothing without schema knowledge', () => {
    expect(statementsToResolve(classify('SELECT lower(x) FROM t'), null, NONE)).toEqual([]);
  });
});

describe('resolvedCallProblem', () => {
  const calls = (functions: number[], operators: number[] = []): Extract<ResolvedCalls, { ok: true }> => ({ ok: true, functions, operators });
  it.each([
    ['built-ins only', calls([870, 1258], [654, 98]), null],
    ['a trusted extension function', calls([16397]), null],
    ['a function made after initdb in pg_catalog', calls([16399]), null],
    ['a user operator over a built-in function', calls([], [16400]), null],
    ['the user lower()', calls([870, 16393]), 'public.lower(), a function Airlock cannot see inside'],
    ['the user operator', calls([], [16395]), 'an operator in it to one that runs public.vcat()'],
    ['a function Airlock has not seen', calls([20001]), 'created since Airlock last read the catalog'],
    ['an operator Airlock has not seen', calls([], [20002]), 'created since Airlock last read the catalog'],
    ['a function with a side effect name', calls([16398]), 'which has side effects'],
  ])('%s', (_label, resolved, expected) => {
    const why = resolvedCallProblem(resolved, knowledge, NONE);
    if (expected === null) expect(why).toBeNull();
    else expect(why).toContain(expected);
  });

  it('trusted_functions lets the user function through', () => {
    expect(resolvedCallProblem(calls([16393]), knowledge, new Set(['public.lower']))).toBeNull();
  });
});

describe('judging with the server’s answer', () => {
  const subject: PolicySubject = { agent: 'claude', profile: 'read-only', schema: knowledge };
  const judge = (sql: string, resolutions?: Map<number, ResolvedCalls>) => judgeClassification(classify(sql), subject, () => undefined, resolutions);
  const builtin: ResolvedCalls = { ok: true, functions: [870], operators: [] };

  it.each([
    ['SELECT lower(x) FROM t', builtin, 'allow-read'],
    ['SELECT lower(x) FROM t', { ok: true, functions: [16393], operators: [] }, 'untrusted-function'],
    ['SELECT a || b FROM t', { ok: true, functions: [1258], operators: [654] }, 'allow-read'],
    ['SELECT a || b FROM t', { ok: true, functions: [16394], operators: [16395] }, 'untrusted-function'],
    ['SELECT t.lower FROM t', { ok: true, functions: [], operators: [] }, 'allow-read'],
    ['SELECT lower(x) FROM t', { ok: false, error: 'column "x" does not exist' }, 'untrusted-function'],
  ] as const)('%s, resolved as %j → %s', (sql, resolved, expected) => {
    const d = judge(sql, new Map([[0, resolved]]));
    expect(d.kind === 'deny' ? d.rule : d.kind).toBe(expected);
  });

  it('says why when the server could not answer', () => {
    const d = judge('SELECT lower(x) FROM t', new Map([[0, { ok: false, error: 'column "x" does not exist' }]]));
    expect(d.kind === 'deny' && d.message).toContain('column "x" does not exist');
  });

  it('still refuses by name what is not ambiguous, whatever the answer', () => {
    const d = judge("SELECT lower(x), shout('a') FROM t", new Map([[0, builtin]]));
    expect(d).toMatchObject({ kind: 'deny', rule: 'untrusted-function' });
    expect(d.kind === 'deny' && d.message).toContain('shout');
  });

  it('applies an answer only to the statement it was given for', () => {
    const d = judge('SELECT lower(x) FROM t; SELECT lower(y) FROM t', new Map([[0, builtin]]));
    expect(d).toMatchObject({ kind: 'deny', rule: 'untrusted-function' });
  });

  it('without an answer, judges by name as before', () => {
    expect(judge('SELECT lower(x) FROM t')).toMatchObject({ kind: 'deny', rule: 'untrusted-function' });
  });
});
