/**
 * What an agent's policy (profile and rules) says about everything one
 * statement does: each relation it reads needs `select`, each change its
 * action, each row lock `update`, DDL its `create`, `alter` or `drop`. The
 * most restrictive answer wins: deny, then approve, then allow. Checks that
 * do not depend on the policy (canaries, functions, settings, ...) run before
 * this, in read-only.ts.
 */
import type { RelationRef, StatementFacts } from '../sql/facts.js';
import type { Denial } from './decision.js';
import type { AgentPolicy, PolicyKind, RuleDecision } from './rules.js';
import { qualifiedRelation } from './table-pattern.js';

/** One thing a statement does, to be decided by the policy. */
export interface AccessNeed {
  kind: PolicyKind;
  /** null: the statement names no relation for it (CREATE FUNCTION, what a CASCADE reaches, ...). */
  relation: RelationRef | null;
  /** The rule a refusal is filed under: the names the tripwire counts for writes ('write', 'ddl', 'row-lock'); 'policy' for reads. */
  rule: string;
  /** What the agent may not do, in words: "delete from public.tasks". */
  what: string;
}

/** Kinds that are DDL, which a denial files under 'ddl'. */
const DDL_KINDS: ReadonlySet<PolicyKind> = new Set(['create', 'alter', 'drop']);

/** The DDL kind of a statement: drop if it destroys something, create if it makes something new, else alter. */
export function ddlKind(facts: StatementFacts): PolicyKind {
  if (facts.drops) return 'drop';
  if (facts.selectInto || facts.command.startsWith('CREATE') || facts.command === 'IMPORT FOREIGN SCHEMA') return 'create';
  return 'alter';
}

const ACTION_WORDS: Readonly<Record<PolicyKind, string>> = {
  select: 'read',
  insert: 'insert into',
  update: 'update',
  delete: 'delete from',
  merge: 'merge into',
  truncate: 'truncate',
  create: 'create',
  alter: 'alter',
  drop: 'drop',
};

const sameRelation = (a: RelationRef, b: RelationRef) => a.schema === b.schema && a.name === b.name;

/** Everything `facts` does that the policy decides, writes first, then reads. */
export function accessNeeds(facts: StatementFacts): AccessNeed[] {
  const needs: AccessNeed[] = [];
  const need = (kind: PolicyKind, relation: RelationRef | null, rule: string, what: string) => needs.push({ kind, relation, rule, what });
  for (const change of facts.changes) {
    need(change.action, change.relation, 'write', `${ACTION_WORDS[change.action]} ${qualifiedRelation(change.relation)}`);
  }
  if (facts.kind === 'ddl' || facts.selectInto) {
    const kind = ddlKind(facts);
    // SELECT INTO's table is the one in `writes` that no change names.
    const targets = facts.writes.filter((w) => !facts.changes.some((c) => sameRelation(c.relation, w)));
    if (targets.length === 0) need(kind, null, 'ddl', `run ${facts.command}`);
    for (const target of targets) need(kind, target, 'ddl', `${facts.command} on ${qualifiedRelation(target)}`);
  }
  if (facts.cascade) {
    // What a CASCADE reaches is named nowhere: only a rule for any relation (or the profile) can allow it.
    const truncate = facts.changes.some((c) => c.action === 'truncate');
    need(truncate ? 'truncate' : ddlKind(facts), null, truncate ? 'write' : 'ddl', `run ${facts.command} ... CASCADE, which also reaches what depends on the relations it names`);
  }
  if (facts.locking) {
    if (facts.reads.length === 0) need('update', null, 'row-lock', 'lock rows (SELECT ... FOR UPDATE/SHARE)');
    for (const read of facts.reads) need('update', read, 'row-lock', `lock rows of ${qualifiedRelation(read)} (SELECT ... FOR UPDATE/SHARE)`);
  }
  for (const read of facts.reads) need('select', read, 'policy', `read ${qualifiedRelation(read)}`);
  // UPDATE, DELETE and MERGE read the rows they change (WHERE, RETURNING), as PostgreSQL's own privileges
  // say: a table the agent may not read cannot be read through them either.
  for (const change of facts.changes) {
    if (change.action === 'insert' || change.action === 'truncate') continue;
    const target = change.relation;
    if (facts.reads.some((r) => sameRelation(r, target)) || needs.some((n) => n.kind === 'select' && n.relation !== null && sameRelation(n.relation, target))) continue;
    need('select', target, 'policy', `read ${qualifiedRelation(target)} (${change.action === 'merge' ? 'MERGE' : change.action.toUpperCase()} reads the rows it changes)`);
  }
  // A read that names no relation (SELECT 1, SHOW) is still a select: a select rule without tables decides it.
  if (facts.kind === 'read' && facts.reads.length === 0) need('select', null, 'policy', `run ${facts.command}`);
  return needs;
}

