/**
 * The read-only profile, by the table: what each statement is judged to be,
 * by which rule (docs/read-path.md's table) and with which SQLSTATE.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classify, loadParser } from '../sql/classify.js';
import type { StatementFacts } from '../sql/facts.js';
import { HARMLESS_SETTINGS, judgeClassification } from './read-only.js';
import type { PolicySubject, PreparedLookup } from './read-only.js';
import { DEFAULT_WRITE_LIMITS, compileAgentPolicy } from './rules.js';
import type { RuleConfig, WriteLimits } from './rules.js';
import { compileTablePattern } from './table-pattern.js';
import type { FreezeCause } from '../state/freeze-store.js';
import type { SchemaKnowledge } from './schema-knowledge.js';

const SUBJECT: PolicySubject = { agent: 'claude', profile: 'read-only' };
const NOTHING_PREPARED: PreparedLookup = () => undefined;

beforeAll(async () => {
  await loadParser();
});

function judge(sql: string, lookup: PreparedLookup = NOTHING_PREPARED) {
  return judgeClassification(classify(sql), SUBJECT, lookup);
}

/** The facts of a single statement, for a prepared-statement lookup. */
function factsOf(sql: string): StatementFacts {
  const c = classify(sql);
  if (!c.ok || c.statements.length !== 1) throw new Error(`expected one statement in ${sql}`);
  return c.statements[0]!;
}

type Row = [sql: string, rule: string, sqlstate?: string];

const ALLOWED: string[] = [
  'SELECT 1',
  'SELECT * FROM executives',
  'SELECT count(*) FROM executives',
  'SELECT 1 FROM executives e JOIN companies c ON c.id = e.company_id',
  'SELECT * FROM (SELECT id FROM companies) s WHERE id IN (SELECT company_id FROM executives)',
  'WITH x AS (SELECT id FROM companies) SELECT * FROM x',
  'TABLE companies',
  'VALUES (1), (2)',
  'SELECT 1; SELECT 2',
  'SHOW search_path',
  'SHOW ALL',
  'EXPLAIN SELECT * FROM executives',
  'EXPLAIN ANALYZE SELECT * FROM executives',
  'DECLARE c CURSOR FOR SELECT * FROM executives',
  'FETCH 10 FROM c',
  'MOVE 1 IN c',
  'CLOSE c',
  'COPY executives TO STDOUT',
  'COPY (SELECT * FROM executives) TO STDOUT',
  'BEGIN',
  'BEGIN READ ONLY',
  'BEGIN ISOLATION LEVEL SERIALIZABLE',
  'START TRANSACTION',
  'COMMIT',
  'ROLLBACK',
  'END',
  'SAVEPOINT a',
  'RELEASE SAVEPOINT a',
  'ROLLBACK TO SAVEPOINT a',
  'SET TRANSACTION READ ONLY',
  'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ',
  'PREPARE p AS SELECT * FROM executives',
  'DEALLOCATE p',
  'DEALLOCATE ALL',
];

