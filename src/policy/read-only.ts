/**
 * Judging statements. Without an agent policy, the read-only profile: a
 * statement passes only when the classifier proved it a plain read, or it is
 * harmless session or transaction control. With one (profiles and rules,
 * rules.ts), the same checks run first for every statement, writes included;
 * then reads, writes and DDL are decided by the policy (access.ts), and an
 * allowed write comes out as allow-write, unless a freeze holds.
 */
import type { Classification, RelationRef, StatementFacts } from '../sql/facts.js';
import { accessNeeds, isDdlNeed, judgeAccess } from './access.js';
import type { Decision, Denial } from './decision.js';
import type { AgentPolicy } from './rules.js';
import { isAmbiguousFunction, isAmbiguousOperator, resolvedCallProblem } from './overloads.js';
import type { ResolvedCalls } from './overloads.js';
import { functionIsTrusted, unsafeOperator, untrustedCall } from './schema-knowledge.js';
import type { SchemaKnowledge } from './schema-knowledge.js';
import { matchingPattern, qualifiedRelation } from './table-pattern.js';
import { DESTRUCTIVE_RULES } from './tripwire.js';
import { unjudgedDenial } from './unjudged.js';
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
  /** Why the agent is frozen right now, or null; asked only when a statement is refused or would write (reads never pay for it). */
  freeze?: () => FreezeCause | null;
  /** The agent's profile and rules (rules.ts). Absent: the read-only profile, judged as before rules existed. */
  policy?: AgentPolicy;
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
  if (!FROZEN_RULES.has(decision.rule)) return decision;
  return freezeDenial(facts, subject) ?? decision;
}

