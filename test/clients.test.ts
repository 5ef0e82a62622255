/**
 * Real clients, end to end through a real Airlock in front of real
 * PostgreSQL: psql (one-shot and interactive), pgbench in its three query
 * modes, node-postgres (text and binary, NULLs, wide and long results, an
 * error in the middle of a result, many clients at once) and postgres.js
 * (pipelining on one connection, prepared statements).
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { dropRoles, readRolesOf } from './support/drop-roles.js';
import { runProcess, startProcess } from './support/run-process.js';
import { parseDataRow, parseErrorFields } from '../src/protocol/backend.js';
import { encodeParse, encodeQuery, encodeSync } from '../src/protocol/frontend.js';
import { WireClient, describeMessages, encodeBind, encodeExecute, encodeFlush, int16, int32, loginClient } from './support/wire.js';

const PSQL = '/usr/bin/psql';
const PGBENCH = '/usr/bin/pgbench';
const REFUSED_DELETE = 'airlock: agent "claude" may not delete from public.executives (profile read-only)';

/**
 * node-postgres reads `binary` (ask for binary results) from its client
 * config, but its typings leave it out.
 */
type ClientOptions = pg.ClientConfig & { binary?: boolean };

/** Runs `fn` on a node-postgres client of its own, closed afterwards. */
async function withClient<T>(config: ClientOptions, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(config);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Runs `fn` on a connection straight to the database, past Airlock. */
function direct<T>(url: string, fn: (c: pg.Client) => Promise<T>, extra: ClientOptions = {}): Promise<T> {
  return withClient({ connectionString: url, ...extra }, fn);
}

describe.each(testServers().map((s) => [s.name, s] as const))('real clients on the %s server', (_name, server) => {
  let db: TestDatabase;
  let airlock: TestAirlock;

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    airlock = await startTestAirlock(server, db);
  });

  afterAll(async () => {
    await airlock?.close();
    await db?.drop();
    await dropRoles(server, readRolesOf(airlock));
  });

  /** Runs `fn` on a connection through Airlock as the default agent. */
  function withAgent<T>(fn: (c: pg.Client) => Promise<T>, extra: ClientOptions = {}): Promise<T> {
    return withClient({ ...airlock.clientConfig(), ...extra }, fn);
  }

  describe('psql', () => {
    it('describes a table with \\d', async () => {
      const r = await runProcess(PSQL, ['-X', '-v', 'ON_ERROR_STOP=1', airlock.url(), '-c', '\\d executives']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('Table "public.executives"');
      for (const column of ['company_id', 'full_name', 'joined_on']) expect(r.stdout).toContain(column);
      expect(r.stdout).toContain('executives_company_id_idx');
      expect(r.stdout).toMatch(/FOREIGN KEY \(company_id\) REFERENCES companies\(id\) ON DELETE CASCADE/);
    });

    it('lists tables with \\dt', async () => {
      const r = await runProcess(PSQL, ['-X', '-v', 'ON_ERROR_STOP=1', airlock.url(), '-c', '\\dt']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      for (const table of ['companies', 'executives', 'users', 'projects', 'tasks', 'invoices', 'api_keys']) {
        expect(r.stdout).toMatch(new RegExp(`public\\s*\\|\\s*${table}\\s*\\|\\s*table`));
      }
    });

    it('works interactively, one command after another on one session', async () => {
      const expected = await direct(db.url, async (c) => (await c.query('SELECT count(*)::int AS n FROM companies')).rows[0].n as number);
      const psql = startProcess(PSQL, ['-X', airlock.url()]);
      psql.write('\\d\n');
      await psql.waitForOutput(/List of relations[\s\S]*executives/);
      psql.write('SELECT pg_backend_pid() AS first_pid;\n');
      const afterPid = await psql.waitForOutput(/first_pid[\s\S]*\(1 row\)/);
      psql.write('SELECT count(*) FROM companies;\n');
      await psql.waitForOutput(new RegExp(`count\\s*\\n-+\\s*\\n\\s*${expected}\\s*\\n\\(1 row\\)`));
      psql.write('SELECT pg_backend_pid() AS second_pid;\n');
      const all = await psql.waitForOutput(/second_pid[\s\S]*\(1 row\)/);
      psql.write('\\q\n');
      const r = await psql.finish();
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('');
      // Same upstream backend throughout: one session, not a reconnect per line.
      const pid1 = /first_pid\s*\n-+\s*\n\s*(\d+)/.exec(afterPid)?.[1];
      const pid2 = /second_pid\s*\n-+\s*\n\s*(\d+)/.exec(all)?.[1];
      expect(pid1).toBeDefined();
      expect(pid2).toBe(pid1);
    });

    it('exits non-zero on a refused DELETE, with Airlock\'s message on stderr', async () => {
      const r = await runProcess(PSQL, ['-X', '-v', 'ON_ERROR_STOP=1', airlock.url(), '-c', 'DELETE FROM executives']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(REFUSED_DELETE);
      const n = await direct(db.url, async (c) => (await c.query('SELECT count(*)::int AS n FROM executives')).rows[0].n as number);
      expect(n).toBe(1206);
    });
  });

  describe('node-postgres', () => {
    const SCALARS = "SELECT 42::int4 AS i, 'héllo, wörld'::text AS t, 1.5::float8 AS f, true AS b, NULL::int4 AS n, NULL::text AS nt";

    it('returns text results', async () => {
      const r = await withAgent((c) => c.query(SCALARS));
      expect(r.fields.every((f) => f.format === 'text')).toBe(true);
      expect(r.rows).toEqual([{ i: 42, t: 'héllo, wörld', f: 1.5, b: true, n: null, nt: null }]);
    });

    it('returns binary results, the same as PostgreSQL gives them directly', async () => {
      // node-postgres asks for binary results only on the extended protocol, hence a parameter.
      // Its own binary decoders have quirks (float8, int8), so compare with a direct connection.
      const sql = `${SCALARS}, $1::int4 AS p, 9007199254740993::int8 AS big, '\\x00ff'::bytea AS bytes`;
      const r = await withAgent((c) => c.query(sql, [7]), { binary: true });
      const expected = await direct(db.url, async (c) => c.query(sql, [7]), { binary: true });
      expect(r.fields.map((f) => f.format)).toEqual(Array(9).fill('binary'));
      expect(r.rows).toEqual(expected.rows);
      expect(r.rows[0]).toMatchObject({ i: 42, t: 'héllo, wörld', b: true, n: null, nt: null, p: 7 });
    });

    it('returns NULLs exactly where the table has them', async () => {
      const sql = 'SELECT id, last_login_at, deleted_at FROM users ORDER BY id';
      const expected = await direct(db.url, (c) => c.query(sql));
      const nulls = expected.rows.filter((row) => row.deleted_at === null).length;
      expect(nulls).toBeGreaterThan(0);
      expect(nulls).toBeLessThan(expected.rows.length);
      const binarySql = { text: sql.replace('ORDER BY id', 'WHERE id > $1 ORDER BY id'), values: [0] };
      const [text, binary, directBinary] = await Promise.all([
        withAgent((c) => c.query(sql)),
        withAgent((c) => c.query(binarySql), { binary: true }),
        direct(db.url, (c) => c.query(binarySql), { binary: true }),
      ]);
      expect(text.rows).toEqual(expected.rows);
      expect(binary.fields.every((f) => f.format === 'binary')).toBe(true);
      expect(binary.rows).toEqual(directBinary.rows);
      expect(binary.rows.map((r) => [r.deleted_at === null, r.last_login_at === null])).toEqual(
        expected.rows.map((r) => [r.deleted_at === null, r.last_login_at === null]),
      );
    });

    it('returns a 10 MB value', async () => {
      const r = await withAgent((c) => c.query("SELECT repeat('x', 10000000) AS big, 'after' AS tail"));
      const big = r.rows[0].big as string;
      expect(big.length).toBe(10_000_000);
      expect(/^x+$/.test(big)).toBe(true);
      expect(r.rows[0].tail).toBe('after');
    });

    it('returns 1,600 columns in one row', async () => {
      const cols = Array.from({ length: 1600 }, (_, i) => `${i * 3} AS c${i}`).join(', ');
      const r = await withAgent((c) => c.query(`SELECT ${cols}`));
      expect(r.fields).toHaveLength(1600);
      const row = r.rows[0] as Record<string, number>;
      expect(Object.keys(row)).toHaveLength(1600);
      for (let i = 0; i < 1600; i++) expect(row[`c${i}`]).toBe(i * 3);
    });

    it('returns 50,000 rows', async () => {
      const r = await withAgent((c) => c.query('SELECT i, md5(i::text) AS h FROM generate_series(1, 50000) i'));
      expect(r.rowCount).toBe(50_000);
      expect(r.rows.reduce((sum, row) => sum + (row.i as number), 0)).toBe((50_000 * 50_001) / 2);
      expect(r.rows[12_344].h).toBe(createHash('md5').update('12345').digest('hex'));
    });

    it('reports an error that comes in the middle of a result, and the session goes on', async () => {
      await withAgent(async (c) => {
        const err = await c.query('SELECT 1/(i-5000) AS q FROM generate_series(1, 10000) i').catch((e: unknown) => e as pg.DatabaseError);
        expect(err).toBeInstanceOf(Error);
        expect((err as pg.DatabaseError).code).toBe('22012');
        const after = await c.query('SELECT count(*)::int AS n FROM executives');
        expect(after.rows[0].n).toBe(1206);
      });
    });

    it('serves 20 clients at once, each getting its own answers', async () => {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, k) =>
          withAgent(async (c) => {
            const a = await c.query('SELECT $1::int AS k, pg_backend_pid() AS pid, count(*)::int AS n FROM companies WHERE id <= $1', [k + 1]);
            const b = await c.query(`SELECT ${k} AS k2, (SELECT count(*)::int FROM executives) AS e`);
            return { ...a.rows[0], ...b.rows[0] } as { k: number; pid: number; n: number; k2: number; e: number };
          }),
        ),
      );
      results.forEach((r, k) => {
        expect(r.k).toBe(k + 1);
        expect(r.n).toBe(k + 1);
        expect(r.k2).toBe(k);
        expect(r.e).toBe(1206);
      });
      expect(new Set(results.map((r) => r.pid)).size).toBe(20);
    });
  });

  describe('raw protocol', () => {
    it('passes the rows sent before a mid-result error, then the error, then ReadyForQuery', async () => {
      const { client } = await loginClient(airlock.clientConfig());
      try {
        const messages = await client.query('SELECT 1/(i-5000) AS q FROM generate_series(1, 10000) i');
        const types = messages.map((m) => m.type);
        expect(types.filter((t) => t === 'D')).toHaveLength(4999);
        const e = messages.findIndex((m) => m.type === 'E');
        expect(e, describeMessages(messages.filter((m) => m.type !== 'D'))).toBeGreaterThan(types.lastIndexOf('D'));
        expect(parseErrorFields(messages[e]!.body).get('C')).toBe('22012');
        expect(types.at(-1)).toBe('Z');
        const again = await client.query('SELECT 7 AS seven');
        expect(again.map((m) => m.type)).toEqual(['T', 'D', 'C', 'Z']);
      } finally {
        client.destroy();
      }
    });

    it('serves queries pipelined with the last login message, and judges them too', async () => {
      const client = await WireClient.connect(airlock.port);
      try {
        const pipelined = Buffer.concat([encodeQuery('SELECT count(*) AS n FROM executives'), encodeQuery('DELETE FROM executives')]);
        await client.login(airlock.clientConfig(), { pipelined });
        const first = await client.until('Z');
        expect(first.map((m) => m.type)).toEqual(['T', 'D', 'C', 'Z']);
        expect(parseDataRow(first[1]!.body)).toEqual(['1206']);
        const second = await client.until('Z');
        expect(parseErrorFields(second[0]!.body).get('C'), describeMessages(second)).toBe('42501');
        expect(parseErrorFields(second[0]!.body).get('M')).toBe(REFUSED_DELETE);
      } finally {
        client.destroy();
      }
      const n = await direct(db.url, async (c) => (await c.query('SELECT count(*)::int AS n FROM executives')).rows[0].n as number);
      expect(n).toBe(1206);
    });

    it('passes binary DataRows byte for byte, NULL as length -1', async () => {
      const { client } = await loginClient(airlock.clientConfig());
      try {
        // Bind: no parameters, one result format code (1, binary) for every column.
        client.send(encodeParse('', "SELECT 42::int4, NULL::int4, 'ab'::text"), encodeBind('', '', [], [1]), encodeExecute(), encodeSync());
        const messages = await client.until('Z');
        expect(messages.map((m) => m.type)).toEqual(['1', '2', 'D', 'C', 'Z']);
        const row = messages[2]!.body;
        expect(row).toEqual(Buffer.concat([int16(3), int32(4), int32(42), int32(-1), int32(2), Buffer.from('ab')]));
      } finally {
        client.destroy();
      }
    });

    it('relays a portal fetched a few rows at a time (Execute with a row limit, Flush, PortalSuspended)', async () => {
      const { client } = await loginClient(airlock.clientConfig());
      try {
        client.send(encodeParse('', 'SELECT i FROM generate_series(1, 25) i'), encodeBind('', ''), encodeExecute('', 10), encodeFlush());
        const first = await client.until('s');
        expect(first.map((m) => m.type)).toEqual(['1', '2', ...Array(10).fill('D'), 's']);
        client.send(encodeExecute('', 10), encodeFlush());
        expect((await client.until('s')).filter((m) => m.type === 'D')).toHaveLength(10);
        client.send(encodeExecute('', 0), encodeSync());
        const last = await client.until('Z');
        expect(last.map((m) => m.type)).toEqual([...Array(5).fill('D'), 'C', 'Z']);
        expect(last.at(-2)!.body.toString('utf8')).toBe('SELECT 5\0');
      } finally {
        client.destroy();
      }
    });
  });

  describe('postgres.js', () => {
    let sql: postgres.Sql;

    beforeAll(() => {
      sql = postgres(airlock.url(), { max: 1, onnotice: () => undefined });
    });

    afterAll(async () => {
      await sql?.end({ timeout: 5 });
    });

    it('pipelines 100 queries on one connection and gets each its own answer', async () => {
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) => sql`SELECT ${i}::int AS i, count(*)::int AS n, pg_backend_pid() AS pid FROM companies WHERE id <= ${i}`),
      );
      results.forEach((rows, i) => {
        expect(rows).toHaveLength(1);
        expect(rows[0]!.i).toBe(i);
        expect(rows[0]!.n).toBe(i);
      });
      expect(new Set(results.map((rows) => rows[0]!.pid)).size).toBe(1);
    });

    it('uses named prepared statements, reused across calls', async () => {
      const first = await sql`SELECT full_name FROM executives WHERE id = ${3}`;
      const second = await sql`SELECT full_name FROM executives WHERE id = ${4}`;
      const expected = await direct(db.url, (c) => c.query('SELECT id, full_name FROM executives WHERE id IN (3, 4) ORDER BY id'));
      expect([first[0]!.full_name, second[0]!.full_name]).toEqual(expected.rows.map((r) => r.full_name));
      const prepared = await sql`SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement = ${'SELECT full_name FROM executives WHERE id = $1'}`;
      expect(prepared[0]!.n).toBe(1);
    });

    it('refuses sql.unsafe(DELETE …) with 42501, and the connection goes on', async () => {
      const err = await sql.unsafe('DELETE FROM executives').catch((e: unknown) => e as postgres.PostgresError);
      expect(err).toBeInstanceOf(Error);
      expect((err as postgres.PostgresError).code).toBe('42501');
      expect((err as postgres.PostgresError).message).toBe(REFUSED_DELETE);
      const rows = await sql`SELECT count(*)::int AS n FROM executives`;
      expect(rows[0]!.n).toBe(1206);
    });
  });
});

