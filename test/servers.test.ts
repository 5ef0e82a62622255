import { describe, it, expect } from 'vitest';
import { inject } from 'vitest';
import pg from 'pg';
import { createTestDatabase, testServers, uniqueName, UNIQUE_NAME_PATTERN } from './support/postgres-servers.js';
import { DEMO_ROW_COUNTS } from '../src/demo/seed.js';

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('the test servers', () => {
  it('provides the embedded server, with a password, and the local one when present', () => {
    const embedded = inject('airlockEmbeddedPostgres');
    expect(embedded.password).toMatch(/^[0-9a-f]{48}$/);
    const names = testServers().map((s) => s.name);
    expect(names[0]).toBe('embedded');
    expect(names.includes('local')).toBe(inject('airlockLocalPostgres') !== null);
  });

  it('requires the password on the embedded server (SCRAM-SHA-256)', async () => {
    const embedded = testServers()[0];
    if (embedded === undefined) throw new Error('The embedded server is missing.');
    const anonymous = new pg.Client({ host: embedded.host, port: embedded.port, user: embedded.user, password: 'wrong', database: 'postgres' });
    await expect(anonymous.connect()).rejects.toThrow(/password authentication failed/);
    const [row] = await query<{ version: string; enc: string }>(
      embedded.adminUrl(),
      "SELECT current_setting('server_version_num') AS version, current_setting('server_encoding') AS enc",
    );
    expect(Number(row?.version)).toBeGreaterThanOrEqual(180000);
    expect(row?.enc).toBe('UTF8');
  });

  it('makes unique names that the fingerprint recognises', () => {
    const a = uniqueName();
    expect(a).not.toBe(uniqueName());
    expect(a).toMatch(UNIQUE_NAME_PATTERN);
    expect(`${a}_reader`).toMatch(UNIQUE_NAME_PATTERN);
  });

  it('creates seeded databases on every server at once, and drops them even when in use', async () => {
    const servers = testServers();
    const databases = await Promise.all(
      servers.flatMap((server) => [1, 2, 3].map(() => createTestDatabase(server, { seed: true }))),
    );
    expect(new Set(databases.map((d) => d.name)).size).toBe(databases.length);
    for (const db of databases) {
      const [row] = await query<{ companies: number; executives: number }>(
        db.url,
        'SELECT (SELECT count(*)::int FROM companies) AS companies, (SELECT count(*)::int FROM executives) AS executives',
      );
      expect(row).toEqual({ companies: DEMO_ROW_COUNTS.companies, executives: DEMO_ROW_COUNTS.executives });
    }

    // A session left open and a prepared transaction must not stop drop().
    const [first] = databases;
    if (first === undefined) throw new Error('No database was created.');
    const lingering = new pg.Client({ connectionString: first.url });
    lingering.on('error', () => undefined); // drop() terminates it, on purpose.
    await lingering.connect();
    await lingering.query("BEGIN; DELETE FROM tasks WHERE id = 1; PREPARE TRANSACTION 'lingering'");

    await Promise.all(databases.map((d) => d.drop()));
    await lingering.end().catch(() => undefined); // Already terminated by drop(): nothing to end.

    for (const server of servers) {
      const names = databases.map((d) => d.name);
      const left = await query<{ datname: string }>(
        server.adminUrl(),
        `SELECT datname FROM pg_database WHERE datname IN (${names.map((n) => `'${n}'`).join(', ')})`,
      );
      expect(left).toEqual([]);
    }
  });
});
