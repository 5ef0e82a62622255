/**
 * Issue 12: a user function or operator that shares its name with a
 * built-in. The server is asked (gateway/overload-resolver.ts) what each
 * ambiguous statement calls, as the agent's read role, and the policy judges
 * that: `lower(textcol)` is the built-in and is served; `lower(varcharcol)`
 * reaches the user's function and is refused; psql's own `\d+` queries pass.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import pg from 'pg';
import { loadParser, classify } from '../src/sql/classify.js';
import { judgeClassification } from '../src/policy/read-only.js';
import type { PolicySubject } from '../src/policy/read-only.js';
import { statementsToResolve } from '../src/policy/overloads.js';
import type { SchemaKnowledge } from '../src/policy/schema-knowledge.js';
import { loadSchemaKnowledge } from '../src/gateway/schema-loader.js';
import { OverloadResolver, judgeResolving, openProbeChannel, overloadResolverFor, resolveCalls } from '../src/gateway/overload-resolver.js';
import type { ProbeChannel, ResolvedDecision } from '../src/gateway/overload-resolver.js';
import type { UpstreamLogin } from '../src/gateway/upstream.js';
import { createTestDatabase, testServers, uniqueName } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { dropRoles } from './support/drop-roles.js';
import { BACKEND, parseDataRow } from '../src/protocol/backend.js';
import { encodeQuery } from '../src/protocol/frontend.js';

const PSQL = '/usr/bin/psql';
const VARCHAR = 1043;
const TEXT = 25;

/**
 * A careless schema: overloads of built-in names. The user's lower() raises
 * if it ever runs, so a probe that executed it would fail; notify_op would
 * notify, for the same reason.
 */
const SCHEMA = `
CREATE TABLE docs (id int PRIMARY KEY, tcol text, vcol varchar(20));
INSERT INTO docs VALUES (1, 'Text', 'Varchar');
CREATE FUNCTION public.lower(varchar) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RAISE EXCEPTION 'public.lower(varchar) ran'; END $$;
CREATE FUNCTION public.vcat(a varchar, b varchar) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RAISE EXCEPTION 'public.vcat ran'; END $$;
CREATE OPERATOR public.|| (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.vcat);
CREATE FUNCTION public.shout(t text) RETURNS text LANGUAGE sql AS $$ SELECT upper(t) $$;
CREATE VIEW text_lower AS SELECT id, lower(tcol) AS l, tcol || tcol AS c FROM docs;
CREATE VIEW varchar_lower AS SELECT id, lower(vcol) AS l FROM docs;
CREATE VIEW varchar_cat AS SELECT id, vcol || vcol AS c FROM docs;
CREATE TABLE text_guarded (id int, tcol text);
ALTER TABLE text_guarded ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON text_guarded USING (lower(tcol) <> '' AND tcol || tcol <> '');
CREATE TABLE varchar_guarded (id int, vcol varchar);
ALTER TABLE varchar_guarded ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON varchar_guarded USING (lower(vcol) <> '');
`;

type Case = [sql: string, expected: 'allow-read' | 'untrusted-function', paramTypes?: number[]];