describe.each(testServers().map((s) => [s.name, s] as const))('pgbench through Airlock on the %s server', (_name, server) => {
  let db: TestDatabase;
  let airlock: TestAirlock;

  beforeAll(async () => {
    db = await createTestDatabase(server);
    const init = await runProcess(PGBENCH, ['-i', '-s', '1', '-q', db.url], { timeoutMs: 60_000 });
    if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
    airlock = await startTestAirlock(server, db);
  });

  afterAll(async () => {
    await airlock?.close();
    await db?.drop();
    await dropRoles(server, readRolesOf(airlock));
  });

  it.each(['simple', 'extended', 'prepared'] as const)('runs the select-only benchmark in -M %s', async (mode) => {
    const r = await runProcess(PGBENCH, ['-S', '-n', '-M', mode, '-c', '4', '-j', '2', '-t', '200', airlock.url()], { timeoutMs: 60_000 });
    expect(r.stderr).not.toMatch(/error|abort/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`query mode: ${mode}`);
    expect(r.stdout).toContain('number of transactions actually processed: 800/800');
    expect(r.stdout).toMatch(/number of failed transactions: 0 /);
  });

  it('fails the default TPC-B-like benchmark, which writes, and nothing is written', async () => {
    const r = await runProcess(PGBENCH, ['-n', '-c', '2', '-t', '20', airlock.url()], { timeoutMs: 60_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('airlock: agent "claude" may not update public.pgbench_accounts');
    const after = await direct(db.url, (c) =>
      c.query('SELECT (SELECT sum(abalance)::int FROM pgbench_accounts) AS balance, (SELECT count(*)::int FROM pgbench_history) AS history'),
    );
    expect(after.rows[0]).toEqual({ balance: 0, history: 0 });
  });
});
