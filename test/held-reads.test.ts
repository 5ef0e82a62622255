/**
 * Reads a rule holds for a human's approval, end to end against real
 * PostgreSQL through the wire protocol: the read waits on its connection,
 * the human sees the planner's row estimate (planned as the agent's read
 * role, never run), and the read runs once approved, once; a denial gives
 * the agent the approver's reason; other reads are never held up.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createAdminToken } from '../src/state/admin-tokens.js';
import { adminRequest } from '../src/cli/admin-client.js';
import { readAuditTail } from '../src/state/file-audit-log.js';
import { createTestDatabase, testServers, withClient } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAgent, TestAirlock } from './support/airlock.js';
import { dropRoles } from './support/drop-roles.js';
import { encodeBind, encodeExecute, encodeFlush, loginClient } from './support/wire.js';
import type { WireClient } from './support/wire.js';
import { encodeParse, encodeSync } from '../src/protocol/frontend.js';

const READER: TestAgent = { name: 'reader', password: 'reader-test-password' };

interface Request {
  id: number;
  agent: string;
  text: string;
  params: (string | null)[];
  reason: string | null;
  impact: Record<string, number>;
  read?: { rows: number | null };
  state: string;
  decidedBy?: string;
}

for (const server of testServers()) {
  describe(`reads held for approval (${server.name})`, () => {
    let db: TestDatabase;
    let stateDir: string;
    let airlock: TestAirlock;
    let token: string;
    const clients: pg.Client[] = [];
    const wires: WireClient[] = [];

    const admin = (method: 'GET' | 'POST', path: string, body?: unknown) =>
      adminRequest({ host: airlock.gateway.adminAddress.host, port: airlock.gateway.adminAddress.port, token }, method, path, body);

    async function agent(): Promise<pg.Client & { notices: string[] }> {
      const c = Object.assign(new pg.Client(airlock.clientConfig(READER.name)), { notices: [] as string[] });
      c.on('notice', (n) => c.notices.push(n.message ?? ''));
      c.on('error', () => undefined);
      await c.connect();
      clients.push(c);
      return c;
    }

    async function waitingRequest(c: { notices: string[] }, before = 0): Promise<Request> {
      for (let i = 0; i < 200; i++) {
        const n = c.notices.slice(before).find((m) => m.includes('waiting for approval #'));
        if (n !== undefined) {
          const id = Number(/#(\d+)/.exec(n)![1]);
          return ((await admin('GET', `/v1/approvals/${id}`)).body as { request: Request }).request;
        }
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no waiting notice arrived (notices: ${JSON.stringify(c.notices)})`);
    }

    beforeAll(async () => {
      db = await createTestDatabase(server, { seed: true });
      stateDir = await mkdtemp(join(tmpdir(), 'airlock-held-reads-'));
      airlock = await startTestAirlock(server, db, {
        stateDir,
        agents: [READER],
        extraYaml: [
          'approvals:',
          '  wait_seconds: 3',
          'rules:',
          '  - { agents: [reader], kinds: [select], tables: [public.executives], decision: approve, note: "personal data: a human looks first" }',
        ],
      });
      token = await createAdminToken(stateDir, 'alice');
    });

    afterAll(async () => {
      for (const c of clients) await c.end().catch(() => undefined);
      for (const w of wires) w.close();
      await airlock?.close();
      await dropRoles(server, [`${db.name}_reader`]).catch(() => undefined);
      await db?.drop();
      await rm(stateDir, { recursive: true, force: true });
    });

    it('waits with notices; the human sees the plan estimate; approved, it returns its rows, once', async () => {
      const total = Number((await withClient(db.url, (c) => c.query<{ n: string }>('SELECT count(*) AS n FROM executives'))).rows[0]!.n);
      const c = await agent();
      const sql = '/* reason: list the board */ SELECT id, full_name FROM executives ORDER BY id';
      const pending = c.query(sql);
      const request = await waitingRequest(c);
      expect(request).toMatchObject({ agent: 'reader', reason: 'list the board', state: 'pending', text: sql });
      // The planner's estimate, from the agent's read role: the table's size, give or take the statistics.
      expect(request.read?.rows).toBeGreaterThan(0);
      expect(Object.keys(request.impact)).toEqual(['public.executives']);
      // Other reads of the same agent are not held up meanwhile.
      const other = await agent();
      expect((await other.query('SELECT count(*)::int AS n FROM companies')).rows[0]).toMatchObject({ n: expect.any(Number) });
      expect((await admin('POST', `/v1/approvals/${request.id}/approve`, {})).status).toBe(200);
      const result = await pending;
      expect(result.rows.length).toBe(total);
      expect(((await admin('GET', `/v1/approvals/${request.id}`)).body as { request: Request }).request).toMatchObject({ state: 'executed', decidedBy: 'alice' });
      // On the record: the read ran by alice's approval.
      await airlock.audit.flush();
      const { records } = await readAuditTail(airlock.stateDir, 200);
      const ran = records.find((e) => e.event === 'statement' && e.text === sql && e.decision === 'allow');
      expect(ran?.detail).toMatchObject({ approval: { request: request.id, by: 'alice' } });
      // Good once: the same text again is a new request.
      const again = c.query(sql);
      const next = await waitingRequest(c, c.notices.length);
      expect(next.id).not.toBe(request.id);
      expect((await admin('POST', `/v1/approvals/${next.id}/deny`, { reason: 'once was enough' })).status).toBe(200);
      await expect(again).rejects.toMatchObject({ code: '42501', message: expect.stringContaining('once was enough') });
    });

    it('binds the parameters of an extended-protocol read: other parameters are a new request', async () => {
      const c = await agent();
      const sql = 'SELECT id, full_name FROM executives WHERE company_id = $1 ORDER BY id';
      const pending = c.query({ text: sql, values: [1] });
      const request = await waitingRequest(c);
      expect(request.params).toEqual(['1']);
      expect(request.read?.rows).not.toBeUndefined();
      expect((await admin('POST', `/v1/approvals/${request.id}/approve`, {})).status).toBe(200);
      const expected = (await withClient(db.url, (d) => d.query<{ id: number }>('SELECT id FROM executives WHERE company_id = 1 ORDER BY id'))).rows.map((r) => r.id);
      expect((await pending).rows.map((r: { id: number }) => r.id)).toEqual(expected);
      // The approval was for company 1: company 2 waits for its own.
      const other = c.query({ text: sql, values: [2] });
      const second = await waitingRequest(c, c.notices.length);
      expect(second.id).not.toBe(request.id);
      expect(second.params).toEqual(['2']);
      await expect(other).rejects.toMatchObject({ code: '57014' });
    });

    it('is refused inside a transaction block, where it could not wait, and the table stays unread', async () => {
      const c = await agent();
      await c.query('BEGIN READ ONLY');
      await expect(c.query('SELECT * FROM executives')).rejects.toMatchObject({ code: '25001' });
      await c.query('ROLLBACK');
      // The profile's other reads are untouched.
      expect((await c.query('SELECT count(*)::int AS n FROM companies')).rows[0]!.n).toBeGreaterThan(0);
    });

    it('raw protocol: nothing of the held read reaches the agent before approval, not with a Flush, and binary results and row limits hold after', async () => {
      const { client } = await loginClient(airlock.clientConfig(READER.name));
      wires.push(client);
      const sql = 'SELECT id, company_id FROM executives ORDER BY id';
      // A Flush after the Execute sends nothing on: the whole batch waits for the Sync, then for the human.
      client.send(encodeParse('', sql), encodeBind('', '', [], [1]), encodeExecute('', 2), encodeFlush());
      const early = await client.collect(1, 700);
      expect(early.timedOut).toBe(true);
      expect(early.messages.map((m) => m.type)).toEqual([]);
      client.send(encodeSync());
      const notice = await client.until('N');
      const id = Number(/#(\d+)/.exec(notice.at(-1)!.body.toString('utf8'))![1]);
      const request = ((await admin('GET', `/v1/approvals/${id}`)).body as { request: Request }).request;
      // Planned with the agent's parameters and text results, whatever result formats the agent asked for.
      expect(request.read?.rows).toBeGreaterThan(0);
      expect((await admin('POST', `/v1/approvals/${id}/approve`, {})).status).toBe(200);
      const answered = await client.collect(1, 8_000);
      const types = answered.messages.map((m) => m.type).filter((t) => t !== 'N');
      // ParseComplete, BindComplete, two rows (the limit), PortalSuspended, ReadyForQuery.
      expect(types).toEqual(['1', '2', 'D', 'D', 's', 'Z']);
      const first = answered.messages.find((m) => m.type === 'D')!;
      // Binary results, as asked: id is an int8 (8 bytes).
      expect(first.body.readInt16BE(0)).toBe(2);
      expect(first.body.readInt32BE(2)).toBe(8);
    });

    it('cannot ride along: a held read with another read in one batch, or with a Flush before it, is refused', async () => {
      const c = await agent();
      // A statement that reads the held table among others in one query string is refused outright (not held).
      await expect(c.query('SELECT 1; SELECT * FROM executives')).rejects.toMatchObject({ code: '42501' });
      // A locking read of it cannot wait on the read path: refused, not held.
      await expect(c.query('SELECT * FROM executives FOR SHARE')).rejects.toMatchObject({ code: '42501' });
    });
  });
}
