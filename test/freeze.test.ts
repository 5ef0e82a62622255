/**
 * The freeze switch, end to end: only a human with an admin token flips it,
 * through the admin API; a frozen agent's attempts to change anything are
 * refused with who, when, why and until when; reads go on; it survives a
 * restart; the tripwire pulls it; nothing the agent sends lifts it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createAdminToken } from '../src/state/admin-tokens.js';
import { adminRequest } from '../src/cli/admin-client.js';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { DEFAULT_AGENT, startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { dropRoles } from './support/drop-roles.js';

const server = testServers()[0]!;

describe('the freeze switch', () => {
  let db: TestDatabase;
  let stateDir: string;
  let airlock: TestAirlock;
  let token: string;

  const admin = (method: 'GET' | 'POST', path: string, body?: unknown, t = token) =>
    adminRequest({ host: airlock.gateway.adminAddress.host, port: airlock.gateway.adminAddress.port, token: t }, method, path, body);

  async function agent(): Promise<pg.Client> {
    const c = new pg.Client(airlock.clientConfig());
    await c.connect();
    return c;
  }

  async function refusal(c: pg.Client, sql: string): Promise<pg.DatabaseError> {
    const err = await c.query(sql).catch((e: unknown) => e as pg.DatabaseError);
    expect(err, sql).toBeInstanceOf(Error);
    return err as pg.DatabaseError;
  }

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    stateDir = await mkdtemp(join(tmpdir(), 'airlock-freeze-'));
    airlock = await startTestAirlock(server, db, { stateDir, keepRoles: true });
    token = await createAdminToken(stateDir, 'alice');
  });

  afterAll(async () => {
    await airlock?.close();
    await dropRoles(server, [`${db.name}_claude`]);
    await db?.drop();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('refuses admin calls without a valid admin token, including the agent password', async () => {
    const { host, port } = airlock.gateway.adminAddress;
    for (const authorization of [undefined, 'Bearer nonsense', `Bearer ${DEFAULT_AGENT.password}`, `Basic ${Buffer.from(`claude:${DEFAULT_AGENT.password}`).toString('base64')}`]) {
      const r = await fetch(`http://${host}:${port}/v1/freeze`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
        body: JSON.stringify({ reason: 'x' }),
      });
      expect(r.status, authorization).toBe(401);
    }
    expect(JSON.stringify((await admin('GET', '/v1/status')).body)).not.toContain('"x"');
  });

  it('freezes an agent mid-session: attempts to change anything name the freeze, reads go on', async () => {
    const session = await agent();
    try {
      const r = await admin('POST', '/v1/freeze', { agent: 'claude', reason: 'code freeze for the release', until: new Date(Date.now() + 3_600_000).toISOString() });
      expect(r.status).toBe(201);
      for (const sql of ['DELETE FROM executives', 'BEGIN; DROP TABLE companies; COMMIT', 'UPDATE tasks SET title = title']) {
        const err = await refusal(session, sql);
        expect(err.code, sql).toBe('25006');
        expect(err.message, sql).toContain('frozen by alice');
        expect(err.message, sql).toContain('code freeze for the release');
        expect(err.message, sql).toMatch(/until \d{4}-\d\d-\d\dT/);
      }
      await session.query('ROLLBACK').catch(() => undefined);
      expect((await session.query('SELECT count(*)::int AS n FROM executives')).rows[0].n).toBe(1206);
    } finally {
      await session.end();
    }
  });

  it('survives a restart of Airlock', async () => {
    await airlock.close();
    airlock = await startTestAirlock(server, db, { stateDir, keepRoles: true });
    const session = await agent();
    try {
      expect((await refusal(session, 'DELETE FROM executives')).message).toContain('frozen by alice');
    } finally {
      await session.end();
    }
  });

  it('is lifted by an unfreeze through the admin API, and refusals are ordinary again', async () => {
    const r = await admin('POST', '/v1/unfreeze', { agent: 'claude' });
    expect(r.status).toBe(200);
    const session = await agent();
    try {
      const err = await refusal(session, 'DELETE FROM executives');
      expect(err.code).toBe('42501');
      expect(err.message).not.toContain('frozen');
    } finally {
      await session.end();
    }
  });

  it('keeps a global freeze when one agent is unfrozen', async () => {
    expect((await admin('POST', '/v1/freeze', { reason: 'incident in progress' })).status).toBe(201);
    expect((await admin('POST', '/v1/unfreeze', { agent: 'claude' })).status).toBe(200);
    const session = await agent();
    try {
      expect((await refusal(session, 'DELETE FROM executives')).message).toContain('all agents are frozen by alice');
    } finally {
      await session.end();
    }
    expect((await admin('POST', '/v1/unfreeze', {})).status).toBe(200);
  });

  it('is pulled by the tripwire, and shows in the status', async () => {
    const session = await agent();
    try {
      for (const sql of ['DELETE FROM executives', 'DELETE FROM companies', 'TRUNCATE tasks']) await refusal(session, sql);
      let status: unknown = null;
      for (let i = 0; i < 50; i++) {
        status = (await admin('GET', '/v1/status')).body;
        if (JSON.stringify(status).includes('airlock-tripwire')) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(JSON.stringify(status)).toContain('airlock-tripwire');
      expect((await refusal(session, 'DELETE FROM users')).message).toContain('frozen by airlock-tripwire');
    } finally {
      await session.end();
      await admin('POST', '/v1/unfreeze', { agent: 'claude' });
    }
  });
});

describe('a scheduled freeze window', () => {
  it('freezes the agents it names while it holds', async () => {
    const db = await createTestDatabase(server, { seed: true });
    const from = new Date(Date.now() - 60_000).toISOString();
    const to = new Date(Date.now() + 3_600_000).toISOString();
    const airlock = await startTestAirlock(server, db, {
      extraYaml: ['freeze_windows:', '  - name: release', '    reason: release freeze', `    from: "${from}"`, `    to: "${to}"`],
    });
    try {
      const c = new pg.Client(airlock.clientConfig());
      await c.connect();
      const err = await c.query('DELETE FROM executives').catch((e: unknown) => e as pg.DatabaseError);
      expect((err as pg.DatabaseError).message).toContain('scheduled window "release"');
      expect((await c.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      await c.end();
    } finally {
      await airlock.close();
      await db.drop();
    }
  });
});
