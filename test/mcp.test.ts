/**
 * `airlock mcp` on stdio, end to end: the built command started the way an
 * MCP client config starts it (a child process, a minimal environment, the
 * agent's URL in AIRLOCK_URL), driven by the official SDK's client against a
 * real Airlock in front of a real PostgreSQL. Every write attempt is judged
 * by the database's state afterwards, not by the wording of an answer.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, utimes, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { createAdminToken } from '../src/state/admin-tokens.js';
import { adminRequest } from '../src/cli/admin-client.js';
import { buildCli } from './support/cli.js';
import type { BuiltCli } from './support/cli.js';
import { createTestDatabase, testServers, withClient } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { dbFingerprint, diffFingerprints } from './support/db-fingerprint.js';
import { GateClient } from '../src/mcp/gate-client.js';
import type { Classification, StatementFacts } from '../src/sql/facts.js';

const server = testServers()[0]!;

const AGENTS = [
  { name: 'claude', password: 'claude-mcp-test-password' },
  { name: 'ops', password: 'ops-mcp-test-password', profile: 'read-write' },
];
// ops may write tasks, and nothing else.
const RULES = [
  'rules:',
  '  - { agents: [ops], kinds: [write], tables: [public.tasks], decision: allow }',
  '  - { agents: [ops], kinds: [write], decision: deny, note: "ops writes tasks only" }',
];

/** The text of a tool's answer. */
function text(result: unknown): string {
  const r = result as CallToolResult;
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

describe('airlock mcp on stdio', () => {
  let cli: BuiltCli;
  let db: TestDatabase;
  let airlock: TestAirlock;
  let home: string;
  const clients: Client[] = [];

  /** Starts `airlock mcp` as an MCP client config does: only PATH, HOME and AIRLOCK_URL in its environment. */
  async function connect(agent: string, options: { cwd?: string; home?: string; url?: string; urlArgument?: boolean } = {}): Promise<Client> {
    const url = options.url ?? airlock.url(agent);
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: options.urlArgument === true ? [cli.main, 'mcp', '--url', url] : [cli.main, 'mcp'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: options.home ?? home, ...(options.urlArgument === true ? {} : { AIRLOCK_URL: url }) },
      cwd: options.cwd ?? home,
      stderr: 'pipe',
    });
    const client = new Client({ name: 'airlock-mcp-test', version: '1.0.0' });
    await client.connect(transport);
    clients.push(client);
    return client;
  }

  const call = (client: Client, name: string, args: Record<string, unknown> = {}) =>
    client.callTool({ name, arguments: args }) as Promise<CallToolResult>;

  beforeAll(async () => {
    cli = await buildCli();
    home = await mkdtemp(join(tmpdir(), 'airlock-mcp-home-'));
    db = await createTestDatabase(server, { seed: true });
    await withClient(db.url, async (c) => {
      await c.query(`CREATE TABLE public.mcp_types (
        id int PRIMARY KEY, label text, amount numeric, big bigint, ratio double precision, flag boolean,
        doc jsonb, at timestamptz, day date, nothing text)`);
      await c.query(`INSERT INTO public.mcp_types VALUES
        (1, 'plain', 12345678901234567890.123456789, 9223372036854775807, 0.1, true,
         '{"a": [1, 2.50, null], "b": "x\\"y"}', '2026-11-26 16:20:00.123456+00', '2026-02-28', NULL),
        (2, 'NULL', -0.5, -1, 'NaN', false, 'null', '1999-12-31 23:59:59+00', '0001-01-01', NULL),
        (3, E'line one\\nline two "quoted" \\u00e9', 0, 0, '-Infinity', NULL, '[]', NULL, NULL, 'x')`);
      await c.query('CREATE TABLE public.mcp_big (id int PRIMARY KEY)');
      await c.query('INSERT INTO public.mcp_big SELECT g FROM generate_series(1, 100000) g');
      await c.query('ANALYZE public.mcp_types, public.mcp_big');
    });
    // No periodic schema re-read during the run: its advisory lock would show in the fingerprints.
    airlock = await startTestAirlock(server, db, { agents: AGENTS, extraYaml: RULES, schemaRefreshMs: 3_600_000 });
  }, 180_000);

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await airlock?.close();
    await db?.drop();
    await cli?.remove();
    if (home !== undefined) await rm(home, { recursive: true, force: true });
  });

  it('lists its tools with input schemas and annotations', async () => {
    const client = await connect('claude');
    const { tools } = await client.listTools();
    const byName = new Map(tools.map((t) => [t.name, t]));
    expect([...byName.keys()].sort()).toEqual(['approval_status', 'describe_table', 'execute', 'explain', 'list_tables', 'query']);
    for (const name of ['list_tables', 'describe_table', 'query', 'explain', 'approval_status']) {
      expect(byName.get(name)!.annotations?.readOnlyHint, name).toBe(true);
    }
    expect(byName.get('execute')!.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: true });
    expect(byName.get('query')!.inputSchema).toMatchObject({ type: 'object', required: ['sql'] });
    expect(Object.keys(byName.get('query')!.inputSchema.properties ?? {}).sort()).toEqual(['max_rows', 'params', 'sql']);
    for (const t of tools) expect(t.description?.length ?? 0, t.name).toBeGreaterThan(40);
  });

  it('ends by itself, exit code 0, when its client closes stdin', async () => {
    const child = spawn(process.execPath, [cli.main, 'mcp'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, AIRLOCK_URL: airlock.url('claude') },
      cwd: home,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.stdin.end(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } })}\n`);
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    expect(await exited).toBe(0);
    clearTimeout(timer);
    expect(JSON.parse(out.split('\n')[0]!)).toMatchObject({ id: 1, result: { serverInfo: { name: 'airlock' } } });
  });

  it('takes the URL from --url as well, and refuses a config file', async () => {
    const client = await connect('claude', { urlArgument: true });
    expect(text(await call(client, 'query', { sql: 'SELECT count(*) AS n FROM executives' }))).toContain('[1206]');
    const withConfig = spawn(process.execPath, [cli.main, 'mcp', '--config', 'airlock.yaml'], { env: { PATH: process.env.PATH ?? '', HOME: home, AIRLOCK_URL: airlock.url('claude') }, cwd: home });
    let stderr = '';
    withConfig.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    expect(await new Promise((resolve) => withConfig.on('exit', resolve))).toBe(2);
    expect(stderr).toContain('mcp takes no --config or --state-dir');
  });

  it('lists and describes tables through the gate', async () => {
    const client = await connect('claude');
    const list = await call(client, 'list_tables');
    expect(list.isError).toBeFalsy();
    expect(text(list)).toContain('["public","executives","table",1206]');
    const described = text(await call(client, 'describe_table', { table: 'executives' }));
    expect(described).toMatch(/^table public\.executives: about 1206 rows/);
    expect(described).toContain('  id bigint NOT NULL');
    expect(described).toContain('executives_pkey (primary key): PRIMARY KEY (id)');
    expect(described).toMatch(/FOREIGN KEY \(company_id\) REFERENCES companies\(id\)/);
    expect(described).toContain('CREATE INDEX executives_company_id_idx ON executives USING btree (company_id)');
    expect(described).not.toContain('(n)');
    const missing = await call(client, 'describe_table', { table: 'public.nope' });
    expect(missing.isError).toBe(true);
    expect(text(missing)).toContain('SQLSTATE: 42P01');
  });

  it('renders text, numbers, NULLs, JSON and timestamps as PostgreSQL sent them', async () => {
    const client = await connect('claude');
    const result = await call(client, 'query', { sql: 'SELECT * FROM mcp_types ORDER BY id' });
    expect(result.isError).toBeFalsy();
    const lines = text(result).split('\n');
    expect(lines[0]).toBe(
      'columns: id (integer), label (text), amount (numeric), big (bigint), ratio (double precision), flag (boolean), doc (jsonb), at (timestamp with time zone), day (date), nothing (text)',
    );
    const rows = lines.slice(1, 4).map((l) => JSON.parse(l) as unknown[]);
    // Exact digits (no float rounding), a real JSON value, the session's own timestamp text.
    expect(lines[1]).toBe(
      '[1,"plain",12345678901234567890.123456789,9223372036854775807,0.1,true,{"a": [1, 2.50, null], "b": "x\\"y"},"2026-11-26 16:20:00.123456+00","2026-02-28",null]',
    );
    // The string "NULL" is a string; SQL NULL is null; NaN and infinities stay PostgreSQL's words.
    expect(rows[1]).toEqual([2, 'NULL', -0.5, -1, 'NaN', false, null, '1999-12-31 23:59:59+00', '0001-01-01', null]);
    expect(rows[2]).toEqual([3, 'line one\nline two "quoted" é', 0, 0, '-Infinity', null, [], null, null, 'x']);
    expect(lines[4]).toBe('(3 rows)');
    // Parameters are bound by the server.
    const bound = await call(client, 'query', { sql: 'SELECT label FROM mcp_types WHERE id = $1 OR label = $2 ORDER BY id', params: [2, "'; DROP TABLE mcp_types; --"] });
    expect(text(bound)).toBe('columns: label (text)\n["NULL"]\n(1 row)');
  });

  it('caps a 100,000-row result, fetching only what it shows', async () => {
    const client = await connect('claude');
    const capped = text(await call(client, 'query', { sql: 'SELECT id FROM mcp_big ORDER BY id' }));
    const lines = capped.split('\n');
    expect(lines).toHaveLength(102);
    expect(lines[100]).toBe('[100]');
    expect(lines[101]).toMatch(/^TRUNCATED: showing the first 100 rows only \(the result has more than 100 rows; the rest were not fetched\)/);
    // Rows past the first 101 would fail (division by zero): the server never computes them, so the
    // answer comes back; a client that read the whole result would get the error instead.
    const lazy = await call(client, 'query', { sql: 'SELECT id, CASE WHEN id > 1001 THEN 1 / (id - id) ELSE id END AS v FROM mcp_big ORDER BY id', max_rows: 1000 });
    expect(lazy.isError, text(lazy)).toBeFalsy();
    expect(text(lazy).split('\n')).toHaveLength(1002);
    const trap = await call(client, 'query', { sql: 'SELECT id, CASE WHEN id > 1000 THEN 1 / (id - id) ELSE id END AS v FROM mcp_big WHERE id > 999 ORDER BY id' });
    expect(trap.isError).toBe(true);
    expect(text(trap)).toContain('SQLSTATE: 22012');
  });

  it('answers a refusal with the same words, rule, hint and SQLSTATE as the wire', async () => {
    const wire = new pg.Client(airlock.clientConfig('claude'));
    await wire.connect();
    const onWire = (await wire.query('DELETE FROM tasks WHERE id = 1').catch((e: unknown) => e)) as pg.DatabaseError;
    await wire.end();
    expect(onWire.code).toBe('42501');
    const client = await connect('claude');
    const refused = await call(client, 'execute', { sql: 'DELETE FROM tasks WHERE id = 1' });
    expect(refused.isError).toBe(true);
    expect(text(refused)).toBe(`ERROR:  ${onWire.message}\nDETAIL:  ${onWire.detail}\nHINT:  ${onWire.hint}\nSQLSTATE: 42501`);
    expect(text(refused)).toContain('Rule: write.');
  });

  it('runs an allowed write through execute, and refuses a write through query even for an agent that may write', async () => {
    const client = await connect('ops');
    const done = await call(client, 'execute', { sql: "UPDATE tasks SET status = 'done' WHERE id = $1 RETURNING id, status", params: [7] });
    expect(done.isError, text(done)).toBeFalsy();
    expect(text(done)).toBe('UPDATE: 1 row.\ncolumns: id (bigint), status (text)\n[7,"done"]\n(1 row)');
    const refused = await call(client, 'query', { sql: 'DELETE FROM tasks WHERE id = 8' });
    expect(refused.isError).toBe(true);
    expect(text(refused)).toContain('the query tool runs reads only, and this statement is DELETE (write)');
    expect(text(refused)).toContain('SQLSTATE: 25006');
    const still = await withClient(db.url, (c) => c.query('SELECT count(*)::int AS n FROM tasks WHERE id = 8'));
    expect(still.rows[0].n).toBe(1);
    // BEGIN through execute opens nothing that outlives the call.
    const begin = await call(client, 'execute', { sql: 'BEGIN' });
    expect(begin.isError).toBe(true);
    expect(text(begin)).toContain('the transaction it opened was rolled back');
    const after = await call(client, 'query', { sql: "SELECT current_setting('transaction_read_only') AS ro" });
    expect(text(after)).toContain('["on"]');
  });

  it('explains without running, and refuses EXPLAIN ANALYZE of a write', async () => {
    const client = await connect('ops');
    const plan = await call(client, 'explain', { sql: 'DELETE FROM tasks WHERE id = 9' });
    expect(plan.isError, text(plan)).toBeFalsy();
    expect(text(plan)).toMatch(/Delete on tasks/);
    const analyzed = await call(client, 'explain', { sql: 'DELETE FROM tasks WHERE id = 9', analyze: true });
    expect(analyzed.isError).toBe(true);
    expect(text(analyzed)).toContain('SQLSTATE: 25006');
    const bound = await call(client, 'explain', { sql: 'SELECT * FROM tasks WHERE id = $1', params: [9] });
    expect(text(bound), text(bound)).toMatch(/Index Scan using tasks_pkey on tasks/);
    const read = await call(client, 'explain', { sql: 'SELECT count(*) FROM tasks', analyze: true });
    expect(text(read)).toMatch(/actual time=/);
    const still = await withClient(db.url, (c) => c.query('SELECT count(*)::int AS n FROM tasks WHERE id = 9'));
    expect(still.rows[0].n).toBe(1);
  });

  describe('adversarial statements change nothing', () => {
    // Taken from the wire suites (test/adversarial.test.ts, test/write-path-adversarial.test.ts).
    const ATTACKS = [
      'DELETE FROM executives',
      'DELETE FROM tasks WHERE id = 1',
      "UPDATE tasks SET title = 'pwned' WHERE id = 2",
      "INSERT INTO tasks (project_id, title, status, priority) VALUES (1, 'x', 'open', 'low')",
      'MERGE INTO executives e USING (SELECT 1 AS id) s ON e.id = s.id WHEN MATCHED THEN DELETE',
      'TRUNCATE tasks',
      'TRUNCATE companies CASCADE',
      'DROP TABLE executives',
      'DROP SCHEMA public CASCADE',
      'ALTER TABLE executives ADD COLUMN pwned int',
      'CREATE TABLE loot (x int)',
      'CREATE TABLE loot AS SELECT * FROM api_keys',
      'SELECT * INTO loot FROM api_keys',
      'CREATE INDEX loot_idx ON executives (title)',
      "CREATE FUNCTION evil() RETURNS void LANGUAGE sql AS 'DELETE FROM executives'",
      'GRANT DELETE ON executives TO PUBLIC',
      "COMMENT ON TABLE executives IS 'pwned'",
      'ALTER ROLE current_user SUPERUSER',
      "UPDATE pg_settings SET setting = 'off' WHERE name = 'default_transaction_read_only'",
      'ALTER SEQUENCE invoice_number_seq RESTART',
      'VACUUM FULL executives',
      '/* SELECT */ DELETE FROM executives',
      '-- just a SELECT\nDELETE FROM tasks WHERE id = 3',
      'SELECT 1; DELETE FROM tasks WHERE id = 4',
      'SELECT $$DROP TABLE executives$$; DROP TABLE executives',
      "SELECT E'\\''; DROP TABLE executives; --'",
      'WITH gone AS (DELETE FROM tasks WHERE id = 5 RETURNING *) SELECT count(*) FROM gone',
      'EXPLAIN ANALYZE DELETE FROM tasks WHERE id = 6',
      "SELECT set_config('transaction_read_only', 'off', true)",
      "SELECT nextval('invoice_number_seq')",
      'SELECT * FROM tasks WHERE id = 10 FOR UPDATE',
      'SET TRANSACTION READ WRITE',
      'COMMIT',
      'PREPARE sneaky AS DELETE FROM tasks WHERE id = 11',
      'SELECT pg_advisory_lock(4242)',
      "COPY (SELECT 1) TO PROGRAM 'touch /tmp/airlock-mcp-pwned'",
      'DELETE FROM tasks WHERE id > 0',
      'DELETE FROM tasks',
    ];

    it.each([
      ['query', 'claude'],
      ['query', 'ops'],
      ['execute', 'claude'],
      ['explain', 'ops'],
    ])('through %s as %s', async (tool, agent) => {
      const client = await connect(agent);
      const before = await dbFingerprint(db.url);
      const answers: string[] = [];
      for (const sql of ATTACKS) {
        const args: Record<string, unknown> = tool === 'explain' ? { sql, analyze: true } : { sql };
        const result = await call(client, tool, args);
        answers.push(`${result.isError === true ? 'refused' : 'ran'}: ${sql}`);
        // Through query and explain, nothing that is not a read runs; claude may write nothing at all
        // (a COMMIT outside a transaction only warns).
        if (!(tool === 'execute' && sql === 'COMMIT')) expect(result.isError, `${tool} as ${agent}: ${sql}\n${text(result)}`).toBe(true);
      }
      expect(diffFingerprints(before, await dbFingerprint(db.url)), answers.join('\n')).toEqual([]);
      await expect(stat('/tmp/airlock-mcp-pwned')).rejects.toThrow();
    }, 120_000);

    it('through execute as an agent that may write tasks: only what its policy allows, within its limits', async () => {
      const client = await connect('ops');
      const before = await dbFingerprint(db.url);
      const answers: string[] = [];
      // Left out: what ops may really do (a write of one task, by id).
      const mayRun = (s: string) => (/\btasks\b.* WHERE id = \d+/.test(s) && !s.includes('FOR UPDATE')) || s.startsWith('INSERT');
      for (const sql of ATTACKS.filter((s) => !mayRun(s))) {
        const result = await call(client, 'execute', { sql });
        answers.push(`${result.isError === true ? 'refused' : 'ran'}: ${sql}`);
      }
      expect(answers.filter((a) => a.startsWith('ran')), answers.join('\n')).toEqual(['ran: COMMIT']);
      expect(diffFingerprints(before, await dbFingerprint(db.url))).toEqual([]);
    }, 120_000);
  });

  it('keeps query to reads by the READ ONLY transaction alone, should the classifier ever call a write a read', async () => {
    // Defence in depth: a classifier that reads everything as a plain read, so that only the
    // READ ONLY transaction through the gate (and the gate itself) stands between ops and its writes.
    const fooled = async (): Promise<Classification> => ({ ok: true, statements: [{ kind: 'read', command: 'SELECT' } as StatementFacts], fingerprint: '' });
    const gate = new GateClient({ connection: airlock.url('ops'), classify: fooled });
    const before = await dbFingerprint(db.url);
    try {
      for (const sql of [
        'DELETE FROM tasks WHERE id = 13',
        "UPDATE tasks SET status = 'done' WHERE id = 14",
        "INSERT INTO tasks (project_id, title, status, priority) VALUES (1, 'x', 'todo', 1)",
        'WITH d AS (DELETE FROM tasks WHERE id = 15 RETURNING *) SELECT count(*) FROM d',
        'SET TRANSACTION READ WRITE',
        "SELECT set_config('transaction_read_only', 'off', true)",
        'CREATE TABLE loot (x int)',
      ]) {
        const error = await gate.read(sql, [], 10).then(() => null, (e: unknown) => e as { code?: string });
        expect(error, sql).not.toBeNull();
      }
      // The connection is still usable, and its reads still read-only.
      const after = await gate.read("SELECT current_setting('transaction_read_only') AS ro", [], 10);
      expect(after.rows).toEqual([['on']]);
    } finally {
      await gate.close();
    }
    expect(diffFingerprints(before, await dbFingerprint(db.url))).toEqual([]);
  });

  it('refuses through query what the classifier could not judge, as the gate would', async () => {
    const unjudged = async (): Promise<Classification> => ({ ok: false, unjudged: 'too-complex', error: 'The statement took longer than 2000 ms to parse.' });
    const gate = new GateClient({ connection: airlock.url('ops'), classify: unjudged });
    try {
      const error = await gate.read('SELECT 1', [], 10).then(() => null, (e: unknown) => e as { code?: string; detail?: string });
      expect(error).toMatchObject({ code: '54001', detail: 'Rule: statement-too-complex. The statement was not sent to the database.' });
    } finally {
      await gate.close();
    }
  });

  it("refuses a frozen agent's execute with the freeze's reason", async () => {
    const token = await createAdminToken(airlock.stateDir, 'alice');
    const { host, port } = airlock.gateway.adminAddress;
    const admin = (path: string, body: unknown) => adminRequest({ host, port, token }, 'POST', path, body);
    const client = await connect('ops');
    expect((await admin('/v1/freeze', { agent: 'ops', reason: 'release freeze for the MCP test' })).status).toBe(201);
    try {
      const refused = await call(client, 'execute', { sql: "UPDATE tasks SET status = 'doing' WHERE id = 12" });
      expect(refused.isError).toBe(true);
      expect(text(refused)).toMatch(/airlock: agent "ops" may not .* it is frozen by alice since .*\(release freeze for the MCP test\)/);
      expect(text(refused)).toContain('SQLSTATE: 25006');
      // Reads go on.
      expect((await call(client, 'query', { sql: 'SELECT status FROM tasks WHERE id = 12' })).isError).toBeFalsy();
    } finally {
      expect((await admin('/v1/unfreeze', { agent: 'ops' })).status).toBe(200);
    }
    const runs = await call(client, 'execute', { sql: "UPDATE tasks SET status = 'doing' WHERE id = 12" });
    expect(runs.isError, text(runs)).toBeFalsy();
  });

  it('refuses a wrong password in AIRLOCK_URL with the login error, as an MCP tool error', async () => {
    const client = await connect('claude', { url: airlock.url('claude', { password: 'not-the-password' }) });
    const result = await call(client, 'query', { sql: 'SELECT 1' });
    expect(result.isError).toBe(true);
    expect(text(result)).toContain('SQLSTATE: 28P01');
  });

  it('never opens a config file or a state directory', async () => {
    // A working directory and home where Airlock's files sit, as they would for a careless set-up:
    // an airlock.yaml naming a state directory with an audit log and admin tokens in it. Their access
    // times are set in the past (before their modification times), so that any read of them moves
    // the access time forward (relatime); the control file shows that reads do, on this file system.
    const dir = await mkdtemp(join(tmpdir(), 'airlock-mcp-cwd-'));
    try {
      const state = join(dir, 'state');
      await mkdir(join(state, 'audit'), { recursive: true });
      const files = {
        config: join(dir, 'airlock.yaml'),
        homeConfig: join(dir, '.airlock.yaml'),
        audit: join(state, 'audit', 'audit.jsonl'),
        tokens: join(state, 'admin-tokens.json'),
        control: join(dir, 'control.txt'),
      };
      await writeFile(files.config, `listen: 127.0.0.1:${airlock.port}\nupstream: ${db.url}\nstate_dir: ${state}\nagents: []\n`);
      await writeFile(files.homeConfig, 'listen: 127.0.0.1:1\n');
      await writeFile(files.audit, '{}\n');
      await writeFile(files.tokens, '{}\n');
      await writeFile(files.control, 'control\n');
      const past = new Date('2001-01-01T00:00:00Z');
      for (const path of [...Object.values(files), state, join(state, 'audit')]) await utimes(path, past, new Date());
      const client = await connect('claude', { cwd: dir, home: dir });
      expect(text(await call(client, 'query', { sql: 'SELECT count(*) AS n FROM executives' }))).toContain('[1206]');
      expect((await call(client, 'describe_table', { table: 'tasks' })).isError).toBeFalsy();
      await client.close();
      await readFile(files.control);
      expect((await stat(files.control)).atime.getTime(), 'reads move the access time on this file system').toBeGreaterThan(past.getTime());
      for (const path of [files.config, files.homeConfig, files.audit, files.tokens, state, join(state, 'audit')]) {
        expect((await stat(path)).atime.getTime(), path).toBe(past.getTime());
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
