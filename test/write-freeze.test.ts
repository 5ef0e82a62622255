/**
 * A freeze against an agent that may write, across the things that must not
 * loosen it: an Airlock restart, a scheduled window opening and closing (on a
 * fake clock), and everything the agent itself can send.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createAdminToken } from '../src/state/admin-tokens.js';
import { adminRequest } from '../src/cli/admin-client.js';
import { createTestDatabase, testServers, withClient } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAgent, TestAirlock } from './support/airlock.js';
import { dropRoles } from './support/drop-roles.js';

const server = testServers()[0]!;
const OPS: TestAgent = { name: 'ops', password: 'ops-test-password', profile: 'read-write' };

async function write(airlock: TestAirlock, sql: string): Promise<pg.QueryResult | pg.DatabaseError> {
  const c = new pg.Client(airlock.clientConfig('ops'));
  await c.connect();
  try {
    return await c.query(sql).catch((e: unknown) => e as pg.DatabaseError);
  } finally {
    await c.end();
  }
}

function expectRefused(result: pg.QueryResult | pg.DatabaseError, code = '25006'): pg.DatabaseError {
  expect(result).toBeInstanceOf(Error);
  expect((result as pg.DatabaseError).code).toBe(code);
  return result as pg.DatabaseError;
}

describe('a freeze on an agent that may write', () => {
  let db: TestDatabase;
  let stateDir: string;

  beforeAll(async () => {
    db = await createTestDatabase(server);
    await withClient(db.url, (c) => c.query('CREATE TABLE public.notes (id int PRIMARY KEY, body text); INSERT INTO public.notes VALUES (1, $$a$$)'));
    stateDir = await mkdtemp(join(tmpdir(), 'airlock-write-freeze-'));
  });

  afterAll(async () => {
    await dropRoles(server, [`${db.name}_ops`, `${db.name}_ops_w`]);
    await db?.drop();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('survives a restart, and only an admin unfreeze through the admin API lifts it', async () => {
    const token = await createAdminToken(stateDir, 'alice');
    let airlock = await startTestAirlock(server, db, { agents: [OPS], stateDir, keepRoles: true });
    try {
      const admin = (path: string, body: unknown) =>
        adminRequest({ host: airlock.gateway.adminAddress.host, port: airlock.gateway.adminAddress.port, token }, 'POST', path, body);
      expect(await write(airlock, "UPDATE notes SET body = 'b' WHERE id = 1")).toMatchObject({ rowCount: 1 });
      expect((await admin('/v1/freeze', { agent: 'ops', reason: 'incident 42' })).status).toBe(201);
      expectRefused(await write(airlock, "UPDATE notes SET body = 'c' WHERE id = 1"));
      await airlock.close();

      airlock = await startTestAirlock(server, db, { agents: [OPS], stateDir, keepRoles: true });
      const err = expectRefused(await write(airlock, "UPDATE notes SET body = 'c' WHERE id = 1"));
      expect(err.message).toMatch(/alice/);
      expect(err.message).toMatch(/incident 42/);
      // Reads go on.
      const c = new pg.Client(airlock.clientConfig('ops'));
      await c.connect();
      expect((await c.query('SELECT body FROM notes')).rows).toEqual([{ body: 'b' }]);
      await c.end();

      const again = (path: string, body: unknown) =>
        adminRequest({ host: airlock.gateway.adminAddress.host, port: airlock.gateway.adminAddress.port, token }, 'POST', path, body);
      expect((await again('/v1/unfreeze', { agent: 'ops' })).status).toBe(200);
      expect(await write(airlock, "UPDATE notes SET body = 'c' WHERE id = 1")).toMatchObject({ rowCount: 1 });
    } finally {
      await airlock.close();
    }
  });

  it('follows a scheduled window on the clock: writes stop when it starts and come back when it ends', async () => {
    let now = new Date('2030-01-07T08:00:00Z');
    const airlock = await startTestAirlock(server, db, {
      agents: [OPS],
      keepRoles: true,
      now: () => now,
      extraYaml: ['freeze_windows:', '  - name: release', '    reason: release freeze', '    from: "2030-01-07T09:00:00Z"', '    to: "2030-01-07T10:00:00Z"'],
    });
    try {
      const c = new pg.Client(airlock.clientConfig('ops'));
      await c.connect();
      try {
        expect((await c.query("UPDATE notes SET body = 'before' WHERE id = 1")).rowCount).toBe(1);
        await c.query('BEGIN');
        await c.query("UPDATE notes SET body = 'in a transaction' WHERE id = 1");
        now = new Date('2030-01-07T09:00:01Z');
        const commit = await c.query('COMMIT').catch((e: unknown) => e as pg.DatabaseError);
        expect(expectRefused(commit).message).toMatch(/scheduled window "release"/);
        const during = await c.query("UPDATE notes SET body = 'during' WHERE id = 1").catch((e: unknown) => e as pg.DatabaseError);
        expect(expectRefused(during).message).toMatch(/until 2030-01-07T10:00:00/);
        // Nothing the agent sends ends the window early.
        for (const sql of ["SET application_name = 'end window release'", "SELECT 'airlock unfreeze --window release'"]) await c.query(sql);
        expectRefused(await c.query("UPDATE notes SET body = 'during' WHERE id = 1").catch((e: unknown) => e as pg.DatabaseError));
        expect((await c.query('SELECT body FROM notes')).rows).toEqual([{ body: 'before' }]);
        now = new Date('2030-01-07T10:00:01Z');
        expect((await c.query("UPDATE notes SET body = 'after' WHERE id = 1")).rowCount).toBe(1);
      } finally {
        await c.end();
      }
    } finally {
      await airlock.close();
    }
  });
});