const REFUSED: Row[] = [
  // Writes, however they are dressed.
  ['DELETE FROM executives', 'write'],
  ['DELETE FROM executives WHERE id = 1', 'write'],
  ['UPDATE executives SET title = NULL', 'write'],
  ["INSERT INTO executives (full_name) VALUES ('x')", 'write'],
  ['MERGE INTO executives e USING companies c ON e.company_id = c.id WHEN MATCHED THEN DELETE', 'write'],
  ['TRUNCATE executives', 'write'],
  ['COPY executives FROM STDIN', 'write'],
  ['SELECT * INTO stolen FROM executives', 'write'],
  ['WITH d AS (DELETE FROM executives RETURNING *) SELECT * FROM d', 'write'],
  ['SELECT * FROM (WITH d AS (DELETE FROM executives RETURNING *) SELECT * FROM d) s', 'write'],
  ['EXPLAIN ANALYZE DELETE FROM executives', 'write'],
  ['PREPARE p AS DELETE FROM executives', 'write'],
  ['SELECT 1; DELETE FROM executives', 'write'],
  // Row locks.
  ['SELECT * FROM executives FOR UPDATE', 'row-lock'],
  ['SELECT * FROM executives FOR NO KEY UPDATE', 'row-lock'],
  ['SELECT * FROM executives FOR SHARE', 'row-lock'],
  ['SELECT * FROM executives FOR KEY SHARE', 'row-lock'],
  ['DECLARE c CURSOR FOR SELECT * FROM executives FOR UPDATE', 'row-lock'],
  // Schema, privileges, utilities.
  ['CREATE TABLE t (x int)', 'ddl'],
  ['CREATE TEMP TABLE t (x int)', 'ddl'],
  ['CREATE TABLE t AS SELECT 1', 'ddl'],
  ['DROP TABLE executives', 'ddl'],
  ['ALTER TABLE executives ADD COLUMN x int', 'ddl'],
  ['CREATE INDEX ON executives (id)', 'ddl'],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", 'ddl'],
  ['CREATE EXTENSION dblink', 'ddl'],
  ["COMMENT ON TABLE executives IS 'x'", 'ddl'],
  ['GRANT SELECT ON executives TO PUBLIC', 'privilege'],
  ['REVOKE SELECT ON executives FROM PUBLIC', 'privilege'],
  ['CREATE ROLE r', 'privilege'],
  ['ALTER ROLE claude SUPERUSER', 'privilege'],
  ['ALTER TABLE executives OWNER TO postgres', 'privilege'],
  ['DO $$ BEGIN DELETE FROM executives; END $$', 'utility'],
  ['CALL p()', 'utility'],
  ['LOCK executives', 'utility'],
  ['LISTEN ch', 'utility'],
  ['NOTIFY ch', 'utility'],
  ['VACUUM executives', 'utility'],
  ["LOAD 'x'", 'utility'],
  ["ALTER SYSTEM SET work_mem = '1GB'", 'utility'],
  ['CHECKPOINT', 'utility'],
  // Functions with side effects, wherever they sit.
  ["SELECT nextval('companies_id_seq')", 'side-effect-function'],
  ["SELECT * FROM executives WHERE id = (SELECT nextval('s'))", 'side-effect-function'],
  ['SELECT pg_advisory_lock(1)', 'side-effect-function'],
  ["SELECT set_config('default_transaction_read_only', 'off', false)", 'side-effect-function'],
  ["SELECT pg_catalog.set_config('role', 'postgres', false)", 'side-effect-function'],
  ['SELECT pg_terminate_backend(1)', 'side-effect-function'],
  ["SELECT pg_read_file('/etc/passwd')", 'side-effect-function'],
  ["SELECT lo_import('/etc/passwd')", 'side-effect-function'],
  ["SELECT query_to_xml('DELETE FROM executives', true, true, '')", 'side-effect-function'],
  ['DECLARE c CURSOR FOR SELECT pg_advisory_lock(1)', 'side-effect-function'],
  // Transactions.
  ['BEGIN READ WRITE', 'read-write-transaction', '25006'],
  ['START TRANSACTION READ WRITE', 'read-write-transaction', '25006'],
  ['SET TRANSACTION READ WRITE', 'read-write-transaction', '25006'],
  ['SET transaction_read_only = off', 'read-only-setting', '25006'],
  ['SET default_transaction_read_only = off', 'read-only-setting', '25006'],
  ['RESET default_transaction_read_only', 'read-only-setting', '25006'],
  ["PREPARE TRANSACTION 'x'", 'two-phase-commit'],
  ["COMMIT PREPARED 'x'", 'two-phase-commit'],
  ["ROLLBACK PREPARED 'x'", 'two-phase-commit'],
  // Settings.
  ['SET search_path = evil, public', 'setting'],
  ['SET LOCAL search_path = public', 'setting'],
  ['SET statement_timeout = 0', 'setting'],
  ['SET lock_timeout = 0', 'setting'],
  ["SET work_mem = '1GB'", 'setting'],
  ['SET session_replication_role = replica', 'setting'],
  ["SET client_encoding = 'SJIS'", 'setting'],
  ["SET client_encoding TO 'LATIN1'", 'setting'],
  ["SET NAMES 'SJIS'", 'setting'],
  ['SET client_encoding = DEFAULT', 'setting'],
  ['RESET client_encoding', 'setting'],
  ['SET standard_conforming_strings = off', 'setting'],
  ['RESET standard_conforming_strings', 'setting'],
  ['SET role postgres', 'role-change'],
  ['SET ROLE NONE', 'role-change'],
  ['RESET ROLE', 'role-change'],
  ['SET SESSION AUTHORIZATION postgres', 'role-change'],
  ['RESET SESSION AUTHORIZATION', 'role-change'],
  ['RESET ALL', 'session-reset'],
  ['DISCARD ALL', 'session-reset'],
  // Prepared statements Airlock has not seen.
  ['EXECUTE p', 'unknown-prepared-statement'],
  ['EXECUTE q; PREPARE q AS SELECT 1', 'unknown-prepared-statement'],
  // Text the parser cannot read.
  ['SELEC 1', 'unparsable', '42601'],
  ['SELECT FROM WHERE', 'unparsable', '42601'],
  ["SELECT 'unterminated", 'unparsable', '42601'],
];

describe('judgeClassification under the read-only profile', () => {
  it.each(ALLOWED)('allows %s', (sql) => {
    expect(judge(sql)).toEqual({ kind: 'allow-read', rule: 'read' });
  });

  it.each(REFUSED)('refuses %s by rule %s', (sql, rule, sqlstate = '42501') => {
    const d = judge(sql);
    expect(d).toMatchObject({ kind: 'deny', rule, sqlstate });
    if (d.kind !== 'deny') return;
    if (rule === 'unparsable') {
      expect(d.message).toMatch(/^airlock: the statement could not be parsed, so it was not run: /);
    } else {
      expect(d.message).toMatch(/^airlock: agent "claude" may not .+ \(profile read-only\)$/);
    }
    expect(d.hint.length).toBeGreaterThan(20);
  });

  it('names the agent, the command, the qualified table and the profile', () => {
    const d = judge('DELETE FROM executives');
    expect(d.kind === 'deny' && d.message).toBe('airlock: agent "claude" may not DELETE on public.executives (profile read-only)');
    const q = judge('UPDATE hr.people SET x = 1');
    expect(q.kind === 'deny' && q.message).toBe('airlock: agent "claude" may not UPDATE on hr.people (profile read-only)');
    const other = judgeClassification(classify('TRUNCATE executives'), { agent: 'cursor', profile: 'read-only' }, NOTHING_PREPARED);
    expect(other.kind === 'deny' && other.message).toContain('agent "cursor" may not TRUNCATE');
  });

  it('names the side-effect function it refused', () => {
    const d = judge("SELECT id, nextval('s') FROM executives");
    expect(d.kind === 'deny' && d.message).toContain('nextval()');
  });

  it('refuses a whole string with the first refusal', () => {
    const d = judge('SELECT 1; SET search_path = evil; DELETE FROM executives');
    expect(d).toMatchObject({ kind: 'deny', rule: 'setting' });
  });

  it('carries the syntax error in an unparsable refusal', () => {
    const d = judge('SELEC 1');
    expect(d.kind === 'deny' && d.message).toContain('syntax error at or near "SELEC"');
  });
});

