/**
 * The read-only profile, by the table: what each statement is judged to be,
 * by which rule (docs/read-path.md's table) and with which SQLSTATE.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classify, loadParser } from '../sql/classify.js';
import type { StatementFacts } from '../sql/facts.js';
import { HARMLESS_SETTINGS, judgeClassification } from './read-only.js';
import type { PolicySubject, PreparedLookup } from './read-only.js';

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
