/**
 * The read-only profile: a statement passes only when the classifier proved it
 * a plain read, or it is harmless session or transaction control.
 */
import type { Classification, StatementFacts } from '../sql/facts.js';
import type { Decision, Denial } from './decision.js';
import { functionIsTrusted, unsafeOperator, untrustedCall } from './schema-knowledge.js';
import type { SchemaKnowledge } from './schema-knowledge.js';
import { matchingPattern, qualifiedRelation } from './table-pattern.js';
import { DESTRUCTIVE_RULES } from './tripwire.js';
import type { FreezeCause } from '../state/freeze-store.js';
import type { TablePattern } from './table-pattern.js';

/** Who is asking, and what the policy knows of the schema they ask about. */
export interface PolicySubject {
  agent: string;
  profile: string;
  /** The upstream's functions and views; null where there is no database to ask (`airlock check`). */
  schema?: SchemaKnowledge | null;
  /** Functions outside pg_catalog an operator trusts (config trusted_functions), as schema.name. */
  trustedFunctions?: ReadonlySet<string>;
  /** Honeytoken tables no agent may touch (config canary_tables). */
  canaryTables?: readonly TablePattern[];
  /** Why the agent is frozen right now, or null; asked only when a statement is refused (reads never pay for it). */
  freeze?: () => FreezeCause | null;
}

/** Refusals a freeze takes over, so the answer names the freeze: attempts to change something. */
const FROZEN_RULES: ReadonlySet<string> = new Set(DESTRUCTIVE_RULES);

/** Who froze, when, why and until when, in words. */
export function describeFreeze(cause: FreezeCause): string {
  if (cause.kind === 'manual') {
    const f = cause.freeze;
    const scope = f.scope.kind === 'global' ? 'all agents are frozen' : 'it is frozen';
    return `${scope} by ${f.by} since ${f.at}${f.until === null ? ' until a human unfreezes it' : ` until ${f.until}`} (${f.reason})`;
  }
  return `it is frozen by the scheduled window "${cause.window}" from ${cause.since} until ${cause.until} (${cause.reason})`;
}

/** Under a freeze, a refused attempt to change something says so: the freeze is the reason that stands. */
function underFreeze(decision: Denial, facts: StatementFacts, subject: PolicySubject): Denial {
  if (subject.freeze === undefined || !FROZEN_RULES.has(decision.rule)) return decision;
  const cause = subject.freeze();
  if (cause === null) return decision;
  return {
    kind: 'deny',
    rule: 'freeze',
    message: `airlock: agent "${subject.agent}" may not ${describeTarget(facts)}: ${describeFreeze(cause)}`,
    hint: 'Reads go on. Only a human with an admin token can lift the freeze (airlock unfreeze); nothing sent over this connection can.',
    sqlstate: '25006',
  };
}

/** Refuses, and trips the tripwire for, any statement naming a canary table or a view over one. */
function judgeCanaries(facts: StatementFacts, subject: PolicySubject): Denial | null {
  const patterns = subject.canaryTables ?? [];
  // The read path's common case: no canaries configured, nothing to look at.
  if (patterns.length === 0 && (subject.schema?.canaryViews.size ?? 0) === 0) return null;
  for (const rel of [...facts.reads, ...facts.writes]) {
    const hit = matchingPattern(patterns, rel);
    const viaView = hit === undefined ? subject.schema?.canaryViews.get(qualifiedRelation(rel).toLowerCase()) : undefined;
    if (hit !== undefined || viaView !== undefined) {
      const what = hit !== undefined ? qualifiedRelation(rel) : `${qualifiedRelation(rel)} (a view over the canary table ${viaView})`;
      return {
        ...deny(
          subject,
          'canary',
          `touch ${what}: it is a canary table no agent has any business with`,
          '42501',
          'This is reported to the operators at once. If the agent needs this table, a human must take it off canary_tables.',
        ),
        trips: true,
      };
    }
  }
  return null;
}

const NO_TRUSTED: ReadonlySet<string> = new Set();