describe('settings', () => {
  const harmless = [
    "SET application_name = 'psql'",
    "SET SESSION application_name = 'x'",
    'RESET application_name',
    "SET TIME ZONE 'UTC'",
    "SET timezone = 'Europe/Paris'",
    "SET DateStyle = 'ISO, MDY'",
    'SET extra_float_digits = 3',
    "SET IntervalStyle = 'iso_8601'",
    'SET client_min_messages = warning',
    "SET bytea_output = 'hex'",
    // Restating what Airlock enforces is harmless.
    "SET client_encoding = 'UTF8'",
    "SET client_encoding = 'utf-8'",
    "SET NAMES 'UTF8'",
    'SET standard_conforming_strings = on',
    "SET standard_conforming_strings = 'on'",
    'SET standard_conforming_strings TO true',
  ];
  it.each(harmless)('allows %s', (sql) => {
    expect(judge(sql)).toEqual({ kind: 'allow-read', rule: 'read' });
  });

  it('lists only presentation settings as harmless', () => {
    for (const dangerous of ['search_path', 'role', 'client_encoding', 'standard_conforming_strings', 'statement_timeout']) {
      expect(HARMLESS_SETTINGS as readonly string[]).not.toContain(dangerous);
    }
  });

  it('names the setting it refused', () => {
    const d = judge('SET statement_timeout = 0');
    expect(d.kind === 'deny' && d.message).toBe(
      'airlock: agent "claude" may not change the setting statement_timeout (profile read-only)',
    );
  });
});

describe('prepared statements', () => {
  it('lets a PREPARE earlier in the same string stand for an EXECUTE after it', () => {
    expect(judge('PREPARE p AS SELECT * FROM executives; EXECUTE p')).toEqual({ kind: 'allow-read', rule: 'read' });
  });

  it('refuses a PREPARE of a write before its EXECUTE can run', () => {
    expect(judge('PREPARE p AS DELETE FROM executives; EXECUTE p')).toMatchObject({ kind: 'deny', rule: 'write' });
  });

  it('refuses EXECUTE of a name it has not seen prepared, naming it', () => {
    const d = judge('EXECUTE mystery');
    expect(d).toMatchObject({ kind: 'deny', rule: 'unknown-prepared-statement', sqlstate: '42501' });
    expect(d.kind === 'deny' && d.message).toContain('EXECUTE mystery');
  });

  it('judges EXECUTE by what the lookup says was prepared', () => {
    const lookup = (facts: StatementFacts): PreparedLookup => (name) => (name === 'p' ? facts : undefined);
    expect(judge('EXECUTE p', lookup(factsOf('SELECT * FROM executives')))).toEqual({ kind: 'allow-read', rule: 'read' });
    expect(judge('EXECUTE p(1)', lookup(factsOf('DELETE FROM executives WHERE id = $1')))).toMatchObject({
      kind: 'deny',
      rule: 'write',
    });
    expect(judge('EXECUTE q', lookup(factsOf('SELECT 1')))).toMatchObject({ kind: 'deny', rule: 'unknown-prepared-statement' });
  });

  it('does not let a PREPARE in one string outlive it', () => {
    judge('PREPARE p AS SELECT 1');
    expect(judge('EXECUTE p')).toMatchObject({ kind: 'deny', rule: 'unknown-prepared-statement' });
  });
});

// docs/read-path.md: "`server-file` | 42501 | COPY to or from a server file or
// program", and "`read-write-transaction`, `read-only-setting` | 25006 | ...
// changing (default_)transaction_read_only". These pin the documented rule
// names, which the audit log records.
describe('rules as docs/read-path.md names them', () => {
  it.each([
    "COPY executives TO '/tmp/x'",
    "COPY executives TO PROGRAM 'cat'",
    "COPY (SELECT 1) TO PROGRAM 'curl example.com'",
  ])('refuses %s by rule server-file', (sql) => {
    expect(judge(sql)).toMatchObject({ kind: 'deny', rule: 'server-file', sqlstate: '42501' });
  });

  it('refuses SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE with 25006', () => {
    expect(judge('SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE')).toMatchObject({ kind: 'deny', sqlstate: '25006' });
  });
});

// ---------------------------------------------------------------------------
// Under an agent policy: profiles and rules (rules.ts), judged by access.ts.

/** Rules as the config resolves them, indexed in order; left-out keys are null. */
function rules(...list: (Partial<Omit<RuleConfig, 'index'>> & Pick<RuleConfig, 'decision'>)[]): RuleConfig[] {
  return list.map((r, index) => ({ agents: null, kinds: null, tables: null, note: null, ...r, index }));
}

function policySubject(profile: string, ruleList: readonly RuleConfig[] = [], limits: Partial<WriteLimits> = {}, extra: Partial<PolicySubject> = {}): PolicySubject {
  const writeLimits = { ...DEFAULT_WRITE_LIMITS, ...limits };
  const policy = compileAgentPolicy({ name: 'claude', groups: ['bots'], profile, writeLimits }, ruleList);
  return { agent: 'claude', profile, policy, ...extra };
}

function judgeWith(subject: PolicySubject, sql: string, lookup: PreparedLookup = NOTHING_PREPARED) {
  return judgeClassification(classify(sql), subject, lookup);
}

/**
 * The issue's example, as the config would resolve it: "the agent may INSERT
 * and UPDATE public.tasks, anything touching public.companies needs approval,
 * no DDL at all, reads everywhere except public.secrets".
 */
const ISSUE_RULES = rules(
  { agents: ['claude'], kinds: ['insert', 'update'], tables: ['public.tasks'], decision: 'allow' },
  { tables: ['public.companies'], decision: 'approve' },
  { kinds: ['create', 'alter', 'drop'], decision: 'deny' },
  { kinds: ['select'], tables: ['public.secrets'], decision: 'deny' },
);
const ISSUE = policySubject('read-only', ISSUE_RULES);

type Expected = 'allow-read' | 'allow-write' | string;

