import { describe, expect, it } from 'vitest';
import type { RelationRef } from '../sql/facts.js';
import {
  DEFAULT_WRITE_LIMITS,
  POLICY_KINDS,
  POLICY_KIND_ALIASES,
  PROFILES,
  PROFILE_DEFAULTS,
  compileAgentPolicy,
  ruleKinds,
  shadowedRules,
  tablesCover,
  unmatchedRulePatterns,
} from './rules.js';
import type { PolicyKind, RuleConfig, RuleDecision } from './rules.js';

/** A rule as the config resolves it; `index` is its position in the list. */
function rule(index: number, r: Partial<Omit<RuleConfig, 'index' | 'decision'>> & { decision: RuleDecision }): RuleConfig {
  return { index, agents: null, kinds: null, tables: null, note: null, ...r };
}

function rel(qualified: string): RelationRef {
  const dot = qualified.indexOf('.');
  return dot < 0 ? { schema: null, name: qualified } : { schema: qualified.slice(0, dot), name: qualified.slice(dot + 1) };
}

const claude = { name: 'claude', groups: [] as string[], profile: 'read-only', writeLimits: DEFAULT_WRITE_LIMITS };

/**
 * The issue's example: "the agent may INSERT and UPDATE public.tasks, anything
 * touching public.companies needs approval, no DDL at all, reads everywhere
 * except public.secrets".
 */
const ISSUE_RULES: readonly RuleConfig[] = [
  rule(0, { agents: ['claude'], kinds: ['insert', 'update'], tables: ['public.tasks'], decision: 'allow' }),
  rule(1, { tables: ['public.companies'], decision: 'approve' }),
  rule(2, { kinds: [...POLICY_KIND_ALIASES.ddl], decision: 'deny' }),
  rule(3, { kinds: ['select'], tables: ['public.secrets'], decision: 'deny' }),
];

describe('profiles', () => {
  it('give every kind a default, reads always allowed', () => {
    for (const profile of PROFILES) {
      expect(Object.keys(PROFILE_DEFAULTS[profile]).sort()).toEqual([...POLICY_KINDS].sort());
      expect(PROFILE_DEFAULTS[profile].select).toBe('allow');
    }
  });

  it.each([
    // [profile, kind, decision]
    ['read-only', 'insert', 'deny'],
    ['read-only', 'drop', 'deny'],
    ['read-write', 'insert', 'allow'],
    ['read-write', 'update', 'allow'],
    ['read-write', 'delete', 'allow'],
    ['read-write', 'merge', 'allow'],
    ['read-write', 'truncate', 'approve'],
    ['read-write', 'create', 'approve'],
    ['read-write', 'alter', 'approve'],
    ['read-write', 'drop', 'approve'],
    ['writes-need-approval', 'insert', 'approve'],
    ['writes-need-approval', 'drop', 'approve'],
  ] as const)('%s: %s is %s when no rule decides', (profile, kind, decision) => {
    const policy = compileAgentPolicy({ ...claude, profile }, []);
    expect(policy.decide(kind, rel('public.t'))).toEqual({ decision, by: `profile ${profile}` });
    expect(policy.decide(kind, null)).toEqual({ decision, by: `profile ${profile}` });
  });

  it('refuses a profile it does not know, naming the valid ones', () => {
    expect(() => compileAgentPolicy({ ...claude, profile: 'admin' }, [])).toThrow(
      'agent "claude" has the profile "admin", which is not one of: read-only, read-write, writes-need-approval',
    );
  });

  it.each([
    ['read-only', [], false],
    ['read-write', [], true],
    // What a human may approve runs on the write path once approved.
    ['writes-need-approval', [], true],
    ['read-only', [rule(0, { kinds: ['select'], decision: 'allow' })], false],
    ['read-only', [rule(0, { kinds: ['insert'], tables: ['public.t'], decision: 'allow' })], true],
    ['read-only', [rule(0, { decision: 'allow' })], true],
    ['read-only', [rule(0, { kinds: ['insert'], decision: 'approve' })], true],
    ['read-only', [rule(0, { kinds: ['insert'], decision: 'deny' })], false],
    ['read-only', [rule(0, { agents: ['cursor'], kinds: ['insert'], decision: 'allow' })], false],
  ] as const)('%s with %j: mayWrite is %s', (profile, rules, mayWrite) => {
    expect(compileAgentPolicy({ ...claude, profile }, rules).mayWrite).toBe(mayWrite);
  });

  it('carries the write limits', () => {
    const limits = { maxRows: 5, requireWhere: false, rowsPerHour: 50, writesPerMinute: 2 };
    expect(compileAgentPolicy({ ...claude, writeLimits: limits }, []).limits).toEqual(limits);
  });
});

