/**
 * The MCP server over Streamable HTTP (`mcp.listen`), end to end with the
 * official SDK's client: each agent authenticates with its own Airlock
 * credential, and its SQL runs through the same gate, as that agent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { createAdminToken } from '../src/state/admin-tokens.js';
import { readAuditTail } from '../src/state/file-audit-log.js';
import { adminRequest } from '../src/cli/admin-client.js';
import { createTestDatabase, testServers, withClient } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { dbFingerprint, diffFingerprints } from './support/db-fingerprint.js';

const server = testServers()[0]!;

const AGENTS = [
  { name: 'claude', password: 'claude-mcp-http-password' },
  { name: 'ops', password: 'ops-mcp-http-password', profile: 'read-write' },
];

function text(result: unknown): string {
  return (result as CallToolResult).content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

describe('MCP over Streamable HTTP', () => {
  let db: TestDatabase;
  let airlock: TestAirlock;
  let endpoint: URL;
  const clients: Client[] = [];

  async function connect(authorization: string | null): Promise<Client> {
    const headers: Record<string, string> = authorization === null ? {} : { Authorization: authorization };
    const client = new Client({ name: 'airlock-mcp-http-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(endpoint, { requestInit: { headers } }));
    clients.push(client);
    return client;
  }
  const bearer = (agent: string, password = AGENTS.find((a) => a.name === agent)!.password) => `Bearer ${agent}:${password}`;
  const call = (client: Client, name: string, args: Record<string, unknown> = {}) =>
    client.callTool({ name, arguments: args }) as Promise<CallToolResult>;

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    airlock = await startTestAirlock(server, db, {
      agents: AGENTS,
      // No periodic schema re-read during the run: its advisory lock would show in the fingerprints.
      schemaRefreshMs: 3_600_000,
      extraYaml: [
        'mcp:',
        '  listen: 127.0.0.1:0',
        'rules:',
        '  - { agents: [ops], kinds: [write], tables: [public.tasks], decision: allow }',
        '  - { agents: [ops], kinds: [write], decision: deny }',
      ],
    });
    const { host, port } = airlock.gateway.mcpAddress!;
    endpoint = new URL(`http://${host}:${port}/mcp`);
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await airlock?.close();
    await db?.drop();
  });

  it('lists the tools with their annotations and serves a read, as the agent', async () => {
    const client = await connect(bearer('claude'));
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['approval_status', 'describe_table', 'execute', 'explain', 'list_tables', 'query']);
    expect(tools.find((t) => t.name === 'query')!.annotations?.readOnlyHint).toBe(true);
    expect(tools.find((t) => t.name === 'execute')!.annotations?.destructiveHint).toBe(true);
    const read = await call(client, 'query', { sql: 'SELECT full_name, current_user AS role FROM executives WHERE id = $1', params: [1] });
    expect(read.isError, text(read)).toBeFalsy();
    // current_user is the agent's own read role: the statement went through the gate as claude.
    expect(text(read)).toMatch(new RegExp(`^columns: full_name \\(text\\), role \\(name\\)\\n\\["[^"]+","${db.name}_claude"\\]\\n\\(1 row\\)$`));
    expect(tools.find((t) => t.name === 'query')!.inputSchema).toMatchObject({ type: 'object', required: ['sql'] });
    const typed = await call(client, 'query', {
      sql: "SELECT 1::int AS i, 12345678901234567890.5::numeric AS big, NULL::text AS n, 'NULL'::text AS s, '{\"a\": [1, null]}'::jsonb AS j, '2026-11-26 16:20:00.5+00'::timestamptz AS t, true AS b",
    });
    expect(text(typed)).toBe(
      'columns: i (integer), big (numeric), n (text), s (text), j (jsonb), t (timestamp with time zone), b (boolean)\n' +
        '[1,12345678901234567890.5,null,"NULL",{"a": [1, null]},"2026-11-26 16:20:00.5+00",true]\n(1 row)',
    );
    const list = await call(client, 'list_tables', { schema: 'public' });
    expect(text(list)).toContain('["public","tasks","table",7176]');
  });

  it('refuses a missing or wrong credential with 401, whatever it names', async () => {
    for (const authorization of [
      null,
      bearer('claude', 'wrong-password'),
      bearer('nobody', AGENTS[0]!.password),
      bearer('ops', AGENTS[0]!.password),
      `Bearer ${AGENTS[0]!.password}`,
      `Basic ${Buffer.from(`claude:${AGENTS[0]!.password}`).toString('base64')}`,
    ]) {
      const r = await fetch(endpoint, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...(authorization === null ? {} : { Authorization: authorization }) },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      expect(r.status, String(authorization)).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Bearer realm="airlock"');
      await expect(connect(authorization), String(authorization)).rejects.toThrow(/401|Unauthorized/);
    }
    // Each refusal is on the record, naming the agent the credential claimed to be.
    await new Promise((resolve) => setTimeout(resolve, 50)); // reads are group-committed a few ms apart
    const { records } = await readAuditTail(airlock.stateDir, 50);
    const refused = records.filter((r) => r.event === 'auth-failed' && r.detail?.channel === 'mcp-http');
    expect(refused.map((r) => r.agent)).toEqual([null, null, 'claude', 'claude', 'nobody', 'nobody', 'ops', 'ops', null, null, null, null]);
  });

  it('answers refusals as the wire does, and keeps query to reads for an agent that may write', async () => {
    const wire = new pg.Client(airlock.clientConfig('claude'));
    await wire.connect();
    const onWire = (await wire.query('DELETE FROM tasks WHERE id = 1').catch((e: unknown) => e)) as pg.DatabaseError;
    await wire.end();
    const claude = await connect(bearer('claude'));
    const refused = await call(claude, 'execute', { sql: 'DELETE FROM tasks WHERE id = 1' });
    expect(refused.isError).toBe(true);
    expect(text(refused)).toBe(`ERROR:  ${onWire.message}\nDETAIL:  ${onWire.detail}\nHINT:  ${onWire.hint}\nSQLSTATE: ${onWire.code}`);

    const ops = await connect(bearer('ops'));
    const done = await call(ops, 'execute', { sql: "UPDATE tasks SET status = 'done' WHERE id = $1", params: [5] });
    expect(text(done)).toBe('UPDATE: 1 row.');
    const row = await withClient(db.url, (c) => c.query<{ status: string }>('SELECT status FROM tasks WHERE id = 5'));
    expect(row.rows[0]!.status).toBe('done');
    const before = await dbFingerprint(db.url);
    for (const sql of ['DELETE FROM tasks WHERE id = 2', 'WITH d AS (DELETE FROM tasks WHERE id = 3 RETURNING *) SELECT * FROM d', 'SELECT 1; DELETE FROM tasks WHERE id = 4', 'TRUNCATE tasks']) {
      const result = await call(ops, 'query', { sql });
      expect(result.isError, `${sql}\n${text(result)}`).toBe(true);
    }
    for (const sql of ['DELETE FROM executives WHERE id = 1', 'DROP TABLE tasks', 'DELETE FROM tasks', 'UPDATE tasks SET title = $1 WHERE id > 0']) {
      const result = await call(ops, 'execute', { sql, params: sql.includes('$1') ? ['x'] : [] });
      expect(result.isError, `${sql}\n${text(result)}`).toBe(true);
    }
    expect(diffFingerprints(before, await dbFingerprint(db.url))).toEqual([]);
    // The same gate, tripwire included: three destructive statements refused froze ops.
    const tripped = await call(ops, 'execute', { sql: "UPDATE tasks SET status = 'done' WHERE id = $1", params: [5] });
    expect(text(tripped)).toMatch(/it is frozen by airlock-tripwire .*\(tripwire: had 3 destructive statements refused/);
  });

  it("does not hold one agent's quick read behind its slow one", async () => {
    const [a, b] = [await connect(bearer('claude')), await connect(bearer('claude'))];
    let slowDone = false;
    const slow = call(a, 'query', { sql: 'SELECT pg_sleep(2) AS slept' }).then((r) => {
      slowDone = true;
      return r;
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const quick = await call(b, 'query', { sql: 'SELECT 1 AS one' });
    expect(text(quick)).toContain('[1]');
    expect(slowDone).toBe(false);
    expect((await slow).isError, text(await slow)).toBeFalsy();
  });

  it("refuses a frozen agent's execute with the freeze's reason", async () => {
    const token = await createAdminToken(airlock.stateDir, 'alice');
    const { host, port } = airlock.gateway.adminAddress;
    const admin = (path: string, body: unknown) => adminRequest({ host, port, token }, 'POST', path, body);
    const ops = await connect(bearer('ops'));
    expect((await admin('/v1/freeze', { agent: 'ops', reason: 'incident 42 under investigation' })).status).toBe(201);
    try {
      const refused = await call(ops, 'execute', { sql: "UPDATE tasks SET status = 'doing' WHERE id = 6" });
      expect(refused.isError).toBe(true);
      expect(text(refused)).toMatch(/it is frozen by alice since .*\(incident 42 under investigation\)[\s\S]*SQLSTATE: 25006$/);
    } finally {
      expect((await admin('/v1/unfreeze', { agent: 'ops' })).status).toBe(200);
    }
  });
});

describe('MCP over Streamable HTTP: a write held for approval', () => {
  let db: TestDatabase;
  let airlock: TestAirlock;
  let endpoint: URL;
  let client: Client;

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    airlock = await startTestAirlock(server, db, {
      agents: [{ name: 'gated', password: 'gated-mcp-http-password', profile: 'writes-need-approval' }],
      schemaRefreshMs: 3_600_000,
      extraYaml: ['mcp:', '  listen: 127.0.0.1:0', '  approval_wait_seconds: 1', 'approvals:', '  wait_seconds: 60'],
    });
    const { host, port } = airlock.gateway.mcpAddress!;
    endpoint = new URL(`http://${host}:${port}/mcp`);
    client = new Client({ name: 'airlock-mcp-approval-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(endpoint, { requestInit: { headers: { Authorization: 'Bearer gated:gated-mcp-http-password' } } }));
  }, 120_000);

  afterAll(async () => {
    await client?.close().catch(() => undefined);
    await airlock?.close();
    await db?.drop();
  });

  it('execute answers HELD with the request id; after airlock approve, the identical call runs it once', async () => {
    const token = await createAdminToken(airlock.stateDir, 'alice');
    const { host, port } = airlock.gateway.adminAddress;
    const args = { sql: 'UPDATE tasks SET title = $1 WHERE id = $2', params: ['approved through mcp', 3] };
    const held = (await client.callTool({ name: 'execute', arguments: args })) as CallToolResult;
    expect(held.isError).toBeFalsy();
    const id = Number(/request #(\d+)/.exec(text(held))![1]);
    expect(text(held)).toMatch(/^HELD: this statement waits for a human's approval/);
    const status = async () => text((await client.callTool({ name: 'approval_status', arguments: { request: id } })) as CallToolResult);
    expect(await status()).toMatch(new RegExp(`^Request #${id}: pending\\.`));
    const title = async () => withClient(db.url, async (c) => (await c.query<{ title: string }>('SELECT title FROM tasks WHERE id = 3')).rows[0]!.title);
    expect(await title()).not.toBe('approved through mcp');
    expect((await adminRequest({ host, port, token }, 'POST', `/v1/approvals/${id}/approve`, {})).status).toBe(200);
    expect(await status()).toMatch(new RegExp(`^Request #${id}: approved by alice\\. Call execute again`));
    // Another agent's request, or one that does not exist, is not told.
    const missing = (await client.callTool({ name: 'approval_status', arguments: { request: id + 1000 } })) as CallToolResult;
    expect(missing.isError).toBe(true);
    const ran = (await client.callTool({ name: 'execute', arguments: args })) as CallToolResult;
    expect(ran.isError, text(ran)).toBeFalsy();
    expect(text(ran)).toMatch(/^UPDATE: 1 row\./);
    expect(await title()).toBe('approved through mcp');
    // Once: the same call again is a new request, held again.
    const again = (await client.callTool({ name: 'execute', arguments: args })) as CallToolResult;
    expect(Number(/request #(\d+)/.exec(text(again))![1])).toBeGreaterThan(id);
  });
});