/** [sql, the decision's kind for allows, else the denying rule; a fragment of the message]. */
const ISSUE_CASES: readonly (readonly [string, Expected, string?])[] = [
  ["INSERT INTO tasks (title) VALUES ('x')", 'allow-write'],
  ["INSERT INTO public.tasks (title) VALUES ('x') RETURNING id", 'allow-write'],
  ['UPDATE tasks SET done = true WHERE id = 1', 'allow-write'],
  ["INSERT INTO tasks (id, title) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET title = excluded.title", 'allow-write'],
  ['SELECT * FROM tasks FOR UPDATE', 'allow-write'],
  ['BEGIN; UPDATE tasks SET done = true WHERE id = 1; COMMIT', 'allow-write'],
  ['SELECT 1; INSERT INTO tasks DEFAULT VALUES', 'allow-write'],
  ['SELECT * FROM tasks', 'allow-read'],
  ['SELECT 1', 'allow-read'],
  ['SELECT * FROM tasks t JOIN projects p ON p.id = t.project_id', 'allow-read'],
  ['EXPLAIN INSERT INTO tasks DEFAULT VALUES', 'allow-read'],
  ['BEGIN READ WRITE', 'allow-read'],
  ['START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE', 'allow-read'],
  ['SET TRANSACTION READ WRITE', 'allow-read'],
  // What the rules do not allow.
  ['DELETE FROM tasks WHERE id = 1', 'write', 'may not delete from public.tasks (profile read-only)'],
  ['TRUNCATE tasks', 'write', 'may not truncate public.tasks'],
  ['MERGE INTO tasks t USING staging s ON t.id = s.id WHEN MATCHED THEN UPDATE SET title = s.title', 'write', 'merge into public.tasks'],
  ['MERGE INTO tasks t USING staging s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)', 'write', 'merge into public.tasks'],
  ['WITH d AS (DELETE FROM tasks RETURNING *) INSERT INTO tasks SELECT * FROM d', 'write', 'delete from public.tasks'],
  ['INSERT INTO projects (name) VALUES (1)', 'write', 'insert into public.projects'],
  ['INSERT INTO "Tasks" DEFAULT VALUES', 'write', 'insert into public.Tasks'],
  ['INSERT INTO "Public".tasks DEFAULT VALUES', 'write', 'insert into Public.tasks'],
  ['SELECT * FROM tasks t JOIN projects p ON p.id = t.project_id FOR UPDATE', 'row-lock', 'lock rows of public.projects'],
  // Missing WHERE, with the default write_limits.
  ['UPDATE tasks SET done = true', 'where-required', 'may not update public.tasks without a WHERE clause'],
  ['WITH u AS (UPDATE tasks SET done = true RETURNING id) SELECT * FROM u', 'where-required'],
  // Anything touching companies needs approval, which is not available yet.
  ['SELECT * FROM companies', 'approval-required', "may not read public.companies without a human's approval, which rules[1] requires"],
  ['UPDATE tasks SET company = c.name FROM companies c WHERE c.id = tasks.company_id', 'approval-required'],
  ['INSERT INTO tasks SELECT * FROM companies', 'approval-required'],
  ['SELECT * FROM companies FOR UPDATE', 'approval-required'],
  ['DELETE FROM companies WHERE id = 1', 'approval-required'],
  // No DDL at all.
  ['CREATE TABLE t (x int)', 'ddl', 'may not CREATE TABLE on public.t: rules[2] denies it'],
  ['CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', 'ddl', 'may not run CREATE FUNCTION: rules[2] denies it'],
  ['DROP TABLE tasks', 'ddl', 'DROP TABLE on public.tasks'],
  ['ALTER TABLE tasks DROP COLUMN notes', 'ddl'],
  ['ALTER TABLE tasks ADD COLUMN notes text', 'ddl'],
  ['CREATE INDEX ON tasks (title)', 'ddl'],
  ['SELECT * INTO tasks_copy FROM tasks', 'ddl', 'SELECT INTO on public.tasks_copy'],
  ['CREATE TABLE tasks_copy AS SELECT * FROM tasks', 'ddl'],
  // Reads everywhere except secrets, wherever the read sits.
  ['SELECT * FROM secrets', 'policy', 'may not read public.secrets: rules[3] denies it'],
  ['SELECT * FROM public.Secrets', 'policy'],
  ['INSERT INTO tasks SELECT * FROM secrets', 'policy'],
  ['UPDATE tasks SET title = (SELECT value FROM secrets LIMIT 1) WHERE id = 1', 'policy'],
  ['EXPLAIN SELECT * FROM secrets', 'policy'],
  // Ways of writing Airlock does not run as writes.
  ['COPY tasks FROM STDIN', 'copy-from'],
  ['COPY secrets FROM STDIN', 'write'],
  ['EXPLAIN ANALYZE INSERT INTO tasks DEFAULT VALUES', 'explain-analyze-write'],
  ['EXPLAIN ANALYZE DELETE FROM tasks WHERE id = 1', 'write'],
  ['PREPARE p AS INSERT INTO tasks DEFAULT VALUES', 'prepared-write'],
  ['PREPARE p AS INSERT INTO tasks DEFAULT VALUES; EXECUTE p', 'prepared-write'],
  ['PREPARE p AS DELETE FROM tasks WHERE id = $1', 'write'],
  ['DECLARE c CURSOR FOR SELECT * FROM tasks FOR UPDATE', 'cursor-write'],
  ['COPY (INSERT INTO tasks DEFAULT VALUES RETURNING id) TO STDOUT', 'copy-write'],
  // What no rule changes.
  ["INSERT INTO tasks (id) VALUES (nextval('tasks_id_seq'))", 'side-effect-function'],
  ["COPY tasks FROM '/etc/passwd'", 'server-file'],
  ['GRANT SELECT ON tasks TO PUBLIC', 'privilege'],
  ['LOCK tasks', 'utility'],
  ['DO $$ BEGIN DELETE FROM tasks; END $$', 'utility'],
  ['VACUUM tasks', 'utility'],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', 'read-write-transaction'],
  ['SET default_transaction_read_only = off', 'read-only-setting'],
  ['SET transaction_read_only = off', 'read-only-setting'],
  ['RESET ALL', 'session-reset'],
  ['SET search_path = evil, public', 'setting'],
  ["PREPARE TRANSACTION 'x'", 'two-phase-commit'],
  ['EXECUTE nothing', 'unknown-prepared-statement'],
  ['INSERT INTO tasks DEFAULT VALUES; DELETE FROM tasks WHERE id = 2', 'write'],
];

