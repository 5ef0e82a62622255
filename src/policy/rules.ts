/**
 * Profiles and rules: what an agent may do, kind by kind and relation by
 * relation, in words an operator reads at a glance (docs/config.md, `rules`).
 * This module owns the vocabulary (profiles, kinds, decisions); the config
 * parses a file into `RuleConfig`s, and `compileAgentPolicy` turns them into
 * one agent's policy once, so that judging a statement is a short scan.
 */
import type { RelationRef } from '../sql/facts.js';
import { compileTablePattern, matchingPattern } from './table-pattern.js';
import type { TablePattern } from './table-pattern.js';

/** Agent profiles: the default decision for each kind when no rule decides. */
export const PROFILES = ['read-only', 'read-write', 'writes-need-approval'] as const;
export type Profile = (typeof PROFILES)[number];

/** What a statement does to a relation, as rules name it. */
export const POLICY_KINDS = ['select', 'insert', 'update', 'delete', 'merge', 'truncate', 'create', 'alter', 'drop'] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

/** Names a rule may use for several kinds at once. */
export const POLICY_KIND_ALIASES = {
  write: ['insert', 'update', 'delete', 'merge'],
  ddl: ['create', 'alter', 'drop'],
} as const satisfies Record<string, readonly PolicyKind[]>;
export type PolicyKindAlias = keyof typeof POLICY_KIND_ALIASES;

/**
 * Kinds an `allow` rule grants only when its `kinds` names them (directly or
 * through `ddl`): an operator never hands out TRUNCATE or DDL by leaving
 * `kinds` out.
 */
export const EXPLICIT_ALLOW_KINDS: readonly PolicyKind[] = ['truncate', 'create', 'alter', 'drop'];

export const RULE_DECISIONS = ['allow', 'deny', 'approve'] as const;
export type RuleDecision = (typeof RULE_DECISIONS)[number];

/** One entry of the config's `rules`, as the config resolved it. */
export interface RuleConfig {
  /** Its position in the file's `rules` list, for messages (`rules[2]`). */
  index: number;
  /** Agent and group names; null (left out): every agent. */
  agents: readonly string[] | null;
  /** Kinds, aliases expanded; null (left out): every kind (for `allow`, every kind but EXPLICIT_ALLOW_KINDS). */
  kinds: readonly PolicyKind[] | null;
  /** `schema.table` patterns with `*`, as written; null (left out): any relation, and statements that name none. */
  tables: readonly string[] | null;
  decision: RuleDecision;
  /** The operator's words, shown with the decision. */
  note: string | null;
  /** An allow rule that also lets through DDL whose loss undo cannot take back (DROP SCHEMA, DROP … CASCADE). */
  allowUnrecoverable?: boolean;
}

export interface WriteLimits {
  /** Rows one statement may change, cascaded rows included. */
  maxRows: number;
  /** UPDATE and DELETE need a WHERE clause. */
  requireWhere: boolean;
  /** Rows an agent may change in any hour. */
  rowsPerHour: number;
  /** Writes an agent may make in any minute. */
  writesPerMinute: number;
}

export const DEFAULT_WRITE_LIMITS: Readonly<WriteLimits> = { maxRows: 100, requireWhere: true, rowsPerHour: 1000, writesPerMinute: 60 };

/** Each profile's decision for each kind, when no rule decides. */
export const PROFILE_DEFAULTS: Readonly<Record<Profile, Readonly<Record<PolicyKind, RuleDecision>>>> = {
  'read-only': { select: 'allow', insert: 'deny', update: 'deny', delete: 'deny', merge: 'deny', truncate: 'deny', create: 'deny', alter: 'deny', drop: 'deny' },
  'read-write': { select: 'allow', insert: 'allow', update: 'allow', delete: 'allow', merge: 'allow', truncate: 'approve', create: 'approve', alter: 'approve', drop: 'approve' },
  'writes-need-approval': { select: 'allow', insert: 'approve', update: 'approve', delete: 'approve', merge: 'approve', truncate: 'approve', create: 'approve', alter: 'approve', drop: 'approve' },
};