/** Refuses calls into code Airlock cannot see: user functions, attribute-notation calls, views that call them. */
function judgeAgainstSchema(facts: StatementFacts, subject: PolicySubject, schema: SchemaKnowledge): Denial | null {
  const trusted = subject.trustedFunctions ?? NO_TRUSTED;
  const hint =
    'A human who has read the function can list it under trusted_functions in the Airlock config; until then the agent may not call it.';
  for (const fn of facts.functions) {
    const why = untrustedCall(fn, schema, trusted);
    if (why !== null) return deny(subject, 'untrusted-function', `call ${fn}(): ${why}`, '42501', hint);
  }
  for (const name of facts.fieldSelections) {
    const fns = schema.userFunctions.get(name);
    const f = fns?.find((candidate) => !functionIsTrusted(candidate, trusted));
    if (f !== undefined) {
      return deny(subject, 'untrusted-function', `select .${name}: that may call ${f.schema}.${f.name}() in attribute notation`, '42501', hint);
    }
  }
  for (const op of facts.operators) {
    const why = unsafeOperator(op, schema);
    if (why !== null) return deny(subject, 'untrusted-function', `use the operator ${op}: ${why}`, '42501', hint);
  }
  for (const rel of facts.reads) {
    const key = `${rel.schema ?? 'public'}.${rel.name}`.toLowerCase();
    const why = schema.unsafeViews.get(key);
    if (why !== undefined) {
      return deny(subject, 'unsafe-view', `read the view ${key}: ${why}`, '42501', hint);
    }
    const policy = schema.unsafePolicies.get(key);
    if (policy !== undefined) return deny(subject, 'unsafe-policy', `read ${key}: ${policy}`, '42501', hint);
  }
  return null;
}

/** Looks up what a prepared statement (SQL PREPARE or protocol Parse) was judged to be. */
export type PreparedLookup = (name: string) => StatementFacts | undefined;

/**
 * Settings an agent may SET and RESET: presentation only. Anything that
 * changes how bytes become statements (client_encoding other than UTF-8,
 * standard_conforming_strings), which role runs them, read-only mode,
 * resource limits or name resolution (search_path) is not here.
 */
export const HARMLESS_SETTINGS = [
  'application_name',
  'bytea_output',
  'client_min_messages',
  'datestyle',
  'extra_float_digits',
  'intervalstyle',
  'timezone',
] as const;

/** Values of a setting that are allowed because they restate what Airlock enforces. */
const PINNED_SETTINGS: Record<string, readonly string[]> = {
  client_encoding: ['utf8', 'utf-8', 'unicode'],
  standard_conforming_strings: ['on', 'true', '1', 'yes'],
};

const HINT_READ_ONLY =
  'This agent may only read. A human can run the statement directly, or give the agent another profile in the Airlock config.';

const qualified = qualifiedRelation;

function deny(subject: PolicySubject, rule: string, what: string, sqlstate = '42501', hint = HINT_READ_ONLY): Denial {
  return {
    kind: 'deny',
    rule,
    message: `airlock: agent "${subject.agent}" may not ${what} (profile ${subject.profile})`,
    hint,
    sqlstate,
  };
}

function describeTarget(facts: StatementFacts): string {
  const targets = facts.writes.length > 0 ? facts.writes : facts.reads;
  if (targets.length === 0) return facts.command;
  return `${facts.command} on ${targets.map(qualified).join(', ')}`;
}