describe("the issue's example policy", () => {
  it.each(ISSUE_CASES.map(([sql, expected, fragment]) => ({ sql, expected, fragment })))('$sql: $expected', ({ sql, expected, fragment }) => {
    const d = judgeWith(ISSUE, sql);
    if (expected === 'allow-read' || expected === 'allow-write') {
      expect(d).toEqual({ kind: expected, rule: expected === 'allow-read' ? 'read' : 'write' });
      return;
    }
    expect(d).toMatchObject({ kind: 'deny', rule: expected });
    if (d.kind !== 'deny') return;
    expect(d.message).toMatch(/^airlock: agent "claude" may not .+ \(profile read-only\)$/);
    if (fragment !== undefined) expect(d.message).toContain(fragment);
    expect(d.hint.length).toBeGreaterThan(20);
  });

  it('refuses with the SQLSTATEs the rules document', () => {
    expect(judgeWith(ISSUE, 'SELECT * FROM companies')).toMatchObject({ sqlstate: '42501' });
    expect(judgeWith(ISSUE, 'UPDATE tasks SET done = true')).toMatchObject({ sqlstate: '42501' });
    expect(judgeWith(ISSUE, 'SET default_transaction_read_only = off')).toMatchObject({ sqlstate: '25006' });
  });

  it('says what a human can do', () => {
    const approval = judgeWith(ISSUE, 'SELECT * FROM companies');
    expect(approval.kind === 'deny' && approval.message).toContain("without a human's approval");
    expect(approval.kind === 'deny' && approval.hint).toMatch(/waits for a human to approve it/i);
    const where = judgeWith(ISSUE, 'UPDATE tasks SET done = true');
    expect(where.kind === 'deny' && where.hint).toContain('write_limits.require_where');
    const prepared = judgeWith(ISSUE, 'PREPARE p AS INSERT INTO tasks DEFAULT VALUES');
    expect(prepared.kind === 'deny' && prepared.hint).toContain("prepare it with the protocol's Parse message");
    const byRule = judgeWith(ISSUE, 'DROP TABLE tasks');
    expect(byRule.kind === 'deny' && byRule.hint).toContain('rules[2]');
  });

  it('judges SQL EXECUTE by what was prepared: a prepared write is refused, even one the rules allow', () => {
    const lookup = (sql: string): PreparedLookup => (name) => (name === 'p' ? factsOf(sql) : undefined);
    expect(judgeWith(ISSUE, 'EXECUTE p', lookup('INSERT INTO tasks DEFAULT VALUES'))).toMatchObject({ kind: 'deny', rule: 'prepared-write' });
    expect(judgeWith(ISSUE, 'EXECUTE p(1)', lookup('DELETE FROM tasks WHERE id = $1'))).toMatchObject({ kind: 'deny', rule: 'write' });
    expect(judgeWith(ISSUE, 'EXECUTE p', lookup('SELECT * FROM tasks'))).toEqual({ kind: 'allow-read', rule: 'read' });
    expect(judgeWith(ISSUE, 'EXECUTE p', lookup('SELECT * FROM secrets'))).toMatchObject({ kind: 'deny', rule: 'policy' });
  });

  it('applies its rules for one agent only', () => {
    const cursor = compileAgentPolicy({ name: 'cursor', groups: [], profile: 'read-only', writeLimits: DEFAULT_WRITE_LIMITS }, ISSUE_RULES);
    const subject: PolicySubject = { agent: 'cursor', profile: 'read-only', policy: cursor };
    expect(judgeWith(subject, 'INSERT INTO tasks DEFAULT VALUES')).toMatchObject({ kind: 'deny', rule: 'write' });
    // cursor may write only what a human approves (rules[…] approve for every agent): it has the write path for that.
    expect(judgeWith(subject, 'BEGIN READ WRITE').kind).toBe('allow-read');
    expect(judgeWith(subject, 'SELECT * FROM companies')).toMatchObject({ kind: 'deny', rule: 'approval-required' });
  });

  it('still refuses canary tables first, and trips', () => {
    const subject = policySubject('read-only', ISSUE_RULES, {}, { canaryTables: [compileTablePattern('public.payroll_backup')] });
    expect(judgeWith(subject, 'INSERT INTO tasks SELECT * FROM payroll_backup')).toMatchObject({ kind: 'deny', rule: 'canary', trips: true });
  });
});