/** The freeze's refusal of `facts`, when a freeze holds for the agent; null otherwise. */
function freezeDenial(facts: StatementFacts, subject: PolicySubject): Denial | null {
  if (subject.freeze === undefined) return null;
  const cause = subject.freeze();
  if (cause === null) return null;
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
function judgeAgainstSchema(facts: StatementFacts, subject: PolicySubject, schema: SchemaKnowledge, resolved?: ResolvedCalls): Denial | null {
  const trusted = subject.trustedFunctions ?? NO_TRUSTED;
  const hint =
    'A human who has read the function can list it under trusted_functions in the Airlock config; until then the agent may not call it.';
  // What the server said the statement calls decides the names only it can resolve.
  const byServer = resolved?.ok === true ? resolved : null;
  const unresolved = resolved?.ok === false ? ` (Airlock asked the server which function that is, and it could not say: ${resolved.error})` : '';
  for (const fn of facts.functions) {
    const why = untrustedCall(fn, schema, trusted);
    if (why !== null && !(byServer !== null && isAmbiguousFunction(fn, schema, trusted))) {
      return deny(subject, 'untrusted-function', `call ${fn}(): ${why}${unresolved}`, '42501', hint);
    }
  }
  for (const name of facts.fieldSelections) {
    if (byServer !== null) break;
    const fns = schema.userFunctions.get(name);
    const f = fns?.find((candidate) => !functionIsTrusted(candidate, trusted));
    if (f !== undefined) {
      return deny(subject, 'untrusted-function', `select .${name}: that may call ${f.schema}.${f.name}() in attribute notation${unresolved}`, '42501', hint);
    }
  }
  for (const op of facts.operators) {
    const why = unsafeOperator(op, schema);
    if (why !== null && !(byServer !== null && isAmbiguousOperator(op, schema))) {
      return deny(subject, 'untrusted-function', `use the operator ${op}: ${why}${unresolved}`, '42501', hint);
    }
  }
  if (byServer !== null) {
    const why = resolvedCallProblem(byServer, schema, trusted);
    if (why !== null) return deny(subject, 'untrusted-function', `run ${facts.command}: ${why}`, '42501', hint);
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

/**
 * System catalogs that hold credentials: role password hashes (an MD5 hash
 * logs in as the role), user mappings' and subscriptions' connection options,
 * and the server's own configuration files. pg_read_all_data reads them, and
 * so would the service account on the write path. An unqualified name finds
 * pg_catalog first (it is searched before search_path), so it counts too.
 */
const CREDENTIAL_CATALOGS: ReadonlySet<string> = new Set([
  'pg_authid',
  'pg_shadow',
  'pg_user_mapping',
  'pg_user_mappings',
  'pg_subscription',
  // The server's configuration files, as a superuser service account would read them (primary_conninfo, pg_hba.conf, pg_ident.conf).
  'pg_file_settings',
  'pg_hba_file_rules',
  'pg_ident_file_mappings',
  // The name an earlier version listed; no such view exists, but refusing it costs nothing.
  'pg_ident_file_rules',
  // Build options and paths of the server's installation.
  'pg_config',
]);

/**
 * The functions behind the configuration views above
 * (https://www.postgresql.org/docs/current/view-pg-hba-file-rules.html,
 * view-pg-ident-file-mappings.html, view-pg-file-settings.html,
 * view-pg-config.html): calling them reads the same files.
 */
const CREDENTIAL_FUNCTIONS: ReadonlySet<string> = new Set([
  'pg_hba_file_rules',
  'pg_ident_file_mappings',
  'pg_show_all_file_settings',
  'pg_config',
]);

/**
 * A credential catalog, as written or as a view reads it (pg_get_viewdef
 * leaves pg_catalog names unqualified, which qualifiedRelation puts in
 * public: a view's read of public.pg_authid counts too, the safe side).
 */
function isCredentialCatalog(rel: RelationRef, viaView = false): boolean {
  const schema = rel.schema?.toLowerCase() ?? null;
  return (schema === null || schema === 'pg_catalog' || (viaView && schema === 'public')) && CREDENTIAL_CATALOGS.has(rel.name.toLowerCase());
}

/** Airlock's own schemas in the production database (executor/capture.ts, executor/trash.ts): out of every agent's reach. */
const AIRLOCK_SCHEMAS: ReadonlySet<string> = new Set(['airlock', 'airlock_trash']);

/**
 * The temporary table each write connection captures rows into
 * (executor/capture.ts), in the agent's own session: what undo later
 * writes back as the service account comes from it, so no agent statement
 * may name it, in whatever schema (pg_temp is searched first).
 */
const CAPTURE_TABLE_NAME = 'airlock_capture';

function isAirlockInternal(rel: RelationRef): boolean {
  if (rel.name.toLowerCase() === CAPTURE_TABLE_NAME) return true;
  return rel.schema !== null && AIRLOCK_SCHEMAS.has(rel.schema.toLowerCase());
}

/** A call (lower-case, qualified as written) of a credential function: unqualified, or qualified with pg_catalog. */
export function isCredentialFunction(fn: string): boolean {
  const dot = fn.lastIndexOf('.');
  if (dot >= 0 && fn.slice(0, dot) !== 'pg_catalog') return false;
  return CREDENTIAL_FUNCTIONS.has(dot < 0 ? fn : fn.slice(dot + 1));
}

/**
 * The planner's statistics: most common values, histogram bounds and
 * multi-column MCV lists, sampled from every table
 * (https://www.postgresql.org/docs/current/view-pg-stats.html,
 * view-pg-stats-ext.html, view-pg-stats-ext-exprs.html, catalog-pg-statistic.html,
 * catalog-pg-statistic-ext-data.html). The read role sees them all
 * (pg_read_all_data), so a query on them reads values of any table.
 */
const STATISTICS_CATALOGS: ReadonlySet<string> = new Set([
  'pg_stats',
  'pg_stats_ext',
  'pg_stats_ext_exprs',
  'pg_statistic',
  'pg_statistic_ext_data',
]);

/**
 * A statistics catalog, as written or as a view reads it. pg_get_viewdef
 * leaves pg_catalog names unqualified, which qualifiedRelation then puts in
 * public: a view's read of public.pg_stats counts too (refusing more is the
 * safe side).
 */
function isStatisticsCatalog(rel: RelationRef, viaView: boolean): boolean {
  const schema = rel.schema?.toLowerCase() ?? null;
  const inCatalog = schema === null || schema === 'pg_catalog' || (viaView && schema === 'public');
  return inCatalog && STATISTICS_CATALOGS.has(rel.name.toLowerCase());
}

/**
 * What keeps some table from the agent (a rule that denies reads or asks
 * for approval, or canary tables), in words; null when it may read every
 * table, and so every table's statistics.
 */
function readRestriction(subject: PolicySubject): string | null {
  const by = subject.policy?.readsRestrictedBy ?? null;
  if (by !== null) return by.startsWith('rules[') ? `${by} keeps some tables from it` : `its ${by} keeps some tables from it`;
  if ((subject.canaryTables ?? []).length > 0) return 'canary tables are configured';
  return null;
}

/** Refuses the statistics catalogs to an agent that may not read every table. */
function judgeStatistics(facts: StatementFacts, subject: PolicySubject): Denial | null {
  const viaViews = throughViews(facts, subject.schema);
  const direct = facts.reads.length;
  const hit = viaViews.reads.findIndex((r, i) => isStatisticsCatalog(r, i >= direct));
  if (hit < 0) return null;
  const restriction = readRestriction(subject);
  if (restriction === null) return null;
  const rel = viaViews.reads[hit]!;
  const what = hit < direct ? `pg_catalog.${rel.name}` : `pg_catalog.${rel.name} (through a view)`;
  return deny(
    subject,
    'statistics-catalog',
    `read ${what}: the planner's statistics hold sample values (most common values, histogram bounds) of every table, and ${restriction}`,
    '42501',
    'Statistics are served only to agents that may read every table. A human can look them up directly, or lift the rule or canary that keeps tables from this agent in the Airlock config.',
  );
}

/**
 * The facts with every relation read through a view added to the reads: a
 * rule about a table holds for a view over it (deny and approve as much as
 * allow), however many views deep.
 */
function throughViews(facts: StatementFacts, schema: SchemaKnowledge | null | undefined): StatementFacts {
  if (schema === null || schema === undefined || schema.viewReads.size === 0) return facts;
  let under: RelationRef[] | null = null;
  for (const r of facts.reads) {
    const reads = schema.viewReads.get(qualifiedRelation(r).toLowerCase());
    if (reads === undefined) continue;
    under ??= [];
    for (const name of reads) {
      const dot = name.indexOf('.');
      under.push({ schema: name.slice(0, dot), name: name.slice(dot + 1) });
    }
  }
  return under === null ? facts : { ...facts, reads: [...facts.reads, ...under] };
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
const HINT_NO_RULE = 'No profile or rule lets an agent run this; a human can run the statement directly.';
const HINT_PREPARED_WRITE =
  "Send the statement itself, or prepare it with the protocol's Parse message (a driver's prepared statements do): Airlock judges and runs it as the write it is.";

const qualified = qualifiedRelation;

function deny(subject: PolicySubject, rule: string, what: string, sqlstate = '42501', hint?: string): Denial {
  return {
    kind: 'deny',
    rule,
    message: `airlock: agent "${subject.agent}" may not ${what} (profile ${subject.profile})`,
    hint: hint ?? (subject.policy === undefined ? HINT_READ_ONLY : HINT_NO_RULE),
    sqlstate,
  };
}

function describeTarget(facts: StatementFacts): string {
  const targets = facts.writes.length > 0 ? facts.writes : facts.reads;
  if (targets.length === 0) return facts.command;
  return `${facts.command} on ${targets.map(qualified).join(', ')}`;
}

function allowRead(): Decision {
  return { kind: 'allow-read', rule: 'read' };
}

/** BEGIN / START TRANSACTION ... READ WRITE and SET TRANSACTION READ WRITE: this transaction only, which the gateway routes. */
function opensReadWriteTransaction(facts: StatementFacts): boolean {
  const action = facts.transaction?.action;
  return facts.kind === 'transaction' && (action === 'begin' || action === 'set-transaction');
}

/** What to do instead of turning read-only mode off, by what the agent may do. */
function readWriteHint(subject: PolicySubject): string | undefined {
  if (subject.policy === undefined) return undefined;
  if (!subject.policy.mayWrite) {
    return 'This agent may not write, so its transactions stay READ ONLY. A human can give it a profile or rules that allow writes in the Airlock config.';
  }
  return "Start a writing transaction with BEGIN READ WRITE, or just send the write: read-only mode for the whole session is Airlock's to set, not the agent's.";
}

/**
 * Refusals that hold whatever the policy: canaries, side effects, server
 * files, turning read-only mode off (a READ WRITE transaction is let through
 * for an agent that may write), code Airlock cannot see.
 */
function judgeAlways(facts: StatementFacts, subject: PolicySubject, resolved?: ResolvedCalls): Denial | null {
  const canary = judgeCanaries(facts, subject);
  if (canary !== null) return canary;
  // A view runs with its owner's privileges: one over pg_authid leaks as much as pg_authid.
  const underViews = throughViews(facts, subject.schema).reads.slice(facts.reads.length);
  const secret = [...facts.reads, ...facts.writes].find((r) => isCredentialCatalog(r)) ?? underViews.find((r) => isCredentialCatalog(r, true));
  if (secret !== undefined) {
    return deny(
      subject,
      'credential-catalog',
      `read pg_catalog.${secret.name}: it holds credentials or the server's configuration (password hashes, connection strings, pg_hba.conf)`,
      '42501',
      'No agent may read credentials, whatever its profile; a human can look them up directly.',
    );
  }
  const internal = [...facts.reads, ...facts.writes, ...facts.changes.map((c) => c.relation), ...underViews].find(isAirlockInternal);
  if (internal !== undefined) {
    return deny(
      subject,
      'airlock-internal',
      internal.name.toLowerCase() === CAPTURE_TABLE_NAME
        ? `touch ${internal.name}: it is Airlock's own (the rows captured for undo)`
        : `touch ${internal.schema}.${internal.name}: the schema ${internal.schema} is Airlock's own (capture functions, tables in the trash)`,
      '42501',
      'No agent may read or change what Airlock keeps for undo. A human can list the trash (airlock trash list) and put a table back (airlock undo).',
    );
  }
  const secretFunction = facts.functions.find(isCredentialFunction);
  if (secretFunction !== undefined) {
    return deny(
      subject,
      'credential-catalog',
      `call ${secretFunction}(): it reads the server's configuration files (connection strings, pg_hba.conf, pg_ident.conf)`,
      '42501',
      'No agent may read credentials, whatever its profile; a human can look them up directly.',
    );
  }
  const statistics = judgeStatistics(facts, subject);
  if (statistics !== null) return statistics;
  if (facts.sideEffectFunctions.length > 0) {
    const fns = [...new Set(facts.sideEffectFunctions)].map((f) => `${f}()`).join(', ');
    return deny(subject, 'side-effect-function', `call ${fns}: it changes data, settings or the server`);
  }
  if (facts.copy !== undefined && facts.copy.target !== 'stdio') {
    return deny(subject, 'server-file', `run COPY with a server file or program`);
  }
  if (facts.transaction?.readWrite === true && !(subject.policy?.mayWrite === true && opensReadWriteTransaction(facts))) {
    // The classifier marks everything that could end read-only mode; name the way it was tried.
    const setting = facts.setting;
    if (setting?.action === 'reset-all') return deny(subject, 'session-reset', 'run RESET ALL');
    if (setting !== undefined && setting.name.includes('read_only')) {
      return deny(subject, 'read-only-setting', `change ${setting.name}`, '25006');
    }
    return deny(subject, 'read-write-transaction', `turn read-only mode off (${facts.command} ... READ WRITE)`, '25006', readWriteHint(subject));
  }
  if (subject.schema) {
    const refused = judgeAgainstSchema(facts, subject, subject.schema, resolved);
    if (refused !== null) return refused;
  }
  return null;
}

/**
 * Judges one statement: under the agent's policy when it has one, else under the read-only profile.
 * `resolved`: what the server said the statement calls (policy/overloads.ts), when it was asked.
 */
export function judgeStatement(facts: StatementFacts, subject: PolicySubject, prepared: PreparedLookup, resolved?: ResolvedCalls): Decision {
  const always = judgeAlways(facts, subject, resolved);
  if (always !== null) return always;
  const policy = subject.policy;
  switch (facts.kind) {
    case 'read': {
      // The classifier only says 'read' without these, but the policy does not lean on that alone.
      if (facts.modifyingCte || facts.selectInto || facts.locking) {
        return deny(subject, 'hidden-write', `run ${facts.command} that writes or locks rows`);
      }
      if (facts.inner !== undefined) {
        // EXPLAIN (plan only), PREPARE, DECLARE, COPY ... TO: what they carry must pass on its own.
        const inner = judgeStatement(facts.inner, subject, prepared);
        if (inner.kind === 'deny') return inner;
      }
      if (policy !== undefined) {
        const refused = judgeAccess(throughViews(facts, subject.schema), subject, policy);
        if (refused !== null) return refused;
      }
      return allowRead();
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
      return allowRead();
    }
    case 'session': {
      if (facts.prepared !== undefined) {
        // DEALLOCATE only forgets a statement the agent prepared.
        return allowRead();
      }
      const s = facts.setting;
      if (s === undefined) return deny(subject, 'session-reset', `run ${facts.command}`);
      if (s.action === 'reset-all') return deny(subject, 'session-reset', 'run RESET ALL');
      if ((HARMLESS_SETTINGS as readonly string[]).includes(s.name)) return allowRead();
      const pinned = PINNED_SETTINGS[s.name];
      if (pinned !== undefined && s.action === 'set' && s.values.length === 1 && pinned.includes(s.values[0]!.toLowerCase())) {
        return allowRead();
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
        const d = judgeStatement(target, subject, prepared);
        // SQL EXECUTE runs inside the server where Airlock cannot measure or journal it; a Parse'd write is run as itself.
        if (d.kind === 'allow-write') {
          return deny(subject, 'prepared-write', `EXECUTE ${facts.prepared.name}, a prepared ${target.command}`, '42501', HINT_PREPARED_WRITE);
        }
        return d;
      }
      return deny(subject, 'unknown-statement', `run ${facts.command}: Airlock cannot prove it is a read`);
    }
    case 'write':
    case 'ddl':
      return policy === undefined ? judgeWriteReadOnly(facts, subject) : judgeWrite(facts, subject, policy, prepared);
    case 'privilege':
      return deny(subject, 'privilege', describeTarget(facts));
    case 'utility':
      return deny(subject, 'utility', describeTarget(facts));
  }
}

/** The read-only profile's refusal of a write or DDL, as before rules existed. */
function judgeWriteReadOnly(facts: StatementFacts, subject: PolicySubject): Denial {
  if (facts.kind === 'ddl') return deny(subject, 'ddl', describeTarget(facts));
  if (facts.modifyingCte && facts.writes.length > 0) {
    return deny(subject, 'write', `write to ${facts.writes.map(qualified).join(', ')} from a WITH clause`);
  }
  if (facts.locking && facts.writes.length === 0) {
    return deny(subject, 'row-lock', `lock rows (SELECT ... FOR UPDATE/SHARE)`);
  }
  return deny(subject, 'write', describeTarget(facts));
}

/** A way of sending a write that Airlock does not run as a write: it cannot measure, journal or roll back through it. */
interface WriteRoute {
  rule: string;
  what: string;
  hint: string;
  /** What the route carries, judged first; undefined: the statement itself (COPY FROM). */
  carried: StatementFacts | undefined;
}

function writeRoute(facts: StatementFacts): WriteRoute | null {
  const inner = facts.inner;
  if (facts.explainAnalyze && inner !== undefined) {
    return {
      rule: 'explain-analyze-write',
      what: `run EXPLAIN ANALYZE of ${inner.command}, which executes it`,
      hint: 'EXPLAIN without ANALYZE shows the plan without running anything; to make the change, send the statement itself.',
      carried: inner,
    };
  }
  if (facts.prepared?.action === 'prepare' && inner !== undefined) {
    return { rule: 'prepared-write', what: `PREPARE ${inner.command} in SQL`, hint: HINT_PREPARED_WRITE, carried: inner };
  }
  if (facts.cursor?.action === 'declare' && inner !== undefined) {
    return {
      rule: 'cursor-write',
      what: `declare a cursor over ${inner.command} that writes or locks rows`,
      hint: 'Cursors are for reads; send the statement itself.',
      carried: inner,
    };
  }
  if (facts.copy?.direction === 'from') {
    return {
      rule: 'copy-from',
      what: `run ${describeTarget(facts)} FROM STDIN`,
      hint: 'Send INSERT statements instead (a multi-row VALUES list, or several): Airlock judges, measures and journals each one.',
      carried: undefined,
    };
  }
  if (facts.copy?.direction === 'to' && inner !== undefined) {
    return { rule: 'copy-write', what: `run COPY of ${inner.command}, which writes`, hint: 'Send the statement itself (with RETURNING, if you need its rows).', carried: inner };
  }
  return null;
}

/** A write or DDL under the agent's policy: allow-write when the policy allows all of it and it comes by a route Airlock runs. */
function judgeWrite(facts: StatementFacts, subject: PolicySubject, policy: AgentPolicy, prepared: PreparedLookup): Decision {
  const route = writeRoute(facts);
  if (route !== null) {
    // What the policy refuses is refused as such (and counted by the tripwire); only an allowed write hears about the route.
    const carried = route.carried === undefined ? judgeDirectWrite(facts, subject, policy) : judgeStatement(route.carried, subject, prepared);
    if (carried.kind === 'deny') return carried;
    return deny(subject, route.rule, route.what, '42501', route.hint);
  }
  return judgeDirectWrite(facts, subject, policy);
}

function judgeDirectWrite(written: StatementFacts, subject: PolicySubject, policy: AgentPolicy): Decision {
  const facts = throughViews(written, subject.schema);
  const needs = accessNeeds(facts);
  const ddl = needs.some(isDdlNeed);
  if (!needs.some((n) => n.kind !== 'select')) {
    // Default deny: a write whose effect the facts do not name is not allowed by any rule.
    return deny(subject, facts.kind === 'ddl' ? 'ddl' : 'write', `${describeTarget(facts)}: Airlock cannot tell what it changes`);
  }
  const refused = judgeAccess(facts, subject, policy, needs);
  if (refused !== null) return refused;
  return { kind: 'allow-write', rule: ddl ? 'ddl' : 'write' };
}

/**
 * Judges a whole query string: every statement must pass, or the string is
 * refused whole with the first refusal's reason. It is allow-write when any
 * statement is, and then refused whole while a freeze holds.
 */
export function judgeClassification(
  classification: Classification,
  subject: PolicySubject,
  prepared: PreparedLookup,
  /** What the server said statements call, by index in `classification` (statementsToResolve, gateway/overload-resolver.ts). */
  resolutions?: ReadonlyMap<number, ResolvedCalls>,
): Decision {
  if (!classification.ok) {
    if (classification.unjudged !== undefined) return unjudgedDenial(classification.unjudged, classification.error);
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
  let result = allowRead();
  for (const [index, facts] of classification.statements.entries()) {
    const d = judgeStatement(facts, subject, lookup, resolutions?.get(index));
    if (d.kind === 'deny') return underFreeze(d, facts, subject);
    if (d.kind === 'allow-write') {
      // Freeze is absolute: while one holds, no write comes out allowed, whatever the rules say.
      const frozen = freezeDenial(facts, subject);
      if (frozen !== null) return frozen;
      if (result.kind !== 'allow-write') result = d;
    }
    if (facts.prepared?.action === 'prepare' && facts.prepared.name !== null && facts.inner !== undefined) {
      preparedHere.set(facts.prepared.name, facts.inner);
    }
  }
  return result;
}
