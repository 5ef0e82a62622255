/**
 * Statements too big or too complex to judge in time, end to end: the agent
 * gets a clear refusal, its session stays usable, and other agents are
 * served meanwhile (parsing runs on worker threads under a deadline, never
 * on the thread that relays everyone's traffic).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase, testServers, withClient } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { cstring, errorsIn, frontendMessage, int16, loginClient } from './support/wire.js';

const AGENTS = [
  { name: 'attacker', password: 'attacker-test-password' },
  { name: 'bystander', password: 'bystander-test-password' },
];

/** Cases PostgreSQL's own lexer and parser take seconds over (issue 12). */
const TOO_COMPLEX: [string, () => string][] = [
  ['a run of 100,000 "/*"', () => 'SELECT 1 ' + '/*'.repeat(100_000)],
  ['a run of 100,000 "/*" after a dollar quote', () => "SELECT $x$ $x$, 1 " + '/*'.repeat(100_000)],
];

const server = testServers()[0]!;

describe(`statements too big or too complex to judge (${server.name})`, () => {
  let db: TestDatabase;
  let airlock: TestAirlock;

  beforeAll(async () => {
    db = await createTestDatabase(server);
    await withClient(db.url, (c) => c.query('CREATE TABLE public.items (id int PRIMARY KEY); INSERT INTO public.items SELECT generate_series(1, 10)'));
    airlock = await startTestAirlock(server, db, {
      agents: AGENTS,
      extraYaml: ['limits:', '  classify_timeout_ms: 1000', '  max_statement_bytes: 262144', 'tripwire:', '  refusals: 1000'],
    });
  });

  afterAll(async () => {
    await airlock?.close();
    await db?.drop();
  });

  async function connect(agent: string): Promise<pg.Client> {
    const c = new pg.Client(airlock.clientConfig(agent));
    await c.connect();
    return c;
  }

  it('refuses a statement over limits.max_statement_bytes with 54000, unparsed, and the session goes on', async () => {
    const c = await connect('attacker');
    try {
      const err = await c.query(`SELECT 1 WHERE 1 IN (${Array.from({ length: 60_000 }, (_, i) => i).join(',')})`).catch((e: pg.DatabaseError) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as pg.DatabaseError).code).toBe('54000');
      expect((err as pg.DatabaseError).message).toMatch(/max_statement_bytes|too large/i);
      expect((await c.query('SELECT count(*)::int AS n FROM items')).rows[0]).toEqual({ n: 10 });
    } finally {
      await c.end();
    }
  });

  it('refuses statements megabytes past the limit, simple and extended, named and unnamed, and the session goes on', async () => {
    const c = await connect('attacker');
    try {
      const huge = `SELECT 1 WHERE 1 IN (${Array.from({ length: 600_000 }, (_, i) => i).join(',')})`;
      expect(huge.length).toBeGreaterThan(3_000_000);
      for (const query of [huge, { text: huge, values: [] }, { name: 'huge', text: huge, values: [] }]) {
        const err = await c.query(query).catch((e: pg.DatabaseError) => e);
        expect((err as pg.DatabaseError).code).toBe('54000');
        expect((await c.query('SELECT count(*)::int AS n FROM items')).rows[0]).toEqual({ n: 10 });
      }
    } finally {
      await c.end();
    }
  });

  it('holds none of a statement too long to judge while it trickles in: other agents are served, then it is refused and the session goes on', async () => {
    const { client } = await loginClient(airlock.clientConfig('attacker'));
    const bystander = await connect('bystander');
    try {
      // A Query announcing 8 MB, sent in 8 KB pieces (the unfinished-60mb attack of npm run fuzz, finished here).
      const total = 8 * 1024 * 1024;
      const head = Buffer.alloc(5);
      head[0] = 0x51;
      head.writeUInt32BE(4 + total, 1);
      client.send(head, Buffer.from('SELECT 1 /*'));
      const piece = Buffer.alloc(8192, 0x20);
      let sent = 'SELECT 1 /*'.length;
      for (let i = 0; sent + piece.length < total - 3; i++, sent += piece.length) {
        client.send(piece);
        if (i % 256 === 0) expect((await bystander.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      }
      client.send(Buffer.alloc(total - 3 - sent, 0x20), Buffer.from('*/\0'));
      const answer = await client.collect();
      expect(errorsIn(answer.messages).map((e) => e.get('C'))).toEqual(['54000']);
      expect(answer.messages.at(-1)?.type).toBe('Z');
      expect(await client.queryRows('SELECT 2')).toEqual([['2']]);
      // The same through Parse (named): refused where it stands, and nothing after it up to Sync runs.
      const parseHead = Buffer.alloc(5);
      parseHead[0] = 0x50;
      const parseBody = Buffer.concat([cstring('s1'), cstring('SELECT 1 ' + ' '.repeat(total)), int16(0)]);
      parseHead.writeUInt32BE(4 + parseBody.length, 1);
      client.send(parseHead, parseBody, frontendMessage('S'));
      const parsed = await client.collect();
      expect(errorsIn(parsed.messages).map((e) => e.get('C'))).toEqual(['54000']);
      expect(await client.queryRows('SELECT 3')).toEqual([['3']]);
    } finally {
      client.close();
      await bystander.end();
    }
  });

  for (const [what, make] of TOO_COMPLEX) {
    it(`refuses ${what} with 54001 within the deadline, while another agent is served`, async () => {
      const attacker = await connect('attacker');
      const bystander = await connect('bystander');
      try {
        const started = Date.now();
        const hostile = attacker.query(make()).then(
          () => null,
          (e: pg.DatabaseError) => e,
        );
        // The bystander's reads keep being answered while the statement is judged.
        const latencies: number[] = [];
        while (Date.now() - started < 300) {
          const t = Date.now();
          await bystander.query('SELECT 1');
          latencies.push(Date.now() - t);
        }
        const err = await hostile;
        expect(err).toBeInstanceOf(Error);
        expect(err!.code).toBe('54001');
        expect(err!.message).toMatch(/too complex/i);
        expect(latencies.length).toBeGreaterThan(3);
        // Its session is usable afterwards, and so is the other agent's.
        expect((await attacker.query('SELECT count(*)::int AS n FROM items')).rows[0]).toEqual({ n: 10 });
        expect((await bystander.query('SELECT 2 AS x')).rows[0]).toEqual({ x: 2 });
      } finally {
        await attacker.end();
        await bystander.end();
      }
    });
  }

  it('refuses a nesting deeper than the parser takes, and the session goes on', async () => {
    const c = await connect('attacker');
    try {
      const err = await c.query('SELECT ' + '('.repeat(20_000) + '1' + ')'.repeat(20_000)).catch((e: pg.DatabaseError) => e);
      expect(err).toBeInstanceOf(Error);
      expect(['42601', '54001']).toContain((err as pg.DatabaseError).code);
      expect((await c.query('SELECT 3 AS x')).rows[0]).toEqual({ x: 3 });
    } finally {
      await c.end();
    }
  });

  it('refuses the same statement through the extended protocol, and a second Parse of it is answered from the cache', async () => {
    const c = await connect('attacker');
    try {
      const text = 'SELECT $1::int ' + '/*'.repeat(100_000);
      for (let i = 0; i < 2; i++) {
        const t = Date.now();
        const err = await c.query({ text, values: [1] }).catch((e: pg.DatabaseError) => e);
        expect((err as pg.DatabaseError).code).toBe('54001');
        if (i === 1) expect(Date.now() - t).toBeLessThan(250);
      }
      expect((await c.query('SELECT $1::int AS x', [5])).rows[0]).toEqual({ x: 5 });
    } finally {
      await c.end();
    }
  });
});