describe('profiles under a policy', () => {
  it('judges a read-only policy without rules as the read-only profile does', () => {
    const subject = policySubject('read-only');
    for (const sql of ALLOWED) expect(judgeWith(subject, sql), sql).toEqual({ kind: 'allow-read', rule: 'read' });
    for (const [sql, rule, sqlstate = '42501'] of REFUSED) {
      // SELECT INTO creates a table: under rules it is DDL (create), as its refusal now says.
      const expected = sql.startsWith('SELECT * INTO') ? 'ddl' : rule;
      expect(judgeWith(subject, sql), sql).toMatchObject({ kind: 'deny', rule: expected, sqlstate });
    }
  });

  it.each([
    // [profile, sql, expected]
    ['read-write', 'DELETE FROM tasks WHERE id = 1', 'allow-write'],
    ['read-write', 'MERGE INTO tasks t USING staging s ON t.id = s.id WHEN MATCHED THEN DELETE', 'allow-write'],
    ['read-write', 'SELECT * FROM tasks FOR UPDATE', 'allow-write'],
    ['read-write', 'SELECT 1 FOR UPDATE', 'allow-write'],
    ['read-write', 'DELETE FROM tasks', 'where-required'],
    ['read-write', 'TRUNCATE tasks', 'approval-required'],
    ['read-write', 'CREATE TABLE t (x int)', 'approval-required'],
    ['read-write', 'ALTER TABLE tasks ADD COLUMN x int', 'approval-required'],
    ['read-write', 'DROP TABLE tasks', 'approval-required'],
    ['read-write', 'SELECT * INTO t2 FROM tasks', 'approval-required'],
    ['read-write', 'BEGIN READ WRITE', 'allow-read'],
    ['writes-need-approval', 'INSERT INTO tasks DEFAULT VALUES', 'approval-required'],
    ['writes-need-approval', 'SELECT * FROM tasks FOR SHARE', 'approval-required'],
    ['writes-need-approval', 'SELECT * FROM tasks', 'allow-read'],
    ['writes-need-approval', 'BEGIN READ WRITE', 'allow-read'],
    ['read-only', 'INSERT INTO tasks DEFAULT VALUES', 'write'],
    ['read-only', 'BEGIN READ WRITE', 'read-write-transaction'],
  ] as const)('%s: %s → %s', (profile, sql, expected) => {
    const d = judgeWith(policySubject(profile), sql);
    if (expected === 'allow-read' || expected === 'allow-write') expect(d.kind).toBe(expected);
    else expect(d).toMatchObject({ kind: 'deny', rule: expected });
  });

  it('lets write_limits.require_where off allow an UPDATE or DELETE of every row', () => {
    expect(judgeWith(policySubject('read-write', [], { requireWhere: false }), 'DELETE FROM tasks')).toEqual({ kind: 'allow-write', rule: 'write' });
  });

  it('refuses a denied write before a missing WHERE, and a missing WHERE before an approval', () => {
    const subject = policySubject('read-write', rules({ kinds: ['delete'], tables: ['public.companies'], decision: 'approve' }, { kinds: ['update'], decision: 'deny' }));
    expect(judgeWith(subject, 'UPDATE tasks SET x = 1')).toMatchObject({ rule: 'write' });
    expect(judgeWith(subject, 'DELETE FROM companies')).toMatchObject({ rule: 'where-required' });
    expect(judgeWith(subject, 'DELETE FROM companies WHERE id = 1')).toMatchObject({ rule: 'approval-required' });
  });
});

describe('DDL and TRUNCATE rules', () => {
  const ddl = policySubject(
    'read-only',
    rules(
      { kinds: ['create', 'alter'], tables: ['scratch.*'], decision: 'allow' },
      { kinds: ['truncate'], tables: ['public.tasks'], decision: 'allow' },
      { kinds: ['drop'], decision: 'allow', note: 'anything may go' },
    ),
  );

  it.each([
    ['CREATE TABLE scratch.t (x int)', 'allow-write'],
    ['ALTER TABLE scratch.t ADD COLUMN y int', 'allow-write'],
    ['CREATE TABLE scratch.t2 AS SELECT * FROM tasks', 'allow-write'],
    ['SELECT * INTO scratch.t3 FROM tasks', 'allow-write'],
    ['DROP TABLE tasks', 'allow-write'],
    ['DROP SCHEMA app CASCADE', 'allow-write'],
    ['ALTER TABLE scratch.t DROP COLUMN y', 'allow-write'],
    ['TRUNCATE tasks', 'allow-write'],
    // Statements that name no relation match only rules without tables.
    ['CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', 'ddl'],
    ['CREATE TABLE public.t (x int)', 'ddl'],
    ['ALTER TABLE public.tasks ADD COLUMN y int', 'ddl'],
    // ALTER ... DROP is a drop; it needs no alter.
    ['ALTER TABLE public.tasks DROP COLUMN notes', 'allow-write'],
    // CASCADE reaches what no rule names: only a rule for any relation can allow it.
    ['TRUNCATE tasks CASCADE', 'write'],
    ['TRUNCATE tasks, projects', 'write'],
    ['ALTER TABLE scratch.t DROP COLUMN y CASCADE', 'allow-write'],
  ] as const)('%s → %s', (sql, expected) => {
    const d = judgeWith(ddl, sql);
    if (expected === 'allow-write') expect(d).toEqual({ kind: 'allow-write', rule: sql.startsWith('TRUNCATE') ? 'write' : 'ddl' });
    else expect(d).toMatchObject({ kind: 'deny', rule: expected });
  });

  it('names the CASCADE when it is what is refused', () => {
    const d = judgeWith(ddl, 'TRUNCATE tasks CASCADE');
    expect(d.kind === 'deny' && d.message).toContain('TRUNCATE TABLE ... CASCADE, which also reaches what depends on the relations it names');
  });

  it('grants DDL only when an allow rule names it', () => {
    const subject = policySubject('read-only', rules({ tables: ['scratch.*'], decision: 'allow' }));
    expect(judgeWith(subject, 'INSERT INTO scratch.t DEFAULT VALUES')).toEqual({ kind: 'allow-write', rule: 'write' });
    expect(judgeWith(subject, 'DROP TABLE scratch.t')).toMatchObject({ kind: 'deny', rule: 'ddl' });
    expect(judgeWith(subject, 'TRUNCATE scratch.t')).toMatchObject({ kind: 'deny', rule: 'write' });
  });

  it('lets a MERGE do only what the rules allow its WHEN clauses to do', () => {
    const subject = policySubject('read-only', rules({ kinds: ['merge', 'update'], tables: ['public.tasks'], decision: 'allow' }));
    const merge = (then: string) => judgeWith(subject, `MERGE INTO tasks t USING staging s ON t.id = s.id WHEN MATCHED THEN ${then}`);
    expect(merge('UPDATE SET title = s.title')).toEqual({ kind: 'allow-write', rule: 'write' });
    expect(merge('DO NOTHING')).toEqual({ kind: 'allow-write', rule: 'write' });
    const d = merge('DELETE');
    expect(d).toMatchObject({ kind: 'deny', rule: 'write' });
    expect(d.kind === 'deny' && d.message).toContain('may not delete from public.tasks');
  });

  it('does not let UPDATE, DELETE or MERGE read, through WHERE or RETURNING, a table the agent may not read', () => {
    const subject = policySubject(
      'read-only',
      rules({ kinds: ['insert', 'update', 'delete', 'merge'], decision: 'allow' }, { kinds: ['select'], tables: ['public.secrets'], decision: 'deny' }),
      { requireWhere: false },
    );
    expect(judgeWith(subject, 'INSERT INTO secrets (value) VALUES (1)')).toEqual({ kind: 'allow-write', rule: 'write' });
    for (const sql of [
      'UPDATE secrets SET value = value RETURNING *',
      "DELETE FROM secrets WHERE value LIKE 'a%' RETURNING value",
      'MERGE INTO secrets t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET value = t.value',
      'INSERT INTO secrets (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 1 RETURNING value',
    ]) {
      const d = judgeWith(subject, sql);
      expect(d, sql).toMatchObject({ kind: 'deny', rule: 'policy' });
      expect(d.kind === 'deny' && d.message, sql).toContain('may not read public.secrets');
    }
  });

  it("shows a rule's note with its decision", () => {
    const subject = policySubject('read-write', rules({ kinds: ['delete'], tables: ['public.tasks'], decision: 'deny', note: 'tasks are archived, not deleted' }));
    const d = judgeWith(subject, 'DELETE FROM tasks WHERE id = 1');
    expect(d.kind === 'deny' && d.message).toBe(
      'airlock: agent "claude" may not delete from public.tasks: rules[0] ("tasks are archived, not deleted") denies it (profile read-write)',
    );
  });
});

