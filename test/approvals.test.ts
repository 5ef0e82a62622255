/**
 * Human approval, end to end against real PostgreSQL through the wire
 * protocol: a statement that needs approval waits on its connection (with
 * notices naming the request), completes when a human approves it, fails
 * with the human's reason when denied; an approval binds the exact text and
 * parameters, the agent and the dry run's impact, once; a freeze trumps it.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import pg from 'pg';
import { Secret, TOTP } from 'otpauth';
import { createAdminToken } from '../src/state/admin-tokens.js';
import { adminRequest } from '../src/cli/admin-client.js';
import { main } from '../src/cli/main.js';
import { createTestDatabase, testServers, withClient } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAgent, TestAirlock } from './support/airlock.js';
import { dropRoles } from './support/drop-roles.js';

const WAIT_SECONDS = 3;
const GATED: TestAgent = {
  name: 'gated',
  password: 'gated-test-password',
  profile: 'writes-need-approval',
  extra: ['    write_limits: { max_rows: 100000, rows_per_hour: 1000000 }'],
};

for (const server of testServers()) {
  describe(`approvals (${server.name})`, () => {
    let db: TestDatabase;
    let stateDir: string;
    let airlock: TestAirlock;
    let token: string;
    const clients: pg.Client[] = [];
    /** What the approvals webhook received. */
    const hooks: Record<string, unknown>[] = [];
    let hookServer: Server;

    const admin = (method: 'GET' | 'POST', path: string, body?: unknown, t = token) =>
      adminRequest({ host: airlock.gateway.adminAddress.host, port: airlock.gateway.adminAddress.port, token: t }, method, path, body);

    async function agent(): Promise<pg.Client & { notices: string[] }> {
      const c = Object.assign(new pg.Client(airlock.clientConfig(GATED.name)), { notices: [] as string[] });
      c.on('notice', (n) => c.notices.push(n.message ?? ''));
      c.on('error', () => undefined);
      await c.connect();
      clients.push(c);
      return c;
    }

    /** The id of the request the client's statement waits on, once its first notice arrives. */
    async function waitingId(c: { notices: string[] }, before = 0): Promise<number> {
      for (let i = 0; i < 200; i++) {
        const n = c.notices.slice(before).find((m) => m.includes('waiting for approval #'));
        if (n !== undefined) return Number(/#(\d+)/.exec(n)![1]);
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no waiting notice arrived (notices: ${JSON.stringify(c.notices)})`);
    }

    /** An md5 of every demo table's rows in key order. */
    const dataFingerprint = async (): Promise<string[]> => {
      const tables = ['companies', 'executives', 'users', 'projects', 'tasks'];
      const r = await direct<{ t: string; h: string }>(tables.map((t) => `SELECT '${t}' AS t, md5(coalesce(string_agg(x::text, ',' ORDER BY x.id), '')) AS h FROM public.${t} x`).join(' UNION ALL '));
      return r.rows.map((row) => `${row.t} ${row.h}`);
    };

    const direct = <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => withClient(db.url, (c) => c.query<T>(sql, params));

    beforeAll(async () => {
      db = await createTestDatabase(server, { seed: true });
      stateDir = await mkdtemp(join(tmpdir(), 'airlock-approvals-'));
      hookServer = createServer((req, res) => {
        let body = '';
        req.on('data', (d: Buffer) => (body += d.toString('utf8')));
        req.on('end', () => {
          hooks.push(JSON.parse(body) as Record<string, unknown>);
          res.end('ok');
        });
      });
      await new Promise<void>((resolve) => hookServer.listen(0, '127.0.0.1', resolve));
      const hookUrl = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}/hook`;
      airlock = await startTestAirlock(server, db, {
        stateDir,
        agents: [GATED],
        extraYaml: ['approvals:', `  wait_seconds: ${WAIT_SECONDS}`, '  webhook:', `    url: ${hookUrl}`],
      });
      token = await createAdminToken(stateDir, 'alice');
    });

    afterAll(async () => {
      for (const c of clients) await c.end().catch(() => undefined);
      await airlock?.close();
      await dropRoles(server, [`${db.name}_gated`, `${db.name}_gated_w`]).catch(() => undefined);
      await db?.drop();
      await rm(stateDir, { recursive: true, force: true });
      await new Promise((resolve) => hookServer?.close(resolve));
    });

    it('approve while the agent waits: its statement completes with the normal CommandComplete, once, on the record with the approver', async () => {
      const c = await agent();
      const pending = c.query("/* reason: fix a typo */ UPDATE tasks SET title = 'approved title' WHERE id = 1");
      const id = await waitingId(c);
      const listed = await admin('GET', '/v1/approvals');
      const request = (listed.body as { requests: { id: number; reason: string; impact: Record<string, number>; agent: string; sample: { kind: string; image: string }[] }[] }).requests.find((r) => r.id === id);
      expect(request).toMatchObject({ agent: 'gated', reason: 'fix a typo', impact: { 'public.tasks': 1 } });
      // The human sees the row as it is and as it would be.
      expect(request!.sample.map((s) => [s.kind, (JSON.parse(s.image) as { id: number; title: string }).id])).toEqual([['o', 1], ['n', 1]]);
      expect((JSON.parse(request!.sample[1]!.image) as { title: string }).title).toBe('approved title');
      // The humans hear of it through the webhook, with the commands that decide it.
      await expect.poll(() => hooks.find((h) => h.id === id), { timeout: 5_000 }).toMatchObject({
        event: 'approval-request',
        agent: 'gated',
        reason: 'fix a typo',
        impact: { 'public.tasks': 1 },
        approve: `airlock approve ${id}`,
      });
      // Not yet run: the database is as it was.
      expect((await direct<{ title: string }>('SELECT title FROM tasks WHERE id = 1')).rows[0]!.title).not.toBe('approved title');
      const approved = await admin('POST', `/v1/approvals/${id}/approve`, {});
      expect(approved.status).toBe(200);
      const result = await pending;
      expect(result.command).toBe('UPDATE');
      expect(result.rowCount).toBe(1);
      expect((await direct<{ title: string }>('SELECT title FROM tasks WHERE id = 1')).rows[0]!.title).toBe('approved title');
      // Good once: the same request cannot be approved again.
      expect((await admin('POST', `/v1/approvals/${id}/approve`, {})).status).toBe(409);
      expect(((await admin('GET', `/v1/approvals/${id}`)).body as { request: { state: string; decidedBy: string } }).request).toMatchObject({ state: 'executed', decidedBy: 'alice' });
    });

    it('binds parameters too: an extended-protocol statement waits and completes when approved', async () => {
      const c = await agent();
      const pending = c.query({ text: 'UPDATE tasks SET title = $1 WHERE id = $2', values: ['with params', 2] });
      const id = await waitingId(c);
      expect((await admin('POST', `/v1/approvals/${id}/approve`, {})).status).toBe(200);
      expect((await pending).rowCount).toBe(1);
      expect((await direct<{ title: string }>('SELECT title FROM tasks WHERE id = 2')).rows[0]!.title).toBe('with params');
    });

    it("deny: the agent gets the approver's reason (42501) and nothing changes", async () => {
      const c = await agent();
      const before = await dataFingerprint();
      const pending = c.query('DELETE FROM tasks WHERE id = 3').catch((e: pg.DatabaseError) => e);
      const id = await waitingId(c);
      expect((await admin('POST', `/v1/approvals/${id}/deny`, { reason: 'we keep task 3' })).status).toBe(200);
      const err = (await pending) as pg.DatabaseError;
      expect(err.code).toBe('42501');
      expect(err.message).toMatch(new RegExp(`request #${id} was denied by alice: we keep task 3`));
      expect(await dataFingerprint()).toEqual(before);
      expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    });

    it('the dry run changes nothing and counts cascaded rows (deleting a company counts its executives)', async () => {
      const company = (await direct<{ id: string; n: string }>('SELECT company_id AS id, count(*) AS n FROM executives GROUP BY company_id ORDER BY company_id LIMIT 1')).rows[0]!;
      const before = await dataFingerprint();
      const c = await agent();
      const pending = c.query(`DELETE FROM companies WHERE id = ${company.id}`).catch((e: pg.DatabaseError) => e);
      const id = await waitingId(c);
      const request = ((await admin('GET', `/v1/approvals/${id}`)).body as { request: { impact: Record<string, number> } }).request;
      expect(request.impact['public.companies']).toBe(1);
      expect(request.impact['public.executives']).toBe(Number(company.n));
      expect(await dataFingerprint()).toEqual(before);
      await admin('POST', `/v1/approvals/${id}/deny`, { reason: 'no' });
      await pending;
      expect(await dataFingerprint()).toEqual(before);
    });

    it('wait timeout, then approval, then the identical statement runs once; a second re-send is a new request', async () => {
      const c = await agent();
      const sql = "UPDATE tasks SET title = 'after the wait' WHERE id = 4";
      const started = Date.now();
      const err = (await c.query(sql).catch((e: pg.DatabaseError) => e)) as pg.DatabaseError;
      expect(Date.now() - started).toBeGreaterThanOrEqual(WAIT_SECONDS * 1000 - 100);
      const id = Number(/request #(\d+)/.exec(err.message)![1]);
      expect(err.message).toMatch(/still waiting for a human's approval/);
      expect(((await admin('GET', `/v1/approvals/${id}`)).body as { request: { state: string } }).request.state).toBe('pending');
      expect((await admin('POST', `/v1/approvals/${id}/approve`, {})).status).toBe(200);
      const notices = c.notices.length;
      const ran = await c.query(sql);
      expect(ran.rowCount).toBe(1);
      expect(c.notices.slice(notices).some((n) => n.includes('waiting for approval'))).toBe(false);
      // Another text, other parameters or a second execution: a new request.
      const again = c.query(sql).catch((e: pg.DatabaseError) => e);
      const next = await waitingId(c, notices);
      expect(next).toBeGreaterThan(id);
      await admin('POST', `/v1/approvals/${next}/deny`, { reason: 'once is enough' });
      expect(((await again) as pg.DatabaseError).message).toMatch(/once is enough/);
    });

    it('a cancel (Ctrl-C in psql) ends the wait; the request stays pending', async () => {
      const c = await agent();
      const pending = c.query("UPDATE tasks SET title = 'cancelled wait' WHERE id = 8").catch((e: pg.DatabaseError) => e);
      const id = await waitingId(c);
      const canceller = new pg.Client(airlock.clientConfig(GATED.name));
      // node-postgres cancels through a fresh connection carrying the session's key, as psql does.
      await (canceller as unknown as { cancel: (client: pg.Client, query: unknown) => void }).cancel(c, (c as unknown as { activeQuery: unknown }).activeQuery);
      const err = (await pending) as pg.DatabaseError;
      expect(err.code).toBe('57014');
      expect(err.message).toMatch(new RegExp(`wait for approval of request #${id}, which stays pending`));
      expect(((await admin('GET', `/v1/approvals/${id}`)).body as { request: { state: string } }).request.state).toBe('pending');
      await admin('POST', `/v1/approvals/${id}/deny`, { reason: 'cleanup' });
    });

    it('the impact grew between approval and execution: rolled back, and said so', async () => {
      const c = await agent();
      const project = (await direct<{ id: string }>('SELECT project_id AS id FROM tasks GROUP BY project_id ORDER BY project_id LIMIT 1')).rows[0]!.id;
      const sql = `UPDATE tasks SET status = 'done' WHERE project_id = ${project}`;
      const err = (await c.query(sql).catch((e: pg.DatabaseError) => e)) as pg.DatabaseError;
      const id = Number(/request #(\d+)/.exec(err.message)![1]);
      await admin('POST', `/v1/approvals/${id}/approve`, {});
      // Meanwhile a row more matches.
      await direct("INSERT INTO tasks (project_id, title, status, priority) VALUES ($1, 'new one', 'todo', 1)", [project]);
      const before = await dataFingerprint();
      const refused = (await c.query(sql).catch((e: pg.DatabaseError) => e)) as pg.DatabaseError;
      expect(refused.code).toBe('42501');
      expect(refused.message).toMatch(new RegExp(`approved in request #${id} changed \\d+ rows of public.tasks, more than`));
      expect(await dataFingerprint()).toEqual(before);
    });

    it('an approval binds the rows, not only their number: the same count of other rows is rolled back', async () => {
      const c = await agent();
      const [a, b] = [11, 12];
      await direct("UPDATE tasks SET title = CASE id WHEN $1 THEN 'retarget me' ELSE 'other' END WHERE id IN ($1, $2)", [a, b]);
      const sql = "UPDATE tasks SET status = 'done' WHERE title = 'retarget me'";
      const err = (await c.query(sql).catch((e: pg.DatabaseError) => e)) as pg.DatabaseError;
      const id = Number(/request #(\d+)/.exec(err.message)![1]);
      await admin('POST', `/v1/approvals/${id}/approve`, {});
      // Meanwhile the statement's WHERE comes to select another row: one row still, but not the one approved.
      await direct("UPDATE tasks SET title = CASE id WHEN $1 THEN 'other' ELSE 'retarget me' END WHERE id IN ($1, $2)", [a, b]);
      const before = await dataFingerprint();
      const refused = (await c.query(sql).catch((e: pg.DatabaseError) => e)) as pg.DatabaseError;
      expect(refused.code).toBe('42501');
      expect(refused.message).toMatch(new RegExp(`approved in request #${id} changed a row of public.tasks that its dry run did not`));
      expect(await dataFingerprint()).toEqual(before);
    });

    it('tells the agent nothing of what its dry run read: no counts in the notice, no database error when it fails', async () => {
      const c = await agent();
      const err = (await c.query('UPDATE tasks SET priority = 1 / (SELECT count(*) - count(*) FROM companies)::int WHERE id = 14').catch((e: pg.DatabaseError) => e)) as pg.DatabaseError;
      expect(err.code).toBe('42501');
      expect(err.message).toMatch(/failed when it was tried for approval/);
      expect(err.message).not.toMatch(/division by zero/);
      expect(c.notices.join('\n')).not.toMatch(/row/);
    });

    it('the agent cannot approve its own request: not with its password over HTTP, not with any SQL', async () => {
      const c = await agent();
      const pending = c.query("UPDATE tasks SET title = 'self-approved' WHERE id = 5").catch((e: pg.DatabaseError) => e);
      const id = await waitingId(c);
      const { host, port } = airlock.gateway.adminAddress;
      for (const authorization of [undefined, `Bearer ${GATED.password}`, `Bearer gated:${GATED.password}`]) {
        const r = await fetch(`http://${host}:${port}/v1/approvals/${id}/approve`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
          body: '{}',
        });
        expect(r.status).toBe(401);
      }
      // From another session of its own: SQL reaches only the database, which knows nothing of requests.
      const other = await agent();
      await other.query("SELECT pg_catalog.pg_notify('airlock', 'approve " + String(id) + "')").catch(() => undefined);
      expect(((await admin('GET', `/v1/approvals/${id}`)).body as { request: { state: string } }).request.state).toBe('pending');
      await admin('POST', `/v1/approvals/${id}/deny`, { reason: 'not by itself' });
      await pending;
    });

    it("a freeze trumps approval: a frozen agent's request cannot be approved, and a freeze during the wait ends it", async () => {
      const c = await agent();
      const pending = c.query("UPDATE tasks SET title = 'frozen' WHERE id = 6").catch((e: pg.DatabaseError) => e);
      const id = await waitingId(c);
      expect((await admin('POST', '/v1/freeze', { agent: 'gated', reason: 'release day' })).status).toBe(201);
      try {
        const err = (await pending) as pg.DatabaseError;
        expect(err.message).toMatch(/frozen/);
        expect(err.message).toMatch(/release day/);
        const r = await admin('POST', `/v1/approvals/${id}/approve`, {});
        expect(r.status).toBe(409);
        expect((r.body as { error: string }).error).toMatch(/frozen/);
      } finally {
        await admin('POST', '/v1/unfreeze', { agent: 'gated' });
      }
      expect((await direct<{ title: string }>('SELECT title FROM tasks WHERE id = 6')).rows[0]!.title).not.toBe('frozen');
    });

    it('psql: the statement waits with a NOTICE naming the request, and prints UPDATE 1 once approved', async () => {
      const { host, port, user, password, database } = airlock.clientConfig(GATED.name);
      const url = `postgres://${user}:${password}@${host}:${port}/${database}`;
      const psql = spawn('psql', [url, '-X', '-v', 'ON_ERROR_STOP=1', '-c', "UPDATE tasks SET title = 'through psql' WHERE id = 10"], { env: { PATH: process.env.PATH ?? '', PGCONNECT_TIMEOUT: '10' } });
      let stdout = '';
      let stderr = '';
      psql.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
      psql.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      const exited = new Promise<number | null>((resolve) => psql.once('close', resolve));
      await expect.poll(() => /NOTICE: +airlock: waiting for approval #(\d+)/.exec(stderr), { timeout: 10_000, interval: 25 }).not.toBeNull();
      const id = /waiting for approval #(\d+)/.exec(stderr)![1];
      expect((await admin('POST', `/v1/approvals/${id}/approve`, {})).status).toBe(200);
      expect(await exited).toBe(0);
      expect(stdout.trim()).toBe('UPDATE 1');
      expect((await direct<{ title: string }>('SELECT title FROM tasks WHERE id = 10')).rows[0]!.title).toBe('through psql');
    });

    it('the CLI lists pending requests one a line beginning #ID, approves and denies', async () => {
      const c = await agent();
      const pending = c.query("UPDATE tasks SET title = 'via the cli' WHERE id = 7");
      const id = await waitingId(c);
      const out: string[] = [];
      const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
      const { host, port } = airlock.gateway.adminAddress;
      vi.stubEnv('AIRLOCK_ADMIN_TOKEN', token);
      try {
        expect(await main(['approvals', '--admin', `${host}:${port}`])).toBe(0);
        expect(out.join('\n')).toMatch(new RegExp(`^#${id}  gated  \\d+s ago  impact: public.tasks 1`, 'm'));
        expect(await main(['approve', String(id), '--admin', `${host}:${port}`])).toBe(0);
        expect(out.at(-1)).toMatch(new RegExp(`Request #${id} is approved, once`));
      } finally {
        log.mockRestore();
        vi.unstubAllEnvs();
      }
      expect((await pending).rowCount).toBe(1);
    });
  });
}

describe('approvals expire (approvals.expire_seconds)', () => {
  const server = testServers()[0]!;
  let db: TestDatabase;
  let airlock: TestAirlock;
  let offset = 0;

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    airlock = await startTestAirlock(server, db, { agents: [GATED], now: () => new Date(Date.now() + offset), extraYaml: ['approvals:', '  wait_seconds: 30', '  expire_seconds: 60'] });
  });

  afterAll(async () => {
    await airlock?.close();
    await dropRoles(server, [`${db.name}_gated`, `${db.name}_gated_w`]).catch(() => undefined);
    await db?.drop();
  });

  it('a request nobody decides expires: the waiting statement fails saying so, and it can no longer be approved', async () => {
    const token = await createAdminToken(airlock.stateDir, 'alice');
    const { host, port } = airlock.gateway.adminAddress;
    const c = new pg.Client(airlock.clientConfig(GATED.name));
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    await c.connect();
    try {
      const pending = c.query("UPDATE tasks SET title = 'too late' WHERE id = 13").catch((e: pg.DatabaseError) => e);
      await expect.poll(() => notices.find((n) => n.includes('waiting for approval #')), { timeout: 10_000, interval: 25 }).toBeDefined();
      const id = Number(/#(\d+)/.exec(notices.find((n) => n.includes('waiting for approval #'))!)![1]);
      offset = 61_000; // past approvals.expire_seconds
      const err = (await pending) as pg.DatabaseError;
      expect(err.code).toBe('42501');
      expect(err.message).toMatch(new RegExp(`request #${id} expired at .* without a decision`));
      const late = await adminRequest({ host, port, token }, 'POST', `/v1/approvals/${id}/approve`, {});
      expect(late.status).toBe(409);
      expect(late.body.error).toMatch(/is expired/);
    } finally {
      offset = 0;
      await c.end();
    }
  });
});

describe('approvals with a second factor (admin.totp_secret)', () => {
  const server = testServers()[0]!;
  const SECRET = new Secret({ size: 20 }).base32;
  let db: TestDatabase;
  let stateDir: string;
  let airlock: TestAirlock;

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    stateDir = await mkdtemp(join(tmpdir(), 'airlock-totp-'));
    airlock = await startTestAirlock(server, db, {
      stateDir,
      agents: [GATED],
      extraYaml: ['approvals:', '  wait_seconds: 30'],
      adminYaml: [`  totp_secret: ${SECRET}`],
    });
  });

  afterAll(async () => {
    await airlock?.close();
    await dropRoles(server, [`${db.name}_gated`, `${db.name}_gated_w`]).catch(() => undefined);
    await db?.drop();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('needs a current TOTP code besides the admin token to approve or unfreeze; the token alone changes nothing', async () => {
    const token = await createAdminToken(stateDir, 'alice');
    const { host, port } = airlock.gateway.adminAddress;
    const c = new pg.Client(airlock.clientConfig(GATED.name));
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    await c.connect();
    try {
      const pending = c.query("UPDATE tasks SET title = 'two factors' WHERE id = 9");
      await expect.poll(() => notices.find((n) => n.includes('waiting for approval #')), { timeout: 10_000, interval: 25 }).toBeDefined();
      const id = Number(/#(\d+)/.exec(notices.find((n) => n.includes('waiting for approval #'))!)![1]);
      const tokenOnly = await adminRequest({ host, port, token }, 'POST', `/v1/approvals/${id}/approve`, {});
      expect(tokenOnly.status).toBe(401);
      expect(tokenOnly.body.error).toMatch(/needs a current TOTP code/);
      const wrong = await adminRequest({ host, port, token, totp: '000000' === currentCode(SECRET) ? '111111' : '000000' }, 'POST', `/v1/approvals/${id}/approve`, {});
      expect(wrong.status).toBe(401);
      expect(((await adminRequest({ host, port, token }, 'GET', `/v1/approvals/${id}`)).body as { request: { state: string } }).request.state).toBe('pending');
      const both = await adminRequest({ host, port, token, totp: currentCode(SECRET) }, 'POST', `/v1/approvals/${id}/approve`, {});
      expect(both.status).toBe(200);
      expect((await pending).rowCount).toBe(1);
      // Unfreezing too: a freeze made with the token alone is lifted only with a code.
      expect((await adminRequest({ host, port, token }, 'POST', '/v1/freeze', { agent: 'gated', reason: 'totp test' })).status).toBe(201);
      expect((await adminRequest({ host, port, token }, 'POST', '/v1/unfreeze', { agent: 'gated' })).status).toBe(401);
      await new Promise((r) => setTimeout(r, 30_000 - (Date.now() % 30_000) + 50)); // the next code: each is good once
      expect((await adminRequest({ host, port, token, totp: currentCode(SECRET) }, 'POST', '/v1/unfreeze', { agent: 'gated' })).status).toBe(200);
    } finally {
      await c.end();
    }
  }, 60_000);
});

function currentCode(secret: string): string {
  return new TOTP({ secret: Secret.fromBase32(secret) }).generate();
}
