/**
 * Bad input, end to end: garbage, malformed and oversized messages, a client
 * that vanishes mid-query, a database that goes away and comes back, failed
 * logins, and a newer protocol version. Each gets a clear error and harms no
 * other session.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/demo/embedded-postgres.js';
import type { RunningPostgres } from '../src/demo/embedded-postgres.js';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase, TestServer } from './support/postgres-servers.js';
import { DEFAULT_AGENT, startTestAirlock } from './support/airlock.js';
import type { TestAgent, TestAirlock } from './support/airlock.js';
import { dropRoles, readRolesOf } from './support/drop-roles.js';
import { encodeParse, encodeQuery, encodeSaslInitialResponse } from '../src/protocol/frontend.js';
import { encodeStartupMessage } from '../src/protocol/startup.js';
import { LoginError, WireClient, cstring, describeMessages, errorsIn, frontendMessage, int16, int32, loginClient } from './support/wire.js';
import type { WireLogin } from './support/wire.js';

const [server] = testServers() as [TestServer, ...TestServer[]];
const BULKY: TestAgent = { name: 'bulky', password: 'bulky-test-password' };

/**
 * Reads until the server closes the connection, and expects exactly one
 * ErrorResponse on the way, FATAL: what a session ended for bad input gets.
 * Returns its fields.
 */
async function fatalThenClosed(client: WireClient): Promise<Map<string, string>> {
  const messages = await client.rest();
  expect(client.closed).toBe(true);
  const errs = errorsIn(messages);
  expect(errs, describeMessages(messages)).toHaveLength(1);
  expect(errs[0]!.get('S')).toBe('FATAL');
  return errs[0]!;
}