describe("the issue's example", () => {
  const policy = compileAgentPolicy(claude, ISSUE_RULES);

  it.each([
    // [kind, relation, decision, by]
    ['insert', 'public.tasks', 'allow', 'rules[0]'],
    ['update', 'tasks', 'allow', 'rules[0]'],
    ['delete', 'public.tasks', 'deny', 'profile read-only'],
    ['select', 'public.tasks', 'allow', 'profile read-only'],
    ['select', 'public.companies', 'approve', 'rules[1]'],
    ['update', 'public.companies', 'approve', 'rules[1]'],
    ['drop', 'public.companies', 'approve', 'rules[1]'],
    ['create', 'public.tasks', 'deny', 'rules[2]'],
    ['create', null, 'deny', 'rules[2]'],
    ['alter', 'public.tasks', 'deny', 'rules[2]'],
    ['drop', 'public.tasks', 'deny', 'rules[2]'],
    ['truncate', 'public.tasks', 'deny', 'profile read-only'],
    ['select', 'public.secrets', 'deny', 'rules[3]'],
    ['select', 'PUBLIC.Secrets', 'deny', 'rules[3]'],
    ['select', null, 'allow', 'profile read-only'],
  ] as const)('%s on %s: %s by %s', (kind, relation, decision, by) => {
    expect(policy.decide(kind, relation === null ? null : rel(relation))).toEqual({ decision, by });
  });

  it('applies rules that name an agent to that agent only', () => {
    const cursor = compileAgentPolicy({ ...claude, name: 'cursor' }, ISSUE_RULES);
    expect(cursor.decide('insert', rel('public.tasks'))).toEqual({ decision: 'deny', by: 'profile read-only' });
    expect(cursor.decide('select', rel('public.companies'))).toEqual({ decision: 'approve', by: 'rules[1]' });
  });
});

describe('rule matching', () => {
  it('names agents by name or group, without regard to case', () => {
    const rules = [rule(0, { agents: ['Ops'], kinds: ['insert'], decision: 'allow' })];
    expect(compileAgentPolicy({ ...claude, groups: ['ops'] }, rules).decide('insert', rel('t')).by).toBe('rules[0]');
    expect(compileAgentPolicy({ ...claude, name: 'OPS' }, rules).decide('insert', rel('t')).by).toBe('rules[0]');
    expect(compileAgentPolicy(claude, rules).decide('insert', rel('t')).by).toBe('profile read-only');
  });

  it('lets the first matching rule decide', () => {
    const policy = compileAgentPolicy(claude, [
      rule(0, { kinds: ['delete'], tables: ['public.tasks'], decision: 'deny' }),
      rule(1, { kinds: ['delete'], tables: ['public.*'], decision: 'allow' }),
    ]);
    expect(policy.decide('delete', rel('tasks'))).toEqual({ decision: 'deny', by: 'rules[0]' });
    expect(policy.decide('delete', rel('public.other'))).toEqual({ decision: 'allow', by: 'rules[1]' });
    expect(policy.decide('delete', rel('app.other'))).toEqual({ decision: 'deny', by: 'profile read-only' });
  });

  it('never lets an allow rule without kinds grant TRUNCATE or DDL: the next rule or the profile decides', () => {
    const policy = compileAgentPolicy(claude, [rule(0, { tables: ['public.tasks'], decision: 'allow' })]);
    for (const kind of ['select', 'insert', 'update', 'delete', 'merge'] as PolicyKind[]) {
      expect(policy.decide(kind, rel('public.tasks'))).toEqual({ decision: 'allow', by: 'rules[0]' });
    }
    for (const kind of ['truncate', 'create', 'alter', 'drop'] as PolicyKind[]) {
      expect(policy.decide(kind, rel('public.tasks'))).toEqual({ decision: 'deny', by: 'profile read-only' });
    }
    const named = compileAgentPolicy(claude, [rule(0, { kinds: ['truncate', 'drop'], tables: ['public.tasks'], decision: 'allow' })]);
    expect(named.decide('truncate', rel('public.tasks')).decision).toBe('allow');
    expect(named.decide('drop', rel('public.tasks')).decision).toBe('allow');
  });

  it('lets deny and approve rules without kinds cover every kind, TRUNCATE and DDL included', () => {
    const policy = compileAgentPolicy({ ...claude, profile: 'read-write' }, [rule(0, { tables: ['public.tasks'], decision: 'deny' })]);
    for (const kind of POLICY_KINDS) expect(policy.decide(kind, rel('public.tasks')).decision).toBe('deny');
  });

  it('matches a rule with tables only against named relations; one without tables also decides statements that name none', () => {
    const withTables = compileAgentPolicy(claude, [rule(0, { kinds: ['create'], tables: ['public.*'], decision: 'allow' })]);
    expect(withTables.decide('create', rel('public.scratch')).decision).toBe('allow');
    expect(withTables.decide('create', null)).toEqual({ decision: 'deny', by: 'profile read-only' });
    const without = compileAgentPolicy(claude, [rule(0, { kinds: ['create'], decision: 'allow' })]);
    expect(without.decide('create', null)).toEqual({ decision: 'allow', by: 'rules[0]' });
  });

  it('grants case-sensitively and refuses without regard to case', () => {
    const policy = compileAgentPolicy(claude, [
      rule(0, { kinds: ['insert'], tables: ['public.tasks'], decision: 'allow' }),
      rule(1, { kinds: ['update'], tables: ['public.Tasks'], decision: 'allow' }),
      rule(2, { kinds: ['delete'], tables: ['public.tasks'], decision: 'approve' }),
    ]);
    // public."Tasks" is another table than public.tasks.
    expect(policy.decide('insert', rel('public.Tasks')).decision).toBe('deny');
    expect(policy.decide('insert', { schema: 'Public', name: 'tasks' }).decision).toBe('deny');
    expect(policy.decide('update', rel('public.Tasks')).decision).toBe('allow');
    expect(policy.decide('update', rel('public.tasks')).decision).toBe('deny');
    expect(policy.decide('delete', rel('public.TASKS')).decision).toBe('approve');
  });

  it('reports the note of the rule that decided', () => {
    const policy = compileAgentPolicy(claude, [rule(0, { kinds: ['delete'], decision: 'deny', note: 'tasks are archived, not deleted' })]);
    expect(policy.decide('delete', rel('t'))).toEqual({ decision: 'deny', by: 'rules[0]', note: 'tasks are archived, not deleted' });
  });

  it('lists the kinds a rule can match', () => {
    expect(ruleKinds({ kinds: null, decision: 'allow' })).toEqual(['select', 'insert', 'update', 'delete', 'merge']);
    expect(ruleKinds({ kinds: null, decision: 'deny' })).toEqual(POLICY_KINDS);
    expect(ruleKinds({ kinds: ['drop'], decision: 'allow' })).toEqual(['drop']);
  });
});