/** Judges one statement under the read-only profile. */
export function judgeReadOnly(facts: StatementFacts, subject: PolicySubject, prepared: PreparedLookup): Decision {
  const allow: Decision = { kind: 'allow-read', rule: 'read' };
  const canary = judgeCanaries(facts, subject);
  if (canary !== null) return canary;
  if (facts.sideEffectFunctions.length > 0) {
    const fns = [...new Set(facts.sideEffectFunctions)].map((f) => `${f}()`).join(', ');
    return deny(subject, 'side-effect-function', `call ${fns}: it changes data, settings or the server`);
  }
  if (facts.copy !== undefined && facts.copy.target !== 'stdio') {
    return deny(subject, 'server-file', `run COPY with a server file or program`);
  }
  if (facts.transaction?.readWrite === true) {
    // The classifier marks everything that could end read-only mode; name the way it was tried.
    const setting = facts.setting;
    if (setting?.action === 'reset-all') return deny(subject, 'session-reset', 'run RESET ALL');
    if (setting !== undefined && setting.name.includes('read_only')) {
      return deny(subject, 'read-only-setting', `change ${setting.name}`, '25006');
    }
    return deny(subject, 'read-write-transaction', `turn read-only mode off (${facts.command} ... READ WRITE)`, '25006');
  }
  if (subject.schema) {
    const refused = judgeAgainstSchema(facts, subject, subject.schema);
    if (refused !== null) return refused;
  }
  switch (facts.kind) {
    case 'read': {
      // The classifier only says 'read' without these, but the policy does not lean on that alone.
      if (facts.modifyingCte || facts.selectInto || facts.locking) {
        return deny(subject, 'hidden-write', `run ${facts.command} that writes or locks rows`);
      }
      if (facts.inner !== undefined) {
        const inner = judgeReadOnly(facts.inner, subject, prepared);
        if (inner.kind === 'deny') return inner;
      }
      return allow;
    }
    case 'transaction': {
      const t = facts.transaction;
      if (t === undefined) return deny(subject, 'unknown-statement', `run ${facts.command}`);
      if (t.action === 'prepare-transaction' || t.action === 'commit-prepared' || t.action === 'rollback-prepared') {
        return deny(subject, 'two-phase-commit', `use ${facts.command}`);
      }
      if (facts.setting !== undefined && facts.setting.name !== '' && !facts.setting.name.startsWith('transaction')) {
        return deny(subject, 'setting', `change the setting ${facts.setting.name}`);
      }
      return allow;
    }
    case 'session': {
      if (facts.prepared !== undefined) {
        // DEALLOCATE only forgets a statement the agent prepared.
        return allow;
      }
      const s = facts.setting;
      if (s === undefined) return deny(subject, 'session-reset', `run ${facts.command}`);
      if (s.action === 'reset-all') return deny(subject, 'session-reset', 'run RESET ALL');
      if ((HARMLESS_SETTINGS as readonly string[]).includes(s.name)) return allow;
      const pinned = PINNED_SETTINGS[s.name];
      if (pinned !== undefined && s.action === 'set' && s.values.length === 1 && pinned.includes(s.values[0]!.toLowerCase())) {
        return allow;
      }
      if (s.name === 'role' || s.name === 'session_authorization') {
        return deny(subject, 'role-change', `change its role (${s.action === 'set' ? 'SET' : 'RESET'} ${s.name.toUpperCase()})`);
      }
      if (s.name.includes('read_only')) {
        return deny(subject, 'read-only-setting', `change ${s.name}`, '25006');
      }
      return deny(subject, 'setting', `change the setting ${s.name}`);
    }
    case 'unknown': {
      if (facts.prepared?.action === 'execute' && facts.prepared.name !== null) {
        const target = prepared(facts.prepared.name);
        if (target === undefined) {
          return deny(subject, 'unknown-prepared-statement', `EXECUTE ${facts.prepared.name}, which Airlock has not seen prepared`);
        }
        return judgeReadOnly(target, subject, prepared);
      }
      return deny(subject, 'unknown-statement', `run ${facts.command}: Airlock cannot prove it is a read`);
    }
    case 'write':
      if (facts.modifyingCte && facts.writes.length > 0) {
        return deny(subject, 'write', `write to ${facts.writes.map(qualified).join(', ')} from a WITH clause`);
      }
      if (facts.locking && facts.writes.length === 0) {
        return deny(subject, 'row-lock', `lock rows (SELECT ... FOR UPDATE/SHARE)`);
      }
      return deny(subject, 'write', describeTarget(facts));
    case 'ddl':
      return deny(subject, 'ddl', describeTarget(facts));
    case 'privilege':
      return deny(subject, 'privilege', describeTarget(facts));
    case 'utility':
      return deny(subject, 'utility', describeTarget(facts));
  }
}

/**
 * Judges a whole query string: every statement must pass, or the string is
 * refused whole with the first refusal's reason.
 */
export function judgeClassification(
  classification: Classification,
  subject: PolicySubject,
  prepared: PreparedLookup,
): Decision {
  if (!classification.ok) {
    return {
      kind: 'deny',
      rule: 'unparsable',
      message: `airlock: the statement could not be parsed, so it was not run: ${classification.error}`,
      hint: 'Only statements the PostgreSQL parser reads cleanly are judged; fix the syntax and try again.',
      sqlstate: '42601',
    };
  }
  // A PREPARE earlier in the same string is in force for an EXECUTE after it.
  const preparedHere = new Map<string, StatementFacts>();
  const lookup: PreparedLookup = (name) => preparedHere.get(name) ?? prepared(name);
  for (const facts of classification.statements) {
    const d = judgeReadOnly(facts, subject, lookup);
    if (d.kind === 'deny') return underFreeze(d, facts, subject);
    if (facts.prepared?.action === 'prepare' && facts.prepared.name !== null && facts.inner !== undefined) {
      preparedHere.set(facts.prepared.name, facts.inner);
    }
  }
  return { kind: 'allow-read', rule: 'read' };
}