const CASES: Case[] = [
  ['SELECT lower(tcol) FROM docs', 'allow-read'],
  ['SELECT lower(vcol) FROM docs', 'untrusted-function'],
  ['SELECT lower(vcol::text) FROM docs', 'allow-read'],
  ["SELECT lower('X'::varchar)", 'untrusted-function'],
  ["SELECT lower('X')", 'allow-read'],
  ['SELECT tcol || tcol FROM docs', 'allow-read'],
  ["SELECT tcol || '!' FROM docs", 'allow-read'],
  ['SELECT vcol || vcol FROM docs', 'untrusted-function'],
  ['SELECT lower(tcol) FROM docs WHERE tcol || tcol <> vcol', 'allow-read'],
  ['SELECT id FROM docs WHERE vcol || vcol IS NOT NULL', 'untrusted-function'],
  ['SELECT id FROM docs ORDER BY lower(vcol)', 'untrusted-function'],
  ['SELECT (SELECT lower(vcol) FROM docs LIMIT 1)', 'untrusted-function'],
  ['SELECT max(lower(vcol)) FROM docs', 'untrusted-function'],
  ['SELECT id FROM docs WHERE EXISTS (SELECT 1 FROM docs d2 WHERE lower(d2.vcol) = $1)', 'untrusted-function', [TEXT]],
  ['WITH x AS (SELECT lower(vcol) AS l FROM docs) SELECT * FROM x', 'untrusted-function'],
  ['SELECT lower($1)', 'untrusted-function', [VARCHAR]],
  ['SELECT lower($1)', 'allow-read', [TEXT]],
  ['SELECT lower($1::text)', 'allow-read', [0]],
  // A column named like the user's function: x.lower is a column here, not lower(x).
  ['SELECT d.lower FROM (SELECT tcol AS lower FROM docs) d', 'allow-read'],
  // Attribute notation that really calls the user's shout(text).
  ['SELECT (tcol).shout FROM docs', 'untrusted-function'],
  ['SELECT (d.tcol).shout FROM docs d', 'untrusted-function'],
  // lower(docs) does not exist: the server says so, and the statement is refused.
  ['SELECT d.lower FROM docs d', 'untrusted-function'],
  // Not ambiguous: no built-in shout(), so no question is asked.
  ["SELECT shout('x')", 'untrusted-function'],
  ['SELECT lower(tcol) FROM docs; SELECT 1', 'allow-read'],
  ['SELECT lower(tcol) FROM docs; SELECT lower(vcol) FROM docs', 'untrusted-function'],
];

/** The queries psql sends for a backslash command, as psql -E prints them. */
function psqlQueries(url: string, command: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile(PSQL, ['-X', '-E', '-c', command, url], { env: { ...process.env, PGCONNECT_TIMEOUT: '10' } }, (error, stdout) => {
      if (error) {
        reject(error);
        return;
      }
      const queries = [...stdout.matchAll(/\*{9} QUERY \*{10}\n([\s\S]*?)\n\*{26}/g)].map((m) => m[1]!.trim());
      resolve(queries);
    });
  });
}

