/**
 * The other half of the adversarial suite: reads an agent legitimately
 * sends, including ones that look like writes to a naive filter, must be
 * served through a read-only Airlock and return exactly what the same query
 * returns when run directly as the superuser.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';

const PSQL = '/usr/bin/psql';

/** A read: sent the same way to Airlock (as the agent) and directly (as the superuser); the rows must match. */
interface Read {
  name: string;
  query: string | { text: string; values?: unknown[]; name?: string };
}

const READS: Read[] = [
  { name: 'a string literal holding DROP TABLE', query: "SELECT 'DROP TABLE executives' AS s" },
  { name: 'a line comment holding DELETE', query: 'SELECT 1 AS n -- DELETE FROM executives' },
  { name: 'a block comment holding DROP before the SELECT', query: '/* DROP TABLE executives */ SELECT count(*)::int AS n FROM executives' },
  { name: 'a dollar-quoted DELETE', query: 'SELECT $$DELETE FROM executives$$ AS s' },
  { name: "an E'' string with an escaped quote and DELETE", query: "SELECT E'it\\'s a DELETE; DROP TABLE x' AS s" },
  { name: 'a column alias that reads like a statement', query: 'SELECT 1 AS "DROP TABLE executives"' },
  { name: 'columns named delete and drop', query: 'SELECT "delete", "drop" FROM (VALUES (1, 2)) AS t("delete", "drop")' },
  { name: 'a deleted_at column', query: 'SELECT id, deleted_at FROM users WHERE deleted_at IS NOT NULL ORDER BY id LIMIT 5' },
  { name: 'a view', query: 'SELECT * FROM active_users ORDER BY id LIMIT 5' },
  { name: 'an aggregating view', query: 'SELECT * FROM company_revenue ORDER BY company_id LIMIT 5' },
  { name: 'a window function', query: 'SELECT company_id, full_name, row_number() OVER (PARTITION BY company_id ORDER BY id) AS rn FROM executives ORDER BY company_id, rn LIMIT 20' },
  { name: 'JSON aggregation', query: "SELECT json_agg(json_build_object('id', id, 'name', name) ORDER BY id) AS j FROM companies WHERE id <= 5" },
  { name: 'a CTE', query: 'WITH big AS (SELECT company_id, count(*) AS n FROM executives GROUP BY 1) SELECT * FROM big ORDER BY n DESC, company_id LIMIT 5' },
  { name: 'a recursive CTE', query: 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT sum(n)::int AS total FROM r' },
  { name: 'a LATERAL join', query: 'SELECT c.id, e.full_name FROM companies c CROSS JOIN LATERAL (SELECT full_name FROM executives e WHERE e.company_id = c.id ORDER BY e.id LIMIT 1) e ORDER BY c.id LIMIT 5' },
  { name: 'aggregates with FILTER', query: "SELECT status, count(*) AS n, count(*) FILTER (WHERE paid_at IS NOT NULL) AS paid FROM invoices GROUP BY status ORDER BY status" },
  { name: 'TABLE … ORDER BY … LIMIT', query: 'TABLE companies ORDER BY id LIMIT 3' },
  { name: 'VALUES', query: "VALUES (1, 'a'), (2, 'b')" },
  { name: 'a catalog query', query: "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1" },
  { name: 'EXPLAIN of a SELECT', query: 'EXPLAIN SELECT * FROM executives WHERE id = 1' },
  { name: 'SHOW TimeZone', query: 'SHOW TimeZone' },
  { name: 'a parameterised query', query: { text: 'SELECT name FROM companies WHERE id = $1', values: [7] } },
  { name: 'a parameter holding SQL text', query: { text: 'SELECT $1::text AS v', values: ['DROP TABLE executives; --'] } },
  { name: 'a named prepared statement', query: { name: 'company_by_id', text: 'SELECT id, name, plan FROM companies WHERE id = $1', values: [3] } },
];

describe.each(testServers().map((s) => [s.name, s] as const))('legitimate reads on the %s server', (_name, server) => {
  let db: TestDatabase;
  let airlock: TestAirlock;
  let admin: pg.Client;
  let agent: pg.Client;

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    airlock = await startTestAirlock(server, db);
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    agent = new pg.Client(airlock.clientConfig());
    await agent.connect();
  });

  afterAll(async () => {
    await agent?.end();
    await admin?.end();
    await airlock?.close();
    await db?.drop();
  });

  it.each(READS)('serves $name', async ({ query }) => {
    const direct = await admin.query(query as pg.QueryConfig);
    const through = await agent.query(query as pg.QueryConfig);
    expect(through.rows.length).toBeGreaterThan(0);
    expect(through.rows).toEqual(direct.rows);
    expect(through.fields.map((f) => f.name)).toEqual(direct.fields.map((f) => f.name));
  });

  it('serves a named prepared statement used twice with different values', async () => {
    const text = 'SELECT id, name FROM companies WHERE id = $1';
    const first = await agent.query({ name: 'twice', text, values: [1] });
    const second = await agent.query({ name: 'twice', text, values: [2] });
    expect([first.rows, second.rows]).toEqual([
      (await admin.query(text, [1])).rows,
      (await admin.query(text, [2])).rows,
    ]);
  });

  it('serves EXPLAIN ANALYZE of a SELECT', async () => {
    const through = await agent.query('EXPLAIN ANALYZE SELECT count(*) FROM companies');
    const plan = through.rows.map((r: Record<string, string>) => r['QUERY PLAN']!);
    expect(plan[0]).toMatch(/^Aggregate .*\(actual time=/);
    expect(plan.some((line) => /Execution Time/.test(line))).toBe(true);
  });

  it('serves several reads in one simple query', async () => {
    const results = (await agent.query('SELECT 1 AS a; SELECT count(*)::int AS n FROM companies')) as unknown as pg.QueryResult[];
    expect(results.map((r) => r.rows)).toEqual([[{ a: 1 }], [{ n: 1196 }]]);
  });

  it('serves BEGIN; SELECT; COMMIT', async () => {
    await agent.query('BEGIN');
    const r = await agent.query('SELECT count(*)::int AS n FROM executives');
    await agent.query('COMMIT');
    expect(r.rows).toEqual((await admin.query('SELECT count(*)::int AS n FROM executives')).rows);
  });

  it('serves a BEGIN READ ONLY transaction in one message', async () => {
    const results = (await agent.query('BEGIN READ ONLY; SELECT max(id)::int AS m FROM tasks; COMMIT')) as unknown as pg.QueryResult[];
    expect(results[1]!.rows).toEqual((await admin.query('SELECT max(id)::int AS m FROM tasks')).rows);
  });

  it('serves a cursor: DECLARE, FETCH, CLOSE inside a transaction', async () => {
    await agent.query('BEGIN');
    await agent.query('DECLARE c CURSOR FOR SELECT id, full_name FROM executives ORDER BY id');
    const first = await agent.query('FETCH 3 FROM c');
    const next = await agent.query('FETCH 2 FROM c');
    await agent.query('CLOSE c');
    await agent.query('COMMIT');
    const direct = await admin.query('SELECT id, full_name FROM executives ORDER BY id LIMIT 5');
    expect([...first.rows, ...next.rows]).toEqual(direct.rows);
  });

  it('serves SET application_name, then SHOW', async () => {
    await agent.query("SET application_name = 'airlock-legit-reads'");
    expect((await agent.query('SHOW application_name')).rows).toEqual([{ application_name: 'airlock-legit-reads' }]);
  });

  it('serves SET TIME ZONE', async () => {
    await agent.query("SET TIME ZONE 'Asia/Tokyo'");
    const r = await agent.query("SELECT '2020-01-01 00:00:00+00'::timestamptz::text AS t");
    expect(r.rows).toEqual([{ t: '2020-01-01 09:00:00+09' }]);
    await agent.query("SET TIME ZONE 'UTC'");
  });

  /** Runs psql against `url` and returns its exit code and output. */
  function psql(url: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        PSQL,
        ['-X', '--no-password', '-v', 'ON_ERROR_STOP=1', url, ...args],
        // Only what psql needs: no PGHOST, PGUSER or service files from the developer's shell.
        { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: tmpdir(), PGCONNECT_TIMEOUT: '10' }, timeout: 20_000 },
        (error, stdout, stderr) => {
          const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }

  it('serves COPY (SELECT …) TO STDOUT through psql', async () => {
    const copy = 'COPY (SELECT id, name, plan FROM companies ORDER BY id LIMIT 5) TO STDOUT';
    const through = await psql(airlock.url(), ['-c', copy]);
    const direct = await psql(db.url, ['-c', copy]);
    expect(through.stderr).toBe('');
    expect(through.code).toBe(0);
    expect(through.stdout.split('\n')).toHaveLength(6);
    expect(through.stdout).toBe(direct.stdout);
  });

  it.each([
    ['\\dt', ['companies', 'executives', 'api_keys', 'tasks']],
    ['\\d', ['companies', 'executives', 'active_users', 'invoice_number_seq']],
    ['\\d executives', ['full_name', 'executives_company_id_idx', 'executives_pkey']],
  ])("serves psql's %s", async (command, expected) => {
    const through = await psql(airlock.url(), ['-c', command]);
    const direct = await psql(db.url, ['-c', command]);
    expect(through.stderr).toBe('');
    expect(through.code).toBe(0);
    for (const word of expected) expect(through.stdout).toContain(word);
    expect(through.stdout).toBe(direct.stdout);
  });
});
