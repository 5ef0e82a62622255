/**
 * The thin slice, end to end against real PostgreSQL: an agent connects
 * through Airlock, a read passes, a DELETE is refused and changes nothing.
 */
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { testServers } from './support/postgres-servers.js';
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
