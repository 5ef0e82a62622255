/**
 * Read roles are cluster-wide and outlive the test database they were named
 * after; a test drops the ones its Airlocks created, once they are closed
 * and the database is gone.
 */
import pg from 'pg';
import type { TestAirlock } from './airlock.js';
import type { TestServer } from './postgres-servers.js';

/** The read roles an Airlock instance uses (created or repaired at its start). */
export function readRolesOf(...instances: (TestAirlock | undefined)[]): string[] {
  return instances.flatMap((a) => a?.config.agents.map((agent) => agent.readRole) ?? []);
}

/** Drops the roles that exist among `roles`. */
export async function dropRoles(server: TestServer, roles: string[]): Promise<void> {
  if (roles.length === 0) return;
  const client = new pg.Client({ connectionString: server.adminUrl() });
  await client.connect();
  try {
    for (const role of new Set(roles)) await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(role)}`);
  } finally {
    await client.end();
  }
}
