/**
 * Read and write roles are cluster-wide and outlive the test database they
 * were named after; a test drops the ones its Airlocks created, once they are
 * closed. A write role holds grants (and may own tables) in its database: what
 * it holds or owns anywhere is dropped with it.
 */
import pg from 'pg';
import type { TestAirlock } from './airlock.js';
import type { TestServer } from './postgres-servers.js';

/** The read roles an Airlock instance uses (created or repaired at its start). */
export function readRolesOf(...instances: (TestAirlock | undefined)[]): string[] {
  return instances.flatMap((a) => a?.config.agents.map((agent) => agent.readRole) ?? []);
}

/** The read and write roles an Airlock instance's agents use (the write roles exist only for agents that may write). */
export function agentRolesOf(...instances: (TestAirlock | undefined)[]): string[] {
  return instances.flatMap((a) => a?.config.agents.flatMap((agent) => [agent.readRole, agent.writeRole]) ?? []);
}

/** Drops the roles that exist among `roles`, with whatever they own or were granted in any database. */
export async function dropRoles(server: TestServer, roles: string[]): Promise<void> {
  if (roles.length === 0) return;
  const client = new pg.Client({ connectionString: server.adminUrl() });
  await client.connect();
  try {
    for (const role of new Set(roles)) {
      const databases = await client.query<{ datname: string }>(
        `SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid
          WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
        [role],
      );
      for (const { datname } of databases.rows) {
        const there = new pg.Client({ connectionString: server.adminUrl(datname) });
        await there.connect();
        try {
          await there.query(`DROP OWNED BY ${there.escapeIdentifier(role)}`);
        } finally {
          await there.end();
        }
      }
      await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(role)}`).catch((err: pg.DatabaseError) => {
        throw new Error(`could not drop role ${role}: ${err.message} (${err.detail ?? ''})`);
      });
    }
  } finally {
    await client.end();
  }
}
