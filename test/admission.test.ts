/**
 * Fair shares at the door, end to end: connections that have not logged in
 * are counted apart and time out, and each agent holds at most its own
 * number of sessions, so that neither silent sockets nor one busy agent keep
 * another agent out.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parseErrorFields } from '../src/protocol/backend.js';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase, TestServer } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAgent, TestAirlock } from './support/airlock.js';
import { dropRoles, readRolesOf } from './support/drop-roles.js';

const [server] = testServers() as [TestServer, ...TestServer[]];
const BUSY: TestAgent = { name: 'busy', password: 'busy-test-password', extra: ['    max_sessions: 3'] };
const OTHER: TestAgent = { name: 'other', password: 'other-test-password' };
const LOGIN_TIMEOUT_MS = 1_500;
const MAX_PENDING = 32;

/** A TCP connection that sends nothing; it records what the server sent and when it closed. */
interface Silent {
  socket: net.Socket;
  received: Buffer[];
  closedAt: number | null;
}

function openSilent(port: number): Promise<Silent> {
  return new Promise((resolve, reject) => {
    const silent: Silent = { socket: net.connect(port, '127.0.0.1'), received: [], closedAt: null };
    silent.socket.on('data', (chunk: Buffer) => silent.received.push(chunk));
    silent.socket.on('close', () => (silent.closedAt = Date.now()));
    silent.socket.once('connect', () => resolve(silent));
    silent.socket.once('error', reject);
  });
}

/** The fields of the first ErrorResponse in what the server sent. */
function firstError(bytes: Buffer): Map<string, string> | null {
  for (let at = 0; at + 5 <= bytes.length; ) {
    const length = bytes.readInt32BE(at + 1);
    if (bytes[at] === 0x45) return parseErrorFields(bytes.subarray(at + 5, at + 1 + length));
    at += 1 + length;
  }
  return null;
}

describe(`admission on the ${server.name} server`, () => {
  let db: TestDatabase;
  let airlock: TestAirlock;
  const clients: pg.Client[] = [];
  const sockets: net.Socket[] = [];

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    airlock = await startTestAirlock(server, db, {
      agents: [BUSY, OTHER],
      extraYaml: ['limits:', `  login_timeout_ms: ${LOGIN_TIMEOUT_MS}`, `  max_pending_logins: ${MAX_PENDING}`, '  max_clients: 20'],
    });
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    for (const c of clients) await c.end().catch(() => undefined);
    await airlock?.close();
    await db?.drop();
    await dropRoles(server, readRolesOf(airlock));
  });

  async function login(agent: TestAgent): Promise<pg.Client> {
    const client = new pg.Client(airlock.clientConfig(agent.name));
    // A session ended by the server after login is this test's business, not an uncaught error.
    client.on('error', () => undefined);
    await client.connect();
    clients.push(client);
    return client;
  }

  it('lets a real agent in past 300 silent sockets', async () => {
    const silent = await Promise.all(Array.from({ length: 300 }, () => openSilent(airlock.port)));
    sockets.push(...silent.map((s) => s.socket));
    const started = Date.now();
    const client = await login(OTHER);
    const { rows } = await client.query<{ one: number }>('SELECT 1 AS one');
    expect(rows).toEqual([{ one: 1 }]);
    // Well before the silent ones time out: nobody waited for them.
    expect(Date.now() - started).toBeLessThan(LOGIN_TIMEOUT_MS);
    // At most max_pending_logins of them are still held; the rest were let go with 53300.
    await new Promise((r) => setTimeout(r, 200));
    const open = silent.filter((s) => s.closedAt === null);
    expect(open.length).toBeLessThanOrEqual(MAX_PENDING);
    const letGo = silent.find((s) => s.closedAt !== null);
    expect(firstError(Buffer.concat(letGo?.received ?? []))?.get('C')).toBe('53300');
    await client.end();
    clients.splice(clients.indexOf(client), 1);
  });

  it('closes connections that do not log in within limits.login_timeout_ms', async () => {
    const silent = await openSilent(airlock.port);
    sockets.push(silent.socket);
    const opened = Date.now();
    for (let i = 0; i < 100 && silent.closedAt === null; i++) await new Promise((r) => setTimeout(r, 50));
    expect(silent.closedAt).not.toBeNull();
    const after = (silent.closedAt ?? 0) - opened;
    expect(after).toBeGreaterThanOrEqual(LOGIN_TIMEOUT_MS - 100);
    expect(after).toBeLessThan(LOGIN_TIMEOUT_MS + 2_000);
    const error = firstError(Buffer.concat(silent.received));
    expect(error?.get('C')).toBe('08006');
    expect(error?.get('M')).toMatch(/login_timeout_ms is 1500/);
  });

  it("refuses an agent's session beyond its max_sessions with 53300, naming the limit, while another agent still logs in", async () => {
    const held = [await login(BUSY), await login(BUSY), await login(BUSY)];
    const refused = new pg.Client(airlock.clientConfig(BUSY.name));
    refused.on('error', () => undefined);
    const error = await refused.connect().then(
      () => null,
      (e: unknown) => e as { code?: string; message: string },
    );
    expect(error?.code).toBe('53300');
    expect(error?.message).toMatch(/agent "busy" already holds 3 sessions, its limit \(max_sessions is 3\)/);

    const other = await login(OTHER);
    expect((await other.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);

    // A place freed is a place again.
    await held[0]!.end();
    clients.splice(clients.indexOf(held[0]!), 1);
    await new Promise((r) => setTimeout(r, 100));
    const again = await login(BUSY);
    expect((await again.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });
});

describe(`the process memory budget on the ${server.name} server`, () => {
  let db: TestDatabase;
  let airlock: TestAirlock;

  beforeAll(async () => {
    db = await createTestDatabase(server);
    // 64 MiB, the least there is: a Node.js process running the test suite is always over it.
    airlock = await startTestAirlock(server, db, { agents: [OTHER], extraYaml: ['limits:', '  max_memory_bytes: 67108864'] });
  });

  afterAll(async () => {
    await airlock?.close();
    await db?.drop();
    await dropRoles(server, readRolesOf(airlock));
  });

  it('refuses new connections with 53200 while the process is over limits.max_memory_bytes, saying so', async () => {
    const client = new pg.Client(airlock.clientConfig(OTHER.name));
    client.on('error', () => undefined);
    const error = await client.connect().then(
      () => null,
      (e: unknown) => e as { code?: string; message: string },
    );
    expect(error?.code).toBe('53200');
    expect(error?.message).toMatch(/over its memory budget \(\d+ MiB in use, limits\.max_memory_bytes is 64 MiB\)/);
    await client.end().catch(() => undefined);
  });
});
