/**
 * The README's set-up: Airlock's service account is not a superuser, only
 * CREATEROLE with ADMIN OPTION on pg_read_all_data, and the privileges its
 * agents' rules allow WITH GRANT OPTION. It must be able to create the read
 * and write roles, and both paths must hold as with a superuser.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase, testServers, uniqueName } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { agentRolesOf, dropRoles } from './support/drop-roles.js';

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
      await admin.query(`GRANT INSERT, UPDATE, DELETE ON public.tasks TO ${serviceUser} WITH GRANT OPTION`);
      // Undo capture (README, "Undo"): a schema of its own for the capture functions, and TRIGGER on the tables agents write.
      await admin.query(`CREATE SCHEMA airlock AUTHORIZATION ${serviceUser}`);
      await admin.query(`GRANT TRIGGER ON public.tasks TO ${serviceUser}`);
    } finally {
      await admin.end();
    }
    airlock = await startTestAirlock(server, db, {
      serviceAccount: { user: serviceUser, password: servicePassword },
      // The write role's grants were made by the service account, which only it (or dropping the database) takes back.
      keepRoles: true,
      agents: [{ name: 'claude', password: 'claude-test-password' }, { name: 'ops', password: 'ops-test-password' }],
      extraYaml: ['rules:', '  - { agents: [ops], kinds: [insert, update, delete], tables: [public.tasks], decision: allow }'],
    });
  });

  afterAll(async () => {
    await airlock?.close();
    await db?.drop();
    // The agents' roles first: the service account granted them their membership.
    await dropRoles(server, [...agentRolesOf(airlock), serviceUser]);
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

  it('creates the write role with the privileges the rules allow, and writes run as it', async () => {
    const writeRole = airlock.config.agents.find((a) => a.name === 'ops')!.writeRole;
    expect(airlock.gateway.warnings.filter((w) => w.includes(writeRole))).toEqual([]);
    const client = new pg.Client(airlock.clientConfig('ops'));
    await client.connect();
    try {
      await client.query('BEGIN');
      expect((await client.query("UPDATE tasks SET status = 'done' WHERE id = 1")).rowCount).toBe(1);
      expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe(writeRole);
      await client.query('ROLLBACK');
      const err = await client.query('DELETE FROM projects WHERE id = 1').catch((e: unknown) => e as pg.DatabaseError);
      expect((err as pg.DatabaseError).code).toBe('42501');
    } finally {
      await client.end();
    }
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      const grants = await admin.query<{ g: string }>(
        `SELECT table_name || ' ' || privilege_type AS g FROM information_schema.role_table_grants WHERE grantee = $1 ORDER BY 1`,
        [writeRole],
      );
      expect(grants.rows.map((r) => r.g)).toEqual(['tasks DELETE', 'tasks INSERT', 'tasks UPDATE']);
    } finally {
      await admin.end();
    }
  });
});