export interface AgentPolicy {
  profile: string;
  limits: WriteLimits;
  /** True when some kind other than select can be allowed for this agent (a profile default or a rule): the gateway opens a write connection only then. */
  mayWrite: boolean;
  /**
   * What keeps some relation from the agent's reads: the first rule that denies `select` or asks approval for it
   * ('rules[2]'), or 'profile …' when the profile does not allow reads; null when it may read every relation.
   */
  readsRestrictedBy: string | null;
  /** True when some read may need a human's approval (a rule, or the profile, can decide `approve` for select). */
  readsHeld: boolean;
  /**
   * The decision for one kind on one relation (null: the statement names none), and what decided it
   * ('profile read-write' or 'rules[2]'), with the rule's note when it has one.
   */
  decide(kind: PolicyKind, relation: RelationRef | null): { decision: RuleDecision; by: string; note?: string; unrecoverable?: boolean };
  /**
   * Whether `decide(kind, r)` could be one of `decisions` for some relation `r` in `schema`, existing
   * or not (CREATE names a relation that does not exist yet). Sound, not exact: it answers false only
   * when no rule and not the profile can so decide there, or an earlier rule covers the whole schema.
   */
  couldDecideInSchema(kind: PolicyKind, schema: string, decisions: readonly RuleDecision[]): boolean;
}

/** The kinds a rule can match: those it lists, or when it lists none, all (an allow rule: all but EXPLICIT_ALLOW_KINDS). */
export function ruleKinds(rule: Pick<RuleConfig, 'kinds' | 'decision'>): readonly PolicyKind[] {
  if (rule.kinds !== null) return rule.kinds;
  return rule.decision === 'allow' ? POLICY_KINDS.filter((k) => !EXPLICIT_ALLOW_KINDS.includes(k)) : POLICY_KINDS;
}

interface CompiledRule {
  by: string;
  decision: RuleDecision;
  note: string | null;
  allowUnrecoverable: boolean;
  kinds: ReadonlySet<PolicyKind>;
  /** null: any relation, and none. */
  patterns: readonly TablePattern[] | null;
}

function isProfile(name: string): name is Profile {
  return (PROFILES as readonly string[]).includes(name);
}

/** The rules that apply to an agent (they name it, a group of its, or every agent), in file order. */
export function rulesFor(agent: { name: string; groups: readonly string[] }, rules: readonly RuleConfig[]): RuleConfig[] {
  // Agent names are unique without regard to case (config), so rules name them that way too.
  const names = new Set([agent.name, ...agent.groups].map((n) => n.toLowerCase()));
  return rules.filter((r) => r.agents === null || r.agents.some((n) => names.has(n.toLowerCase())));
}

/** One agent's policy: its profile's defaults and the rules that name it (or a group of its, or every agent), in file order. */
export function compileAgentPolicy(
  agent: { name: string; groups: readonly string[]; profile: string; writeLimits: WriteLimits },
  rules: readonly RuleConfig[],
): AgentPolicy {
  if (!isProfile(agent.profile)) {
    throw new Error(`agent "${agent.name}" has the profile "${agent.profile}", which is not one of: ${PROFILES.join(', ')}`);
  }
  const defaults = PROFILE_DEFAULTS[agent.profile];
  const mine: CompiledRule[] = rulesFor(agent, rules)
    .map((r) => ({
      by: `rules[${r.index}]`,
      decision: r.decision,
      note: r.note,
      allowUnrecoverable: r.allowUnrecoverable === true,
      kinds: new Set(ruleKinds(r)),
      // A pattern that grants matches case-sensitively: public.tasks must not also grant public."Tasks".
      patterns: r.tables === null ? null : r.tables.map((t) => compileTablePattern(t, { ignoreCase: r.decision !== 'allow' })),
    }));
  const profileBy = `profile ${agent.profile}`;
  // A write a human may approve runs on the write path too, once approved.
  const mayWrite =
    POLICY_KINDS.some((k) => k !== 'select' && defaults[k] !== 'deny') ||
    mine.some((r) => r.decision !== 'deny' && [...r.kinds].some((k) => k !== 'select'));
  const restricting = mine.find((r) => r.decision !== 'allow' && r.kinds.has('select'));
  const readsRestrictedBy = defaults.select !== 'allow' ? profileBy : (restricting?.by ?? null);
  return {
    profile: agent.profile,
    limits: { ...agent.writeLimits },
    mayWrite,
    readsRestrictedBy,
    readsHeld: defaults.select === 'approve' || mine.some((r) => r.decision === 'approve' && r.kinds.has('select')),
    decide(kind, relation) {
      for (const r of mine) {
        if (!r.kinds.has(kind)) continue;
        if (r.patterns !== null && (relation === null || matchingPattern(r.patterns, relation) === undefined)) continue;
        const decided = r.note === null ? { decision: r.decision, by: r.by } : { decision: r.decision, by: r.by, note: r.note };
        return r.allowUnrecoverable ? { ...decided, unrecoverable: true } : decided;
      }
      return { decision: defaults[kind], by: profileBy };
    },
    couldDecideInSchema(kind, schema, decisions) {
      for (const r of mine) {
        if (!r.kinds.has(kind)) continue;
        if (r.patterns !== null && !r.patterns.some((p) => p.matchesSchema(schema))) continue;
        if (decisions.includes(r.decision)) return true;
        // Covering every relation of the schema, this rule decides there before any later rule or the profile.
        if (r.patterns === null || r.patterns.some((p) => p.coversSchema(schema))) return false;
      }
      return decisions.includes(defaults[kind]);
    },
  };
}

