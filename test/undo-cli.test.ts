/**
 * `airlock changes` and `airlock undo` as a real process: the CLI is a client
 * of the running server's admin API, with an admin token (like freeze).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminToken } from '../src/state/admin-tokens.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { buildCli, runProcess } from './support/cli.js';
import type { BuiltCli } from './support/cli.js';
import { createTestDatabase, testServers, withClient } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';

const server = testServers()[0]!;

describe('airlock changes and airlock undo', () => {
  let cli: BuiltCli;
  let db: TestDatabase;
  let stateDir: string;
  let airlock: TestAirlock;
  let token: string;

  const run = (args: string[], withToken = true) =>
    runProcess(process.execPath, [cli.main, ...args, '--admin', `127.0.0.1:${airlock.gateway.adminAddress.port}`], {
      env: { ...process.env, AIRLOCK_ADMIN_TOKEN: withToken ? token : 'not-a-token' },
      timeoutMs: 30_000,
    });

  beforeAll(async () => {
    cli = await buildCli();
    db = await createTestDatabase(server, { seed: true });
    stateDir = await mkdtemp(join(tmpdir(), 'airlock-undo-cli-'));
    airlock = await startTestAirlock(server, db, {
      stateDir,
      agents: [{ name: 'ops', password: 'ops-test-password', profile: 'read-write', extra: ['    write_limits: { max_rows: 100000, rows_per_hour: 1000000 }'] }],
    });
    token = await createAdminToken(stateDir, 'bob');
  }, 300_000);

  afterAll(async () => {
    await airlock?.close();
    await db?.drop();
    await cli?.remove();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('lists the change, plans its undo, undoes it, and refuses without an admin token', async () => {
    const before = await withClient(db.url, async (c) => (await c.query("SELECT md5(string_agg(e::text, ',' ORDER BY id)) AS h FROM executives e WHERE company_id = 3")).rows[0]);
    const agent = new pg.Client(airlock.clientConfig('ops'));
    await agent.connect();
    await agent.query('DELETE FROM companies WHERE id = 3');
    await agent.end();

    const refused = await run(['changes'], false);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/admin token/);

    const listed = await run(['changes', '--agent', 'ops', '--since', '1h']);
    expect(listed.code, listed.stderr).toBe(0);
    const lines = listed.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const id = lines[0]!.split(/\s+/)[0]!;
    expect(lines[0]).toMatch(/ops {2}"DELETE FROM companies WHERE id = 3" {2}public\.companies 1, public\.executives \d+.* {2}committed$/);

    const plan = await run(['undo', '--dry-run', id]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/^Would undo 1 change\(s\)/);
    expect(plan.stdout).toMatch(/public\.companies: 1 row\(s\) put back/);
    expect(await withClient(db.url, async (c) => (await c.query('SELECT count(*)::int AS n FROM companies WHERE id = 3')).rows[0])).toEqual({ n: 0 });

    const undone = await run(['undo', id]);
    expect(undone.code, undone.stderr).toBe(0);
    expect(undone.stdout).toMatch(/^Undid 1 change\(s\)/);
    const after = await withClient(db.url, async (c) => (await c.query("SELECT md5(string_agg(e::text, ',' ORDER BY id)) AS h FROM executives e WHERE company_id = 3")).rows[0]);
    expect(after).toEqual(before);

    const json = await run(['changes', '--json']);
    const entries = JSON.parse(json.stdout) as { id: string; state: string; kind: string; by: string | null }[];
    expect(entries.find((e) => e.id === id)?.state).toBe('undone');
    expect(entries.find((e) => e.kind === 'undo')?.by).toBe('bob');

    const again = await run(['undo', id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already undone/);
    const usage = await run(['undo']);
    expect(usage.code).toBe(2);
  });
});