describe('unmatchedRulePatterns', () => {
  it('warns about each pattern that matches no relation, naming its key path', () => {
    const rules = [
      rule(0, { tables: ['public.tasks', 'public.taks'], decision: 'allow' }),
      rule(1, { decision: 'deny' }),
      rule(2, { tables: ['archive.*', 'PUBLIC.Tasks'], decision: 'deny' }),
    ];
    expect(unmatchedRulePatterns(rules, new Set(['public.tasks', 'public.companies']))).toEqual([
      'rules[0].tables[1]: public.taks matches no table or view in the database',
      'rules[2].tables[0]: archive.* matches no table or view in the database',
    ]);
  });
});

describe('shadowedRules', () => {
  const everyone = new Set(['claude', 'cursor']);
  const agentsOf = (r: RuleConfig): ReadonlySet<string> =>
    r.agents === null ? everyone : new Set(r.agents.flatMap((a) => (a === 'ops' ? ['claude', 'cursor'] : [a])));

  it.each([
    ['identical selectors', [rule(0, { kinds: ['insert'], tables: ['public.t'], decision: 'allow' }), rule(1, { kinds: ['insert'], tables: ['public.t'], decision: 'deny' })], [{ rule: 1, by: 0, sameDecision: false }]],
    ['identical selectors, same decision', [rule(0, { agents: ['claude'], decision: 'deny' }), rule(1, { agents: ['claude'], decision: 'deny' })], [{ rule: 1, by: 0, sameDecision: true }]],
    // The deny still decides TRUNCATE and DDL on public.t, which the allow never grants.
    ['identical selectors without kinds, allow first', [rule(0, { tables: ['public.t'], decision: 'allow' }), rule(1, { tables: ['public.t'], decision: 'deny' })], []],
    ['no tables covers any tables', [rule(0, { kinds: ['delete'], decision: 'deny' }), rule(1, { kinds: ['delete'], tables: ['public.t'], decision: 'allow' })], [{ rule: 1, by: 0, sameDecision: false }]],
    ['no kinds covers any kinds', [rule(0, { tables: ['public.t'], decision: 'deny' }), rule(1, { kinds: ['drop'], tables: ['public.t'], decision: 'allow' })], [{ rule: 1, by: 0, sameDecision: false }]],
    ['an allow without kinds does not cover DDL', [rule(0, { tables: ['public.t'], decision: 'allow' }), rule(1, { kinds: ['drop'], tables: ['public.t'], decision: 'deny' })], []],
    ['an allow without kinds covers writes', [rule(0, { tables: ['public.t'], decision: 'allow' }), rule(1, { kinds: ['delete'], tables: ['public.t'], decision: 'deny' })], [{ rule: 1, by: 0, sameDecision: false }]],
    ['no agents covers every agent', [rule(0, { decision: 'deny' }), rule(1, { agents: ['claude'], kinds: ['insert'], decision: 'allow' })], [{ rule: 1, by: 0, sameDecision: false }]],
    ['a group covers its members', [rule(0, { agents: ['ops'], kinds: ['insert'], decision: 'deny' }), rule(1, { agents: ['cursor'], kinds: ['insert'], decision: 'deny' })], [{ rule: 1, by: 0, sameDecision: true }]],
    ['one agent does not cover another', [rule(0, { agents: ['claude'], kinds: ['insert'], decision: 'deny' }), rule(1, { agents: ['cursor'], kinds: ['insert'], decision: 'allow' })], []],
    ['a wildcard covers what it matches', [rule(0, { tables: ['public.*'], decision: 'deny' }), rule(1, { tables: ['public.tasks', 'public.t*'], decision: 'approve' })], [{ rule: 1, by: 0, sameDecision: false }]],
    ['tables do not cover statements that name none', [rule(0, { tables: ['*.*'], decision: 'deny' }), rule(1, { decision: 'approve' })], []],
    ['narrower kinds do not cover', [rule(0, { kinds: ['insert'], decision: 'deny' }), rule(1, { kinds: ['insert', 'update'], decision: 'allow' })], []],
    ['the first covering rule is named', [rule(0, { decision: 'deny' }), rule(1, { decision: 'deny' }), rule(2, { decision: 'approve' })], [{ rule: 1, by: 0, sameDecision: true }, { rule: 2, by: 0, sameDecision: false }]],
  ] as const)('%s', (_, rules, expected) => {
    expect(shadowedRules(rules, agentsOf)).toEqual(expected);
  });

  it('finds nothing to report in the issue example', () => {
    expect(shadowedRules(ISSUE_RULES, agentsOf)).toEqual([]);
  });
});

