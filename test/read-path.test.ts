/**
 * The thin slice, end to end against real PostgreSQL: an agent connects
 * through Airlock, a read passes, a DELETE is refused and changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase, testServers, withClient } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { useSeededAirlock } from './support/fixture.js';

describe.each(testServers().map((s) => [s.name, s] as const))('read path on the %s server', (_name, server) => {
  const fixture = useSeededAirlock(server);

  async function withAgent<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client(fixture.airlock.clientConfig());
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }

  it('serves reads', async () => {
    const rows = await withAgent((c) => c.query('SELECT count(*)::int AS n FROM executives'));
    expect(rows.rows[0].n).toBe(1206);
  });

  it('refuses a DELETE with 42501, names the rule, and leaves the rows', async () => {
    await withAgent(async (c) => {
      const err = await c.query('DELETE FROM executives').catch((e: unknown) => e as pg.DatabaseError);
      expect(err).toBeInstanceOf(Error);
      expect((err as pg.DatabaseError).code).toBe('42501');
      expect((err as pg.DatabaseError).message).toContain('agent "claude" may not delete from public.executives (profile read-only)');
      // The session stays usable.
      const after = await c.query('SELECT count(*)::int AS n FROM executives');
      expect(after.rows[0].n).toBe(1206);
    });
  });

  it('serves parameterised reads over the extended protocol', async () => {
    const rows = await withAgent((c) => c.query('SELECT name FROM companies WHERE id = $1', [7]));
    expect(rows.rows).toHaveLength(1);
  });

  it('refuses a wrong password with 28P01', async () => {
    const client = new pg.Client({ ...fixture.airlock.clientConfig(), password: 'wrong-password' });
    const err = await client.connect().catch((e: unknown) => e as pg.DatabaseError);
    expect((err as pg.DatabaseError).code).toBe('28P01');
  });
});

describe.each(testServers().map((s) => [s.name, s] as const))('a read verdict kept by a session (%s)', (_name, server) => {
  let db: TestDatabase;
  let airlock: TestAirlock;

  beforeAll(async () => {
    db = await createTestDatabase(server);
    await withClient(db.url, (c) =>
      c.query(
        "CREATE TABLE public.notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'a'); CREATE VIEW public.note_view AS SELECT id, body FROM notes; " +
          "CREATE FUNCTION public.bump(int) RETURNS int LANGUAGE sql VOLATILE AS 'SELECT $1 + 1'",
      ),
    );
    airlock = await startTestAirlock(server, db, { schemaRefreshMs: 200 });
  });

  afterAll(async () => {
    await airlock?.close();
    await db?.drop();
  });

  it('is judged again, in the same session and with the same text, once the schema changes under it', async () => {
    const c = new pg.Client(airlock.clientConfig());
    await c.connect();
    try {
      // Simple and extended protocol, the same shape each time: kept after the first.
      for (const id of [1, 2, 3]) {
        await c.query(`SELECT id, body FROM note_view WHERE id = ${id}`);
        await c.query('SELECT id, body FROM note_view WHERE id = $1', [id]);
      }
      // The view now calls a user function: reading it is refused, by the same session, for the texts it read before.
      await withClient(db.url, (a) => a.query('CREATE OR REPLACE VIEW public.note_view AS SELECT public.bump(id) AS id, body FROM notes'));
      await expect
        .poll(async () => c.query('SELECT id, body FROM note_view WHERE id = 1').then(() => 'served', (e: pg.DatabaseError) => e.code), { timeout: 20_000, interval: 250 })
        .toBe('42501');
      const extended = await c.query('SELECT id, body FROM note_view WHERE id = $1', [2]).catch((e: pg.DatabaseError) => e);
      expect((extended as pg.DatabaseError).code).toBe('42501');
      expect((extended as pg.DatabaseError).message).toMatch(/view public\.note_view/);
    } finally {
      await c.end();
    }
  });
});