describe('a freeze under a policy', () => {
  const cause: FreezeCause = {
    kind: 'manual',
    freeze: { scope: { kind: 'global' }, by: 'alice', at: '2026-11-26T10:00:00.000Z', until: null, reason: 'incident' },
  };
  let asked = 0;
  const frozen = policySubject('read-write', ISSUE_RULES, {}, {
    freeze: () => {
      asked += 1;
      return cause;
    },
  });

  it.each([
    'INSERT INTO tasks DEFAULT VALUES',
    'UPDATE tasks SET done = true WHERE id = 1',
    'SELECT * FROM tasks FOR UPDATE',
    'SELECT 1; INSERT INTO tasks DEFAULT VALUES',
    'BEGIN; DELETE FROM projects WHERE id = 1; COMMIT',
    // Refused writes say the freeze too, as they always have.
    'DROP TABLE tasks',
    'DELETE FROM projects',
  ])('turns %s into a freeze refusal', (sql) => {
    const d = judgeWith(frozen, sql);
    expect(d).toMatchObject({ kind: 'deny', rule: 'freeze', sqlstate: '25006' });
    expect(d.kind === 'deny' && d.message).toContain('all agents are frozen by alice');
  });

  it('lets reads and transaction control through, without asking', () => {
    asked = 0;
    expect(judgeWith(frozen, 'SELECT * FROM tasks')).toEqual({ kind: 'allow-read', rule: 'read' });
    expect(judgeWith(frozen, 'BEGIN READ WRITE')).toEqual({ kind: 'allow-read', rule: 'read' });
    expect(asked).toBe(0);
  });
});

describe('credential catalogs', () => {
  it.each(['SELECT rolpassword FROM pg_authid', 'SELECT * FROM pg_catalog.pg_shadow', 'SELECT * FROM PG_CATALOG.PG_AUTHID', 'SELECT umoptions FROM pg_user_mapping', 'SELECT subconninfo FROM pg_subscription', 'SELECT * FROM (SELECT rolpassword FROM pg_authid) x'])(
    'refuses %s, whatever the profile',
    (sql) => {
      const d = judgeClassification(classify(sql), { agent: 'claude', profile: 'read-only' }, () => undefined);
      expect(d.kind === 'deny' && d.rule).toBe('credential-catalog');
    },
  );
  it('still reads pg_roles, whose passwords are masked', () => {
    expect(judgeClassification(classify('SELECT rolname FROM pg_roles'), { agent: 'claude', profile: 'read-only' }, () => undefined).kind).toBe('allow-read');
  });
});

describe("the server's configuration files", () => {
  it.each([
    'SELECT * FROM pg_hba_file_rules',
    'SELECT * FROM pg_catalog.pg_hba_file_rules',
    'SELECT * FROM pg_ident_file_mappings',
    'SELECT * FROM pg_catalog.pg_ident_file_mappings',
    'SELECT * FROM pg_file_settings',
    'SELECT * FROM pg_config',
    'SELECT * FROM pg_hba_file_rules()',
    'SELECT * FROM pg_catalog.pg_hba_file_rules()',
    'SELECT * FROM pg_ident_file_mappings()',
    'SELECT * FROM PG_CATALOG.PG_IDENT_FILE_MAPPINGS()',
    'SELECT * FROM pg_show_all_file_settings()',
    'SELECT name, setting FROM pg_catalog.pg_show_all_file_settings() WHERE name = $1',
    'SELECT (pg_hba_file_rules()).*',
    'SELECT * FROM pg_config()',
    'SELECT count(*) FROM ROWS FROM (pg_catalog.pg_hba_file_rules())',
    'SELECT 1 WHERE EXISTS (SELECT 1 FROM pg_show_all_file_settings())',
    'EXPLAIN SELECT * FROM pg_hba_file_rules()',
    'COPY (SELECT * FROM pg_show_all_file_settings()) TO STDOUT',
  ])('refuses %s to every agent, the read-write profile included', (sql) => {
    for (const subject of [SUBJECT, policySubject('read-write')]) {
      const d = judgeClassification(classify(sql), subject, NOTHING_PREPARED);
      expect(d.kind === 'deny' && d.rule, `${sql} (${subject.profile})`).toBe('credential-catalog');
    }
  });

  it.each([
    'INSERT INTO notes (body) SELECT type FROM pg_hba_file_rules()',
    "INSERT INTO notes (body) SELECT setting FROM pg_file_settings WHERE name = 'primary_conninfo'",
  ])('refuses %s on the write path too', (sql) => {
    const d = judgeWith(policySubject('read-write'), sql);
    expect(d.kind === 'deny' && d.rule).toBe('credential-catalog');
  });

  it('refuses a view over a credential catalog: it runs with its owner\'s privileges', () => {
    const schema: SchemaKnowledge = { ...EMPTY_SCHEMA, viewReads: new Map([['public.role_dump', ['public.pg_authid']]]) };
    const d = judgeWith({ ...SUBJECT, schema }, 'SELECT * FROM role_dump');
    expect(d).toMatchObject({ kind: 'deny', rule: 'credential-catalog' });
  });

  it.each(['SELECT * FROM public.pg_hba_file_rules()', 'SELECT * FROM app.pg_config'])('leaves %s, which is not the catalog one, to the other checks', (sql) => {
    const d = judgeWith(policySubject('read-write'), sql);
    expect(d.kind === 'deny' ? d.rule : d.kind).not.toBe('credential-catalog');
  });
});