/** Logs in and drops the connection again; rejects as the login does. */
async function loginOnce(login: WireLogin): Promise<void> {
  (await loginClient(login)).client.destroy();
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns its last answer. */
async function eventually(check: () => Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}

describe(`bad input on the ${server.name} server`, () => {
  let db: TestDatabase;
  let airlock: TestAirlock;
  let admin: pg.Client;
  /** Read roles of the extra Airlock instances started below, dropped at the end. */
  const extraRoles: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    airlock = await startTestAirlock(server, db);
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
  });

  afterAll(async () => {
    await admin?.end();
    await airlock?.close();
    await db?.drop();
    await dropRoles(server, [...readRolesOf(airlock), ...extraRoles]);
  });

  const login = () => airlock.clientConfig();

  /** A node-postgres session opened before the bad input and checked after it. */
  async function bystander(): Promise<{ check(): Promise<void>; end(): Promise<void> }> {
    const client = new pg.Client(airlock.clientConfig());
    await client.connect();
    return {
      async check() {
        const r = await client.query('SELECT count(*)::int AS n FROM executives');
        expect(r.rows[0].n).toBe(1206);
      },
      end: () => client.end(),
    };
  }

  describe('garbage instead of a StartupMessage', () => {
    it.each([
      ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')],
      ['a start-up packet of protocol 9.9', Buffer.concat([int32(8), int32((9 << 16) + 9)])],
      ['a length word below the minimum', Buffer.concat([int32(4), int32(0)])],
      ['random bytes', Buffer.from('8f1e0c2b9a77d3e4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8', 'hex')],
    ])('closes the connection on %s with 08P01, and a client connecting meanwhile works', async (_what, bytes) => {
      const bad = await WireClient.connect(airlock.port);
      const good = new pg.Client(airlock.clientConfig());
      try {
        bad.send(bytes);
        const [error] = await Promise.all([fatalThenClosed(bad), good.connect()]);
        expect(error.get('C')).toBe('08P01');
        expect(error.get('M')).toMatch(/^airlock: protocol violation: /);
        const r = await good.query('SELECT count(*)::int AS n FROM companies');
        expect(r.rows[0].n).toBe(1196);
      } finally {
        bad.destroy();
        await good.end();
      }
    });
  });

  describe('malformed messages after login', () => {
    it.each([
      ['a length field below 4', Buffer.from([0x51, 0, 0, 0, 2]), /invalid message length 2/],
      [
        'a Bind whose parameter count overruns the message',
        // Portal '', statement '', no format codes, 5 parameters, and then nothing.
        frontendMessage('B', Buffer.concat([cstring(''), cstring(''), int16(0), int16(5)])),
        /Bind/,
      ],
      [
        'a Bind with a parameter length past the end',
        frontendMessage('B', Buffer.concat([cstring(''), cstring(''), int16(0), int16(1), int32(1000), Buffer.from('abc')])),
        /Bind/,
      ],
      ['an unknown message type', frontendMessage('z', Buffer.from('whatever')), /invalid frontend message type/],
      ['a Query without its terminating zero byte', frontendMessage('Q', Buffer.from('SELECT 1')), /Query/],
      [
        'a Query with a second statement hidden after its terminator',
        frontendMessage('Q', Buffer.concat([cstring('SELECT 1'), cstring('DELETE FROM executives')])),
        /Query/,
      ],
      ['a Parse with a negative parameter-type count', frontendMessage('P', Buffer.concat([cstring(''), cstring('SELECT 1'), int16(-3)])), /Parse/],
      ['a message claiming to be 2 GB long', Buffer.concat([Buffer.from('Q'), int32(0x7ffffff0), Buffer.from('SELECT 1')]), /larger than the limit/],
    ])('answers %s with FATAL 08P01 and closes; other sessions go on', async (_what, bytes, detail) => {
      const other = await bystander();
      const { client } = await loginClient(login());
      try {
        client.send(bytes);
        const error = await fatalThenClosed(client);
        expect(error.get('C')).toBe('08P01');
        expect(error.get('M')).toMatch(/^airlock: protocol violation: /);
        expect(error.get('M')).toMatch(detail);
        await other.check();
      } finally {
        client.destroy();
        await other.end();
      }
      const n = await admin.query('SELECT count(*)::int AS n FROM executives');
      expect(n.rows[0].n).toBe(1206);
    });
  });

  describe('oversized messages (limits.max_message_bytes: 65536)', () => {
    let limited: TestAirlock;

    beforeAll(async () => {
      // An agent of its own: a second instance for the same agent would rotate that agent's
      // read-role password under the first (see the two-instances test below).
      limited = await startTestAirlock(server, db, { agents: [BULKY], extraYaml: ['limits:', '  max_message_bytes: 65536'] });
    });

    afterAll(async () => {
      await limited?.close();
      extraRoles.push(...readRolesOf(limited));
    });

    const login = () => limited.clientConfig(BULKY.name);
    const padded = (bytes: number): string => {
      const head = 'SELECT 1 AS one /* ';
      return head + 'x'.repeat(bytes - head.length - 3) + ' */';
    };

    it('serves a 60 KB query under the limit', async () => {
      const { client } = await loginClient(login());
      try {
        const messages = await client.query(padded(60_000));
        expect(messages.map((m) => m.type)).toEqual(['T', 'D', 'C', 'Z']);
      } finally {
        client.destroy();
      }
    });

    it('refuses a 100 KB query with FATAL 08P01 naming the limit, and closes', async () => {
      const other = new pg.Client(limited.clientConfig());
      await other.connect();
      const { client } = await loginClient(login());
      try {
        client.send(encodeQuery(padded(100_000)));
        const error = await fatalThenClosed(client);
        expect(error.get('C')).toBe('08P01');
        expect(error.get('M')).toContain('larger than the limit of 65536 bytes (limits.max_message_bytes)');
        expect((await other.query('SELECT 2 AS two')).rows[0].two).toBe(2);
      } finally {
        client.destroy();
        await other.end();
      }
    });

    it('refuses 100 KB of small messages sent without a Sync', async () => {
      const { client } = await loginClient(login());
      try {
        client.send(...Array.from({ length: 100 }, (_, i) => encodeParse(`s${i}`, padded(1_000))));
        const error = await fatalThenClosed(client);
        expect(error.get('C')).toBe('08P01');
        expect(error.get('M')).toContain('without a Sync or Flush');
      } finally {
        client.destroy();
      }
    });

    it('refuses an oversized start-up packet before any login', async () => {
      const client = await WireClient.connect(limited.port);
      try {
        client.send(encodeStartupMessage({ user: 'claude', database: db.name, application_name: 'x'.repeat(20_000) }));
        expect((await fatalThenClosed(client)).get('C')).toBe('08P01');
      } finally {
        client.destroy();
      }
    });
  });

  describe('a client that disconnects mid-query', () => {
    const running = async (marker: string): Promise<number> => {
      const r = await admin.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`,
        [`%${marker}%`],
      );
      return r.rows[0].n as number;
    };

    /** Logs in, starts a 20-second query, waits until the database runs it, then drops the socket. */
    async function leaveMidQuery(marker: string): Promise<void> {
      const { client } = await loginClient(login());
      try {
        client.send(encodeQuery(`SELECT pg_sleep(20) AS ${marker}`));
        expect(await eventually(async () => (await running(marker)) === 1, 5_000)).toBe(true);
      } finally {
        client.destroy();
      }
    }

    it('keeps serving others and closes the session', async () => {
      const other = await bystander();
      try {
        const before = airlock.gateway.sessions;
        await leaveMidQuery(`gone_${Date.now()}`);
        await other.check();
        expect(await eventually(async () => airlock.gateway.sessions === before, 2_000)).toBe(true);
        await other.check();
      } finally {
        await other.end();
      }
    });

    // A backend busy in a query notices a closed client only when it next
    // writes, so without a cancel the agent's query would run on (holding
    // its snapshot and locks) long after the agent left.
    it('ends the upstream query of a client that left, within a few seconds', async () => {
      const marker = `orphan_${Date.now()}`;
      await leaveMidQuery(marker);
      expect(await eventually(async () => (await running(marker)) === 0, 4_000)).toBe(true);
    });
  });

  describe('two Airlock instances on one database', () => {
    const TWIN: TestAgent = { name: 'twin', password: 'twin-test-password' };

    // Several instances behind a load balancer (DESIGN.md), or a rolling
    // restart: a second instance's start must not lock the first one out of
    // new upstream connections (read-role passwords are derived, not drawn).
    it('lets the first instance serve new sessions after a second one starts', async () => {
      const first = await startTestAirlock(server, db, { agents: [TWIN] });
      extraRoles.push(...readRolesOf(first));
      let second: TestAirlock | undefined;
      try {
        await loginOnce(first.clientConfig(TWIN.name));
        second = await startTestAirlock(server, db, { agents: [TWIN] });
        await loginOnce(second.clientConfig(TWIN.name));
        const again = await loginOnce(first.clientConfig(TWIN.name)).then(
          () => 'logged in',
          (e: unknown) => (e instanceof Error ? e.message : String(e)),
        );
        expect(again).toBe('logged in');
      } finally {
        await second?.close();
        await first.close();
      }
    });
  });

  describe('unknown agent and wrong password', () => {
    /** Runs a login to its end and returns the ErrorResponse it got: its fields and exact bytes. */
    async function failedLogin(user: string, password: string): Promise<{ fields: Map<string, string>; raw: Buffer }> {
      const error = await loginOnce({ port: airlock.port, user, password, database: db.name }).then(
        () => new Error(`The login of ${user} succeeded.`),
        (e: unknown) => e,
      );
      if (error instanceof LoginError && error.fields !== null && error.raw !== null) return { fields: error.fields, raw: error.raw };
      throw error;
    }

    /** The server-first-message's salt and iteration count for `user`. */
    async function serverFirst(user: string): Promise<{ salt: string; iterations: string }> {
      const client = await WireClient.connect(airlock.port);
      try {
        client.send(encodeStartupMessage({ user, database: db.name }));
        const sasl = await client.until('R');
        expect(sasl.at(-1)!.body.readInt32BE(0)).toBe(10);
        client.send(encodeSaslInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=,r=abcdefghijklmnopqrstuvwx')));
        const cont = (await client.until('R')).at(-1)!;
        expect(cont.body.readInt32BE(0)).toBe(11);
        const attrs = new Map(cont.body.subarray(4).toString('utf8').split(',').map((kv) => [kv[0]!, kv.slice(2)] as const));
        return { salt: attrs.get('s') ?? '', iterations: attrs.get('i') ?? '' };
      } finally {
        client.destroy();
      }
    }

    it('answers both with 28P01 and the same message', async () => {
      const wrong = await failedLogin(DEFAULT_AGENT.name, 'not-the-password');
      const unknown = await failedLogin('mallory', DEFAULT_AGENT.password);
      for (const e of [wrong, unknown]) {
        expect(e.fields.get('S')).toBe('FATAL');
        expect(e.fields.get('C')).toBe('28P01');
      }
      // PostgreSQL's message names the user as given; apart from that name the answers are byte-identical.
      const anonymise = (e: { raw: Buffer }, user: string): Buffer => Buffer.from(e.raw.subarray(5).toString('utf8').replaceAll(`"${user}"`, '"<user>"'));
      expect(anonymise(unknown, 'mallory')).toEqual(anonymise(wrong, DEFAULT_AGENT.name));
      expect(wrong.fields.get('M')).toBe(`password authentication failed for user "${DEFAULT_AGENT.name}"`);
    });

    it('gives an unknown agent a salt as stable and as shaped as a real one', async () => {
      const [real1, real2, fake1, fake2] = await Promise.all([
        serverFirst(DEFAULT_AGENT.name),
        serverFirst(DEFAULT_AGENT.name),
        serverFirst('mallory'),
        serverFirst('mallory'),
      ]);
      expect(real2).toEqual(real1);
      expect(fake2).toEqual(fake1);
      expect(fake1.iterations).toBe(real1.iterations);
      expect(Buffer.from(fake1.salt, 'base64')).toHaveLength(Buffer.from(real1.salt, 'base64').length);
      expect(fake1.salt).not.toBe(real1.salt);
    });
  });

  describe('protocol version negotiation', () => {
    it.each([
      ['3.2 with a _pq_ option', 2, { '_pq_.airlock_test_option': 'on' }, ['_pq_.airlock_test_option']],
      ['3.2 without options', 2, {}, []],
      ['3.0 with a _pq_ option', 0, { '_pq_.other': 'x' }, ['_pq_.other']],
    ] as const)('answers a request for %s with NegotiateProtocolVersion 3.0, then serves', async (_what, minor, options, unrecognised) => {
      const client = await WireClient.connect(airlock.port);
      try {
        const session = await client.login(login(), { params: options, minor });
        const v = session.messages.filter((m) => m.type === 'v');
        expect(v).toHaveLength(1);
        const body = v[0]!.body;
        expect(body.readInt32BE(0)).toBe(0);
        expect(body.readInt32BE(4)).toBe(unrecognised.length);
        expect(body.subarray(8).toString('utf8').split('\0').filter((s) => s !== '')).toEqual(unrecognised);
        // Protocol 3.0: a 4-byte cancel key.
        expect(session.secretKey).toHaveLength(4);
        const r = await client.query('SELECT count(*) AS n FROM companies');
        expect(r.map((m) => m.type)).toEqual(['T', 'D', 'C', 'Z']);
      } finally {
        client.destroy();
      }
    });

    it('does not negotiate when 3.0 is asked plainly', async () => {
      const { client, session } = await loginClient(login());
      client.destroy();
      expect(session.messages.some((m) => m.type === 'v')).toBe(false);
    });
  });
});

describe('a dead upstream', () => {
  let workDir: string;
  let pgServer: RunningPostgres;
  let testServer: TestServer;
  let db: TestDatabase;
  let airlock: TestAirlock;

  const start = async (port?: number): Promise<RunningPostgres> =>
    startEmbeddedPostgres({ dataDir: join(workDir, 'data'), persistent: true, port });

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'airlock-dead-upstream-'));
    // As root, the server runs as the OS user postgres, which must enter this directory.
    await chmod(workDir, 0o755);
    pgServer = await start();
    const p = pgServer;
    testServer = {
      name: 'embedded',
      host: p.host,
      port: p.port,
      user: p.user,
      password: p.password,
      adminUrl: (database = 'postgres') => p.url(database),
    };
    db = await createTestDatabase(testServer, { seed: true });
    airlock = await startTestAirlock(testServer, db);
  }, 120_000);

  afterAll(async () => {
    await airlock?.close();
    await pgServer?.stop();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  const login = () => airlock.clientConfig();

  it('gives open and new sessions a clear error, keeps running, and serves again when the database is back', async () => {
    const { client: open } = await loginClient(login());
    expect((await open.query('SELECT 1')).map((m) => m.type)).toEqual(['T', 'D', 'C', 'Z']);

    await pgServer.stop();

    // The open session is told, and closed.
    const lost = await open.rest();
    expect(open.closed).toBe(true);
    const lostErrors = errorsIn(lost);
    expect(lostErrors.map((f) => f.get('C')), describeMessages(lost)).toContain('08006');
    const airlockError = lostErrors.find((f) => f.get('C') === '08006')!;
    expect(airlockError.get('S')).toBe('FATAL');
    expect(airlockError.get('M')).toBe('airlock: the connection to the database was lost');

    // A new session is told why it cannot start; Airlock itself still answers.
    const down = await loginOnce(login()).catch((e: unknown) => e);
    expect(down).toBeInstanceOf(LoginError);
    const fields = (down as LoginError).fields;
    expect(fields?.get('S')).toBe('FATAL');
    expect(fields?.get('C')).toBe('08001');
    expect(fields?.get('M')).toMatch(/^airlock: could not connect to the database: .*ECONNREFUSED/);
    expect(fields?.get('H')).toContain('Airlock is running');

    // A wrong password is still refused as such while the database is down: no upstream needed for that.
    const wrong = await loginOnce({ ...login(), password: 'nope' }).catch((e: unknown) => e);
    expect((wrong as LoginError).fields?.get('C')).toBe('28P01');

    pgServer = await start(testServer.port);
    const { client: again } = await loginClient(login());
    try {
      expect(await again.queryRows('SELECT count(*)::int AS n FROM executives')).toEqual([['1206']]);
      expect(airlock.gateway.sessions).toBe(1);
    } finally {
      again.destroy();
    }
  }, 60_000);
});