/** Whether a need is a DDL kind. */
export function isDdlNeed(need: AccessNeed): boolean {
  return DDL_KINDS.has(need.kind);
}

interface Subject {
  agent: string;
  profile: string;
}

const RANK: Readonly<Record<RuleDecision, number>> = { allow: 0, approve: 1, deny: 2 };

/**
 * The policy's refusal of `facts`, or null when it allows all of it. Order:
 * a denial, then a missing WHERE (write_limits.require_where), then a need
 * for approval, which Airlock cannot grant yet and so refuses.
 */
export function judgeAccess(facts: StatementFacts, subject: Subject, policy: AgentPolicy, needs = accessNeeds(facts)): Denial | null {
  let worst: { need: AccessNeed; decision: RuleDecision; by: string; note?: string } | null = null;
  for (const n of needs) {
    const d = policy.decide(n.kind, n.relation);
    if (worst === null || RANK[d.decision] > RANK[worst.decision]) worst = { need: n, ...d };
    if (d.decision === 'deny') break;
  }
  const byRule = worst?.by.startsWith('rules[') === true;
  const why = worst === null ? '' : byRule ? `${worst.by}${worst.note === undefined ? '' : ` ("${worst.note}")`}` : 'the profile';
  if (worst?.decision === 'deny') {
    return {
      kind: 'deny',
      rule: worst.need.rule,
      message: `airlock: agent "${subject.agent}" may not ${worst.need.what}${byRule ? `: ${why} denies it` : ''} (profile ${subject.profile})`,
      hint: byRule
        ? `A human can run the statement directly, or change ${worst.by} in the Airlock config.`
        : subject.profile === 'read-only'
          ? 'This agent may only read. A human can run the statement directly, or give the agent another profile (or a rule that allows this) in the Airlock config.'
          : 'A human can run the statement directly, or add a rule that allows it for this agent in the Airlock config.',
      sqlstate: '42501',
    };
  }
  const unfiltered = whereMissing(facts, policy);
  if (unfiltered !== null) {
    return {
      kind: 'deny',
      rule: 'where-required',
      message: `airlock: agent "${subject.agent}" may not ${unfiltered} without a WHERE clause, which would change every row (profile ${subject.profile})`,
      hint:
        'Add a WHERE clause that names the rows to change. If every row must change, a human can run it, or set ' +
        'write_limits.require_where: false (for this agent: agents[].write_limits.require_where) in the Airlock config.',
      sqlstate: '42501',
    };
  }
  if (worst?.decision === 'approve') {
    return {
      kind: 'deny',
      rule: 'approval-required',
      message: `airlock: agent "${subject.agent}" may not ${worst.need.what} without a human's approval, which ${why} requires (profile ${subject.profile})`,
      hint:
        'A write sent alone, outside a transaction block, waits for a human to approve it (airlock approvals); ' +
        'this one could not wait (a read, or part of a larger statement). A human can run it, or change the rules in the Airlock config.',
      sqlstate: '42501',
    };
  }
  return null;
}

/** "delete from public.tasks" when require_where is on and an UPDATE or DELETE has no WHERE; else null. TRUNCATE has its own kind. */
function whereMissing(facts: StatementFacts, policy: AgentPolicy): string | null {
  if (!policy.limits.requireWhere || facts.hasWhere !== false) return null;
  const targets = facts.changes.filter((c) => c.action === 'update' || c.action === 'delete');
  if (targets.length === 0) return null;
  return targets.map((t) => `${ACTION_WORDS[t.action]} ${qualifiedRelation(t.relation)}`).join(' and ');
}