describe('statistics catalogs', () => {
  const STATISTICS = [
    'SELECT most_common_vals FROM pg_stats',
    "SELECT * FROM pg_catalog.pg_stats WHERE tablename = 'secrets'",
    'SELECT * FROM pg_stats_ext',
    'SELECT * FROM pg_stats_ext_exprs',
    'SELECT stavalues1 FROM pg_statistic',
    'SELECT stavalues1 FROM pg_catalog.pg_statistic',
    'SELECT stxdmcv FROM pg_statistic_ext_data',
    'SELECT m.* FROM pg_statistic_ext_data d, pg_mcv_list_items(d.stxdmcv) m',
    "SELECT * FROM pg_stats WHERE (schemaname || '.' || tablename)::regclass = 'public.secrets'::regclass",
    "SELECT s.stavalues1 FROM pg_statistic s WHERE s.starelid = 'secrets'::regclass",
    'SELECT (SELECT histogram_bounds FROM pg_stats LIMIT 1)',
    'WITH s AS (SELECT * FROM pg_stats) SELECT * FROM s',
    'TABLE pg_stats',
    'EXPLAIN SELECT * FROM pg_stats',
    'COPY (SELECT * FROM pg_statistic) TO STDOUT',
  ];

  const RESTRICTED: [label: string, subject: PolicySubject][] = [
    ['a rule that denies reads of a table', ISSUE],
    ['a rule that asks approval for reads', policySubject('read-only', rules({ kinds: ['select'], tables: ['public.payroll'], decision: 'approve' }))],
    ['canary tables', { ...SUBJECT, canaryTables: [compileTablePattern('public.honey')] }],
    ['canary tables and a policy', policySubject('read-write', [], {}, { canaryTables: [compileTablePattern('public.honey')] })],
  ];

  describe.each(RESTRICTED)('for an agent with %s', (_label, subject) => {
    it.each(STATISTICS)('refuses %s', (sql) => {
      const d = judgeWith(subject, sql);
      expect(d).toMatchObject({ kind: 'deny', rule: 'statistics-catalog', sqlstate: '42501' });
      expect(d.kind === 'deny' && d.hint).toContain('every table');
    });
  });

  it('names the rule that keeps tables from the agent', () => {
    const d = judgeWith(ISSUE, 'SELECT * FROM pg_stats');
    expect(d.kind === 'deny' && d.message).toContain('rules[1] keeps some tables from it');
  });

  it('refuses a view over pg_stats', () => {
    const schema: SchemaKnowledge = { ...EMPTY_SCHEMA, viewReads: new Map([['public.column_stats', ['public.pg_stats']]]) };
    const d = judgeWith({ ...ISSUE, schema }, 'SELECT * FROM column_stats');
    expect(d).toMatchObject({ kind: 'deny', rule: 'statistics-catalog' });
  });

  it.each(STATISTICS)('serves %s to an agent that may read every table', (sql) => {
    for (const subject of [SUBJECT, policySubject('read-only'), policySubject('read-only', rules({ kinds: ['insert'], tables: ['public.tasks'], decision: 'allow' }))]) {
      expect(judgeWith(subject, sql).kind).toBe('allow-read');
    }
  });

  it.each(['SELECT * FROM pg_stat_user_tables', 'SELECT * FROM pg_statistic_ext', 'SELECT * FROM public.pg_stats'])(
    'serves %s, which holds no sampled values, under restrictions',
    (sql) => {
      expect(judgeWith(ISSUE, sql).kind).toBe('allow-read');
    },
  );
});

const EMPTY_SCHEMA: SchemaKnowledge = {
  catalogFunctions: new Set(),
  userFunctions: new Map(),
  unsafeViews: new Map(),
  unsafeOperators: new Map(),
  unsafePolicies: new Map(),
  canaryViews: new Map(),
  viewReads: new Map(),
  relations: [],
  functionsByOid: new Map(),
  operatorFunctions: new Map(),
  catalogOperators: new Set(),
  version: '',
};

describe("Airlock's own schemas (capture functions, the trash)", () => {
  it.each([
    'SELECT * FROM airlock_trash.t_drop_0123456789ab',
    'SELECT count(*) FROM public.t JOIN AIRLOCK_TRASH.x ON true',
    'DELETE FROM airlock_trash.x',
    'DROP TABLE airlock_trash.x',
    'ALTER TABLE airlock_trash.x RENAME TO y',
    'TRUNCATE airlock.capture_state',
    "INSERT INTO airlock_capture (change, rel, kind, img) VALUES ('x', 1, 'c', '{}')",
    "INSERT INTO pg_temp.airlock_capture (change, rel, kind, img) VALUES ('x', 1, 'q', '{}')",
    'DELETE FROM pg_temp.AIRLOCK_CAPTURE',
    'SELECT * FROM airlock_capture',
  ])('refuses %s, whatever the profile and rules', (sql) => {
    for (const profile of ['read-only', 'read-write']) {
      const d = judgeClassification(classify(sql), { agent: 'claude', profile }, () => undefined);
      expect(d.kind === 'deny' && d.rule, `${profile}: ${sql}`).toBe('airlock-internal');
    }
  });
  it('reads a table that merely has a similar name', () => {
    expect(judgeClassification(classify('SELECT * FROM public.airlock_trash'), { agent: 'claude', profile: 'read-only' }, () => undefined).kind).toBe('allow-read');
  });
});