describe.each(testServers().map((s) => [s.name, s] as const))('overloads of built-in names on the %s server', (_name, server) => {
  let db: TestDatabase;
  let admin: pg.Client;
  let schema: SchemaKnowledge;
  let role: string;
  let login: UpstreamLogin;
  let channel: ProbeChannel;
  let resolver: OverloadResolver;
  let opened = 0;
  const subject: PolicySubject = { agent: 'claude', profile: 'read-only' };

  beforeAll(async () => {
    await loadParser();
    db = await createTestDatabase(server);
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query(SCHEMA);
    role = uniqueName();
    const password = uniqueName('pw');
    // As a read role is made (gateway/read-roles.ts): pg_read_all_data, read-only by default.
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}' NOSUPERUSER IN ROLE pg_read_all_data`);
    await admin.query(`ALTER ROLE ${role} SET default_transaction_read_only = on`);
    schema = await loadSchemaKnowledge(admin, []);
    subject.schema = schema;
    login = {
      host: server.host,
      port: server.port,
      user: role,
      password,
      database: db.name,
      sslmode: 'disable',
      sslrootcert: null,
      params: { client_encoding: 'UTF8', standard_conforming_strings: 'on', default_transaction_read_only: 'on', search_path: 'public' },
      connectTimeoutMs: 10_000,
    };
    channel = await openProbeChannel(login);
    resolver = new OverloadResolver(() => {
      opened++;
      return openProbeChannel({ ...login, params: { ...login.params, application_name: 'airlock overload probe' } });
    });
  });

  afterAll(async () => {
    resolver?.close();
    channel?.close();
    await admin?.end();
    await db?.drop();
    if (role !== undefined) await dropRoles(server, [role]);
  });

  async function judgeAsking(sql: string, paramTypes: number[] = []) {
    const classification = classify(sql);
    const resolutions = await resolver.resolveStatements(classification, sql, paramTypes, schema, new Set());
    return { decision: judgeClassification(classification, subject, () => undefined, resolutions), asked: resolutions.size };
  }

  it('the read role may turn on debug_print_parse and client_min_messages = log', async () => {
    const r = await resolveCalls(channel, 'SELECT lower(tcol) FROM docs');
    expect(r).toMatchObject({ ok: true });
  });

  it('the judgement by name alone refuses lower(textcol) (the issue)', () => {
    const d = judgeClassification(classify('SELECT lower(tcol) FROM docs'), subject, () => undefined);
    expect(d).toMatchObject({ kind: 'deny', rule: 'untrusted-function' });
  });

  it.each(CASES)('%s → %s', async (sql, expected, paramTypes) => {
    const { decision } = await judgeAsking(sql, paramTypes);
    if (expected === 'allow-read') expect(decision).toEqual({ kind: 'allow-read', rule: 'read' });
    else expect(decision).toMatchObject({ kind: 'deny', rule: expected, sqlstate: '42501' });
  });

  it('judges views and row-level security policies by what PostgreSQL recorded they call', () => {
    expect(schema.unsafeViews.get('public.text_lower')).toBeUndefined();
    expect(schema.unsafeViews.get('public.varchar_lower')).toContain('public.lower()');
    expect(schema.unsafeViews.get('public.varchar_cat')).toContain('public.vcat()');
    expect(schema.unsafePolicies.get('public.text_guarded')).toBeUndefined();
    expect(schema.unsafePolicies.get('public.varchar_guarded')).toContain('public.lower()');
    const judge = (sql: string) => judgeClassification(classify(sql), subject, () => undefined);
    expect(judge('SELECT * FROM text_lower')).toEqual({ kind: 'allow-read', rule: 'read' });
    expect(judge('SELECT * FROM text_guarded')).toEqual({ kind: 'allow-read', rule: 'read' });
    expect(judge('SELECT * FROM varchar_lower')).toMatchObject({ kind: 'deny', rule: 'unsafe-view' });
    expect(judge('SELECT * FROM varchar_cat')).toMatchObject({ kind: 'deny', rule: 'unsafe-view' });
    expect(judge('SELECT * FROM varchar_guarded')).toMatchObject({ kind: 'deny', rule: 'unsafe-policy' });
  });

  it('judgeResolving answers at once unless the server must be asked', async () => {
    const sync = judgeResolving(resolver, classify('SELECT upper(tcol) FROM docs'), subject, () => undefined, 'SELECT upper(tcol) FROM docs');
    expect(sync).not.toBeInstanceOf(Promise);
    expect((sync as ResolvedDecision).decision).toEqual({ kind: 'allow-read', rule: 'read' });
    const text = 'SELECT lower($1) AS asked';
    const asked = judgeResolving(resolver, classify(text), subject, () => undefined, text, [VARCHAR]);
    expect(asked).toBeInstanceOf(Promise);
    const r = await asked;
    expect(r.decision).toMatchObject({ kind: 'deny', rule: 'untrusted-function' });
    expect(r.resolutions.get(0)).toMatchObject({ ok: true });
    // Without a database to ask, the judgement by name stands.
    const offline = judgeResolving(null, classify('SELECT lower(tcol) FROM docs'), subject, () => undefined, 'SELECT lower(tcol) FROM docs');
    expect((offline as ResolvedDecision).decision).toMatchObject({ kind: 'deny', rule: 'untrusted-function' });
  });

  it('names the function the server resolved to', async () => {
    const { decision } = await judgeAsking('SELECT lower(vcol) FROM docs');
    expect(decision.kind === 'deny' && decision.message).toContain('public.lower()');
    const op = await judgeAsking('SELECT vcol || vcol FROM docs');
    expect(op.decision.kind === 'deny' && op.decision.message).toContain('public.vcat()');
  });

  it('resolves without running anything: the user functions raise if run, and the answer names them', async () => {
    const r = await resolveCalls(channel, "SELECT lower('X'::varchar), 'a'::varchar || 'b'::varchar");
    expect(r.ok).toBe(true);
    const oids = (await admin.query<{ oid: string }>("SELECT 'public.lower(varchar)'::regprocedure::oid AS oid UNION ALL SELECT 'public.vcat(varchar,varchar)'::regprocedure::oid")).rows.map((x) => Number(x.oid));
    const ops = (await admin.query<{ oid: string }>("SELECT 'public.||(varchar,varchar)'::regoperator::oid AS oid")).rows.map((x) => Number(x.oid));
    if (r.ok) {
      expect(r.functions).toEqual(expect.arrayContaining([oids[0]]));
      expect(r.operators).toEqual(expect.arrayContaining(ops));
    }
  });

  it('leaves the probe session as it found it, and outside any transaction', async () => {
    await resolveCalls(channel, 'SELECT lower(vcol) FROM docs');
    const r = await resolveCalls(channel, 'SELECT no_such_column FROM docs');
    expect(r).toMatchObject({ ok: false });
    const status = await channel.exchange([encodeQuery("SELECT current_setting('debug_print_parse'), current_setting('client_min_messages')")], 1);
    const row = status.find((m) => m.type === BACKEND.dataRow);
    expect(row && parseDataRow(row.body)).toEqual(['off', 'notice']);
    // ReadyForQuery 'I': idle, no transaction left open.
    expect(status.at(-1)?.body.toString()).toBe('I');
  });

  it('answers "could not ask" when the probe connection dies, without caching it, and opens a new one next time', async () => {
    await resolver.resolve('SELECT lower(tcol) AS warm FROM docs', [], schema.version);
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND application_name = 'airlock overload probe'", [role]);
    const before = opened;
    const text = 'SELECT lower(tcol) AS after_kill FROM docs';
    const failed = await resolver.resolve(text, [], schema.version);
    expect(failed).toMatchObject({ ok: false });
    const again = await resolver.resolve(text, [], schema.version);
    expect(again).toMatchObject({ ok: true });
    expect(opened).toBe(before + 1);
  });

  it('closes an idle probe connection', async () => {
    const count = async () =>
      (await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND application_name = 'airlock overload probe'", [role])).rows[0]!.n;
    // The other resolver's connection, if open, stays; this one's comes and goes.
    const others = await count();
    const idle = overloadResolverFor(login, { idleMs: 50 });
    await idle.resolve('SELECT lower(tcol) AS idle FROM docs', [], schema.version);
    expect(await count()).toBe(others + 1);
    await new Promise((r) => setTimeout(r, 400));
    expect(await count()).toBe(others);
    idle.close();
  });

  it('asks only about ambiguous statements, once per text and schema version', async () => {
    expect(statementsToResolve(classify('SELECT upper(tcol) FROM docs'), schema, new Set())).toEqual([]);
    expect(statementsToResolve(classify('DELETE FROM docs WHERE lower(tcol) = $1'), schema, new Set())).toEqual([]);
    expect(statementsToResolve(classify('SELECT 1; SELECT lower(tcol) FROM docs'), schema, new Set())).toEqual([1]);
    const before = opened;
    const sql = 'SELECT lower(tcol) AS once FROM docs';
    const first = await judgeAsking(sql);
    const second = await judgeAsking(sql);
    expect(first.asked).toBe(1);
    expect(second.decision).toEqual(first.decision);
    expect(opened - before).toBeLessThanOrEqual(1);
  });

  it.each(['\\d+ docs', '\\d docs', '\\dt+', '\\df lower', '\\dv'])("serves psql's own queries for %s", async (command) => {
    const queries = await psqlQueries(db.url, command);
    expect(queries.length).toBeGreaterThan(0);
    for (const q of queries) {
      const { decision } = await judgeAsking(q);
      expect(decision, q).toEqual({ kind: 'allow-read', rule: 'read' });
    }
  });

  it("refused at least one of psql's \\d+ queries before (the || in them)", async () => {
    const queries = await psqlQueries(db.url, '\\d+ docs');
    const refused = queries.filter((q) => judgeClassification(classify(q), subject, () => undefined).kind === 'deny');
    expect(refused.length).toBeGreaterThan(0);
  });
});
