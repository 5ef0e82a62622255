/**
 * CancelRequest through Airlock: a session's own key (from its
 * BackendKeyData) cancels its running query; any other key — made up, half
 * right, another session's, another agent's, a closed session's — cancels
 * nothing.
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-CANCELING-REQUESTS
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { DEFAULT_AGENT, startTestAirlock } from './support/airlock.js';
import type { TestAgent, TestAirlock } from './support/airlock.js';
import { dropRoles, readRolesOf } from './support/drop-roles.js';
import { encodeQuery } from '../src/protocol/frontend.js';
import { describeMessages, errorsIn, loginClient, sendCancel } from './support/wire.js';
import type { WireClient, WireSession } from './support/wire.js';

const OTHER_AGENT: TestAgent = { name: 'codex', password: 'codex-test-password' };

describe.each(testServers().map((s) => [s.name, s] as const))('CancelRequest on the %s server', (_name, server) => {
  let db: TestDatabase;
  let airlock: TestAirlock;
  let admin: pg.Client;

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    airlock = await startTestAirlock(server, db, { agents: [DEFAULT_AGENT, OTHER_AGENT] });
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
  });

  afterAll(async () => {
    await admin?.end();
    await airlock?.close();
    await db?.drop();
    await dropRoles(server, readRolesOf(airlock));
  });

  async function connect(agent: TestAgent = DEFAULT_AGENT): Promise<{ client: WireClient; session: WireSession }> {
    return loginClient(airlock.clientConfig(agent.name));
  }

  /** Sends a pg_sleep tagged with a unique marker and waits until the database is running it. */
  async function startSleep(client: WireClient, seconds: number): Promise<void> {
    const marker = `sleep_${Math.random().toString(36).slice(2)}`;
    client.send(encodeQuery(`SELECT pg_sleep(${seconds}) AS ${marker}`));
    const deadline = Date.now() + 5_000;
    for (;;) {
      const r = await admin.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()",
        [`%${marker}%`],
      );
      if (r.rows[0].n === 1) return;
      if (Date.now() > deadline) throw new Error(`The query ${marker} did not start within 5 s.`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it('cancels the sender\'s own query with 57014, quickly, and the session goes on', async () => {
    const { client, session } = await connect();
    try {
      expect(session.secretKey).toHaveLength(4);
      await startSleep(client, 10);
      const sent = Date.now();
      await sendCancel(airlock.port, session.processId, session.secretKey);
      const messages = await client.until('Z', 3_000);
      expect(Date.now() - sent).toBeLessThan(2_000);
      const [error] = errorsIn(messages);
      expect(error?.get('C'), describeMessages(messages)).toBe('57014');
      expect(error?.get('S')).toBe('ERROR');
      const after = await client.query('SELECT 1 AS one');
      expect(after.map((m) => m.type)).toEqual(['T', 'D', 'C', 'Z']);
    } finally {
      client.destroy();
    }
  });

  /** Keys that must cancel nothing, given the victim's and a bystander's (same agent) and another agent's sessions. */
  const WRONG_KEYS: [string, (victim: WireSession, sameAgent: WireSession, otherAgent: WireSession) => [number, Buffer]][] = [
    ['a wrong secret with the right process id', (v) => [v.processId, Buffer.from(v.secretKey.map((b) => b ^ 0xff))]],
    ['the right secret with a wrong process id', (v) => [(v.processId ^ 1) & 0x7fffffff, v.secretKey]],
    ['the key of another session of the same agent', (_v, same) => [same.processId, same.secretKey]],
    ['the key of another agent\'s session', (_v, _same, other) => [other.processId, other.secretKey]],
    ['the process id of one session with the secret of another', (v, same) => [v.processId, same.secretKey]],
    ['the right key with bytes appended (a protocol 3.2 length)', (v) => [v.processId, Buffer.concat([v.secretKey, Buffer.alloc(28)])]],
  ];

  it.each(WRONG_KEYS)('does nothing with %s: the query runs to its end', async (_what, pick) => {
    const victim = await connect();
    const same = await connect();
    const other = await connect(OTHER_AGENT);
    try {
      // Keys are per session and unguessable: all three differ.
      const keys = new Set([victim, same, other].map(({ session }) => `${session.processId}:${session.secretKey.toString('hex')}`));
      expect(keys.size).toBe(3);
      await startSleep(victim.client, 1);
      const [processId, secretKey] = pick(victim.session, same.session, other.session);
      await sendCancel(airlock.port, processId, secretKey);
      const messages = await victim.client.until('Z', 5_000);
      expect(errorsIn(messages), describeMessages(messages)).toEqual([]);
      expect(messages.map((m) => m.type)).toEqual(['T', 'D', 'C', 'Z']);
      // The sessions whose keys were used are unharmed too.
      for (const { client } of [same, other]) expect((await client.query('SELECT 1')).map((m) => m.type)).toEqual(['T', 'D', 'C', 'Z']);
    } finally {
      for (const { client } of [victim, same, other]) client.destroy();
    }
  });

  it('forgets the key of a closed session', async () => {
    const gone = await connect();
    await gone.client.query('SELECT 1');
    gone.client.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const live = await connect();
    try {
      await startSleep(live.client, 1);
      await sendCancel(airlock.port, gone.session.processId, gone.session.secretKey);
      const messages = await live.client.until('Z', 5_000);
      expect(errorsIn(messages), describeMessages(messages)).toEqual([]);
    } finally {
      live.client.destroy();
    }
  });

  it('keeps serving when flooded with bogus CancelRequests', async () => {
    const { client } = await connect();
    try {
      await Promise.all(Array.from({ length: 50 }, (_, i) => sendCancel(airlock.port, i + 1, Buffer.from([i, i, i, i]))));
      expect(await client.queryRows('SELECT count(*) FROM executives')).toEqual([['1206']]);
    } finally {
      client.destroy();
    }
  });
});