describe('tablesCover', () => {
  it.each([
    [null, null, true],
    [null, ['public.t'], true],
    [['public.t'], null, false],
    [['public.t'], ['public.t'], true],
    [['PUBLIC.T'], ['public.t'], true],
    [['public.*'], ['public.t', 'public.x*'], true],
    [['*.t'], ['app.t'], true],
    [['public.pay*'], ['public.payroll*', 'public.pay_2026'], true],
    [['public.pay*'], ['public.p*'], false],
    [['public.t'], ['public.*'], false],
    [['public.t*x'], ['public.t*'], false],
    [['a.t', 'b.t'], ['a.t', 'b.t', 'c.t'], false],
  ] as const)('%j covers %j: %s', (outer, inner, expected) => {
    expect(tablesCover(outer, inner)).toBe(expected);
  });
});

describe('couldDecideInSchema (which schemas a write role may create in)', () => {
  const cases: [string, RuleConfig[], string, boolean][] = [
    ['no rule, read-only profile', [], 'public', false],
    ['a create rule for app.*', [rule(0, { kinds: ['create'], tables: ['app.*'], decision: 'allow' })], 'app', true],
    ['a create rule for app.* says nothing of public', [rule(0, { kinds: ['create'], tables: ['app.*'], decision: 'allow' })], 'public', false],
    ['a create rule for one name in public', [rule(0, { kinds: ['create'], tables: ['public.scratch_*'], decision: 'allow' })], 'public', true],
    ['a create rule with no tables', [rule(0, { kinds: ['create'], decision: 'allow' })], 'anything', true],
    ['an allow without kinds never grants DDL', [rule(0, { decision: 'allow' })], 'public', false],
    [
      'an earlier deny covering the schema',
      [rule(0, { kinds: [...POLICY_KIND_ALIASES.ddl], tables: ['app.*'], decision: 'deny' }), rule(1, { kinds: ['create'], tables: ['app.*'], decision: 'allow' })],
      'app',
      false,
    ],
    [
      'an earlier deny covering only part of the schema',
      [rule(0, { kinds: [...POLICY_KIND_ALIASES.ddl], tables: ['app.secret_*'], decision: 'deny' }), rule(1, { kinds: ['create'], tables: ['app.*'], decision: 'allow' })],
      'app',
      true,
    ],
    ['a deny for every kind and table', [rule(0, { decision: 'deny' }), rule(1, { kinds: ['create'], decision: 'allow' })], 'public', false],
  ];
  it.each(cases)('%s', (_name, rules, schema, expected) => {
    expect(compileAgentPolicy(claude, rules).couldDecideInSchema('create', schema, ['allow'])).toBe(expected);
  });
});
