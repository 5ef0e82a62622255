import { describe, it, expect } from 'vitest';
import type pg from 'pg';
import { DEMO_ROW_COUNTS, DEMO_TABLES, seedDemo } from './seed.js';
import { createTestDatabase, testServers, withClient } from '../../test/support/postgres-servers.js';

async function contentHashes(client: pg.Client): Promise<Record<string, string>> {
  const hashes: Record<string, string> = {};
  for (const table of DEMO_TABLES) {
    const result = await client.query<{ hash: string }>(
      `SELECT md5(string_agg(t::text, E'\\n' ORDER BY t.id)) AS hash FROM ${table} t`,
    );
    hashes[table] = result.rows[0]?.hash ?? '';
  }
  return hashes;
}

describe.each(testServers().map((s) => [s.name, s] as const))('seedDemo on the %s server', (_name, server) => {
  it('creates the demo company with exact row counts, in well under a second', async () => {
    const db = await createTestDatabase(server);
    try {
      const started = performance.now();
      await seedDemo(db.url);
      expect(performance.now() - started).toBeLessThan(1000);
      await withClient(db.url, async (client) => {
        for (const table of DEMO_TABLES) {
          const result = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
          expect([table, result.rows[0]?.n]).toEqual([table, DEMO_ROW_COUNTS[table]]);
        }
        const companies = await client.query<{ distinct_names: number }>(
          'SELECT count(DISTINCT name)::int AS distinct_names FROM companies',
        );
        expect(companies.rows[0]?.distinct_names).toBe(1196);
      });
    } finally {
      await db.drop();
    }
  });

  it('is deterministic and does nothing the second time', async () => {
    const [a, b] = await Promise.all([createTestDatabase(server), createTestDatabase(server)]);
    if (a === undefined || b === undefined) throw new Error('The test databases were not created.');
    try {
      await Promise.all([seedDemo(a.url), seedDemo(b.url)]);
      const first = await withClient(a.url, contentHashes);
      expect(await withClient(b.url, contentHashes)).toEqual(first);
      await withClient(a.url, (client) => seedDemo(client));
      expect(await withClient(a.url, contentHashes)).toEqual(first);
    } finally {
      await Promise.all([a.drop(), b.drop()]);
    }
  });

  it('refuses a database with a companies table of its own', async () => {
    const db = await createTestDatabase(server);
    try {
      await withClient(db.url, (client) => client.query('CREATE TABLE companies (id int)'));
      await expect(seedDemo(db.url)).rejects.toThrow(/already has a public\.companies table that the demo seed did not create/);
      const tables = await withClient(db.url, (client) =>
        client.query("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'"),
      );
      expect(tables.rows[0]?.n).toBe(1);
    } finally {
      await db.drop();
    }
  });

  it('gives the adversarial tests what they need: cascades, a writing function, views, sequences', async () => {
    const db = await createTestDatabase(server, { seed: true });
    try {
      await withClient(db.url, async (client) => {
        await client.query('BEGIN');
        await client.query('DELETE FROM companies WHERE id = 1');
        const left = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM executives WHERE company_id = 1');
        expect(left.rows[0]?.n).toBe(0);
        await client.query('ROLLBACK');

        await client.query('BEGIN');
        const purged = await client.query<{ n: number }>('SELECT purge_inactive_users() AS n');
        expect(purged.rows[0]?.n).toBeGreaterThan(0);
        await client.query('ROLLBACK');

        await client.query('BEGIN READ ONLY');
        await expect(client.query('SELECT purge_inactive_users()')).rejects.toMatchObject({ code: '25006' });
        await client.query('ROLLBACK');

        const objects = await client.query<{ views: number; sequences: number; volatile: string; deleted_at: number }>(
          `SELECT (SELECT count(*)::int FROM pg_views WHERE schemaname = 'public') AS views,
                  (SELECT count(*)::int FROM pg_sequences WHERE schemaname = 'public') AS sequences,
                  (SELECT provolatile FROM pg_proc WHERE proname = 'purge_inactive_users') AS volatile,
                  (SELECT count(*)::int FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'deleted_at') AS deleted_at`,
        );
        expect(objects.rows[0]).toEqual({ views: 2, sequences: DEMO_TABLES.length + 1, volatile: 'v', deleted_at: 2 });

        // Identities continue after the seeded ids.
        const inserted = await client.query<{ id: string }>(
          "INSERT INTO companies (name, domain, industry, country, employee_count, founded_year, plan, created_at) VALUES ('New Co', 'new.example', 'Software', 'US', 3, 2026, 'free', now()) RETURNING id",
        );
        expect(inserted.rows[0]?.id).toBe(String(DEMO_ROW_COUNTS.companies + 1));
      });
    } finally {
      await db.drop();
    }
  });
});