/** 'schema.table' → its parts; a name without a dot is in public. */
function splitRelation(qualified: string): { schema: string; name: string } {
  const dot = qualified.indexOf('.');
  return dot < 0 ? { schema: 'public', name: qualified } : { schema: qualified.slice(0, dot), name: qualified.slice(dot + 1) };
}

/** Warnings for rules whose table patterns match none of `relations` ('schema.table', lower-case): "rules[2].tables[0]: public.taks matches no table or view in the database". */
export function unmatchedRulePatterns(rules: readonly RuleConfig[], relations: ReadonlySet<string>): string[] {
  const known = [...relations].map(splitRelation);
  const warnings: string[] = [];
  for (const rule of rules) {
    (rule.tables ?? []).forEach((source, j) => {
      // The list is lower-case, so compare without regard to case; exactness is the matcher's business at run time.
      const pattern = compileTablePattern(source);
      if (!known.some((r) => pattern.matches(r.schema, r.name))) {
        warnings.push(`rules[${rule.index}].tables[${j}]: ${source} matches no table or view in the database`);
      }
    });
  }
  return warnings;
}

// ---------------------------------------------------------------------------
// Rules that can never apply

/** A later rule that an earlier one covers entirely, so it never decides anything. */
export interface ShadowedRule {
  /** Index of the rule that never applies. */
  rule: number;
  /** Index of the first earlier rule that covers it. */
  by: number;
  sameDecision: boolean;
}

/**
 * Finds rules that can never apply: an earlier rule matches every agent, kind
 * and relation they match. `agentsOf` gives the agents a rule applies to
 * (lower-case names; its groups expanded; every agent when it names none).
 * Table coverage is decided on the patterns as written, without regard to
 * case, and conservatively: a pair this cannot prove covered is not reported.
 */
export function shadowedRules(rules: readonly RuleConfig[], agentsOf: (rule: RuleConfig) => ReadonlySet<string>): ShadowedRule[] {
  const found: ShadowedRule[] = [];
  rules.forEach((later, j) => {
    const laterAgents = agentsOf(later);
    const laterKinds = ruleKinds(later);
    for (let i = 0; i < j; i++) {
      const earlier = rules[i]!;
      const earlierAgents = agentsOf(earlier);
      const earlierKinds = ruleKinds(earlier);
      if (![...laterAgents].every((a) => earlierAgents.has(a))) continue;
      if (!laterKinds.every((k) => earlierKinds.includes(k))) continue;
      if (!tablesCover(earlier.tables, later.tables)) continue;
      found.push({ rule: later.index, by: earlier.index, sameDecision: earlier.decision === later.decision });
      return;
    }
  });
  return found;
}

/** Whether every relation (or none) that `inner` matches, `outer` matches too. */
export function tablesCover(outer: readonly string[] | null, inner: readonly string[] | null): boolean {
  if (outer === null) return true;
  // `inner` left out also matches statements that name no relation, which no pattern does.
  if (inner === null) return false;
  return inner.every((q) => outer.some((p) => patternCovers(p, q)));
}

function patternCovers(outer: string, inner: string): boolean {
  const [os, ot] = splitPattern(outer.toLowerCase());
  const [is, it] = splitPattern(inner.toLowerCase());
  return partCovers(os, is) && partCovers(ot, it);
}

function splitPattern(pattern: string): [string, string] {
  const dot = pattern.indexOf('.');
  return [pattern.slice(0, dot), pattern.slice(dot + 1)];
}

/** Whether glob part `outer` matches everything glob part `inner` does (sound, not complete). */
function partCovers(outer: string, inner: string): boolean {
  if (outer === inner || outer === '*') return true;
  if (!inner.includes('*')) return compileTablePattern(`${outer}.x`).matches(inner, 'x');
  // pay* covers payroll* and pay_*_2026: whatever inner matches starts with its literal head.
  const head = outer.slice(0, -1);
  return outer.endsWith('*') && !head.includes('*') && inner.startsWith(head);
}
