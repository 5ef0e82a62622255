/**
 * The README's set-up: Airlock's service account is not a superuser, only
 * CREATEROLE with ADMIN OPTION on pg_read_all_data. It must be able to
 * create the read roles, and the read path must hold as with a superuser.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase, testServers, uniqueName } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { dropRoles } from './support/drop-roles.js';

describe.each(testServers().map((s) => [s.name, s] as const))('a CREATEROLE service account on the %s server', (_name, server) => {
  let db: TestDatabase;
  let airlock: TestAirlock;
  const serviceUser = uniqueName('airlock_svc');
  const servicePassword = 'service-account-test-password';

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE ${serviceUser} LOGIN CREATEROLE PASSWORD '${servicePassword}'`);
      await admin.query(`GRANT pg_read_all_data TO ${serviceUser} WITH ADMIN OPTION`);
    } finally {
      await admin.end();
    }
    airlock = await startTestAirlock(server, db, { serviceAccount: { user: serviceUser, password: servicePassword } });
  });

  afterAll(async () => {
    await airlock?.close();
    await db?.drop();
    await dropRoles(server, [serviceUser]);
  });

  it('creates the read role, serves reads and refuses writes', async () => {
    const client = new pg.Client(airlock.clientConfig());
    await client.connect();
    try {
      expect((await client.query('SELECT count(*)::int AS n FROM executives')).rows[0].n).toBe(1206);
      expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe(airlock.config.agents[0]!.readRole);
      const err = await client.query('DELETE FROM executives').catch((e: unknown) => e as pg.DatabaseError);
      expect((err as pg.DatabaseError).code).toBe('42501');
      expect((await client.query('SELECT count(*)::int AS n FROM executives')).rows[0].n).toBe(1206);
    } finally {
      await client.end();
    }
  });
});
