/**
 * limits.statement_timeout_ms holds for agent sessions, and the agent cannot
 * lift it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';

const server = testServers()[0]!;

describe('statement and lock timeouts', () => {
  let db: TestDatabase;
  let airlock: TestAirlock;

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    airlock = await startTestAirlock(server, db, { extraYaml: ['limits:', '  statement_timeout_ms: 300', '  lock_timeout_ms: 200'] });
  });

  afterAll(async () => {
    await airlock?.close();
    await db?.drop();
  });

  it('cancels a statement that runs past statement_timeout_ms with 57014, and the session goes on', async () => {
    const client = new pg.Client(airlock.clientConfig());
    await client.connect();
    try {
      expect((await client.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('300ms');
      expect((await client.query('SHOW lock_timeout')).rows[0].lock_timeout).toBe('200ms');
      const err = await client.query('SELECT pg_sleep(2)').catch((e: unknown) => e as pg.DatabaseError);
      expect((err as pg.DatabaseError).code).toBe('57014');
      // The agent cannot lift it.
      for (const lift of ['SET statement_timeout = 0', "SELECT set_config('statement_timeout', '0', false)", 'RESET statement_timeout', 'RESET ALL']) {
        const refused = await client.query(lift).catch((e: unknown) => e as pg.DatabaseError);
        expect(refused, lift).toBeInstanceOf(Error);
      }
      expect((await client.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('300ms');
      expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    } finally {
      await client.end();
    }
  });

  it('gives up waiting for a lock after lock_timeout_ms', async () => {
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    const client = new pg.Client(airlock.clientConfig());
    await client.connect();
    try {
      await admin.query('BEGIN');
      await admin.query('LOCK TABLE companies IN ACCESS EXCLUSIVE MODE');
      const err = await client.query('SELECT count(*) FROM companies').catch((e: unknown) => e as pg.DatabaseError);
      expect((err as pg.DatabaseError).code).toBe('55P03');
    } finally {
      await admin.query('ROLLBACK');
      await admin.end();
      await client.end();
    }
  });
});
