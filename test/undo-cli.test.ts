/**
 * `airlock changes` and `airlock undo` as a real process: the CLI is a client
 * of the running server's admin API, with an admin token (like freeze).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminToken } from '../src/state/admin-tokens.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { RunningProcess, buildCli, freePort, runProcess } from './support/cli.js';
import type { BuiltCli } from './support/cli.js';
import { dropRoles } from './support/drop-roles.js';
import { FileJournal } from '../src/state/file-journal.js';
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
      extraYaml: ['rules:', '  - { agents: [ops], kinds: [drop], tables: [public.cli_scratch], decision: allow }'],
    });
    token = await createAdminToken(stateDir, 'bob');
    // DROP needs ownership: an operator hands the table to the agent's write role.
    await withClient(db.url, (c) =>
      c.query(`CREATE TABLE public.cli_scratch (id int PRIMARY KEY, v text); INSERT INTO public.cli_scratch VALUES (1, 'a'), (2, 'b');
               ALTER TABLE public.cli_scratch OWNER TO ${airlock.config.agents[0]!.writeRole}`),
    );
  }, 300_000);

  afterAll(async () => {
    await withClient(db.url, (c) => c.query(`REASSIGN OWNED BY ${airlock.config.agents[0]!.writeRole} TO CURRENT_USER`)).catch(() => undefined);
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

  it('airlock trash list shows a dropped table; purge drops it for good, and its undo is then refused', async () => {
    const agent = new pg.Client(airlock.clientConfig('ops'));
    await agent.connect();
    await agent.query('DROP TABLE cli_scratch');
    await agent.end();
    const listed = await run(['trash', 'list']);
    expect(listed.code, listed.stderr).toBe(0);
    const lines = listed.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\S+ {2}public\.cli_scratch {2}ops {2}\S+ {2}2 row\(s\) {2}[\d.]+ kB {2}airlock_trash\.cli_scratch_[0-9a-f]{12}$/);
    const id = lines[0]!.split(/\s+/)[0]!;
    expect((await run(['trash', 'purge'])).code).toBe(2);
    const purged = await run(['trash', 'purge', '--older-than', new Date(Date.now() + 1000).toISOString()]);
    expect(purged.code, purged.stderr).toBe(0);
    expect(purged.stdout).toMatch(/^purged \S+ {2}public\.cli_scratch/);
    expect(purged.stdout).toMatch(/dropped from the trash for good/);
    expect((await run(['trash', 'list'])).stdout.trim()).toBe('The trash is empty.');
    const undo = await run(['undo', id]);
    expect(undo.code).toBe(1);
    expect(undo.stderr).toMatch(/bob purged it from the trash at .*: the data is gone for good/);
  });

  it('survives a SIGKILL between the database COMMIT and the journal mark: on restart the journal agrees with the database, and the change can be undone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-undo-kill-'));
    const [port, adminPort] = [await freePort(), await freePort()];
    const role = `${db.name}_killed`;
    const config = join(dir, 'airlock.yaml');
    await writeFile(
      config,
      [
        `listen: 127.0.0.1:${port}`,
        'admin:',
        `  listen: 127.0.0.1:${adminPort}`,
        `upstream: postgres://${server.user}${server.password === null ? '' : ':${UPSTREAM_PASSWORD}'}@${server.host}:${server.port}/${db.name}?sslmode=disable`,
        `state_dir: ${JSON.stringify(join(dir, 'state'))}`,
        'agents:',
        '  - name: ops',
        '    password: ops-test-password',
        '    profile: read-write',
        `    read_role: ${role}_r`,
        `    write_role: ${role}_w`,
      ].join('\n'),
    );
    const env = { ...process.env, UPSTREAM_PASSWORD: server.password ?? '' };
    const runs: RunningProcess[] = [];
    const start = async (hold: boolean): Promise<RunningProcess> => {
      const r = new RunningProcess(process.execPath, [cli.main, 'start', '--config', config], { env: { ...env, AIRLOCK_TEST_HOLD_BEFORE_JOURNAL_MARK: hold ? '1' : '0' } });
      runs.push(r);
      await r.waitFor(/is listening on/, 60_000);
      return r;
    };
    try {
      const name = async (): Promise<string> => withClient(db.url, async (c) => (await c.query<{ name: string }>('SELECT name FROM companies WHERE id = 5')).rows[0]!.name);
      const before = await name();
      const first = await start(true);
      const agent = new pg.Client({ host: '127.0.0.1', port, user: 'ops', password: 'ops-test-password', database: db.name });
      agent.on('error', () => undefined); // the gateway is killed under it
      await agent.connect();
      const pending = agent.query("UPDATE companies SET name = name || ' (killed)' WHERE id = 5").catch((e: unknown) => e);
      const changeId = (await first.waitFor(/holding change (\S+) between its COMMIT and its journal mark/, 30_000))[1]!;
      // The database committed it; the journal holds it as pending.
      expect(await name()).toBe(`${before} (killed)`);
      first.child.kill('SIGKILL');
      await first.exited(10_000);
      expect(await pending).toBeInstanceOf(Error);
      const journal = await FileJournal.open(join(dir, 'state'));
      expect(journal.get(changeId)?.state).toBe('pending');
      await journal.close();

      const second = await start(false);
      const stateToken = await createAdminToken(join(dir, 'state'), 'carol');
      const listed = await runProcess(process.execPath, [cli.main, 'changes', '--json', '--admin', `127.0.0.1:${adminPort}`], { env: { ...process.env, AIRLOCK_ADMIN_TOKEN: stateToken }, timeoutMs: 30_000 });
      const entry = (JSON.parse(listed.stdout) as { id: string; state: string }[]).find((e) => e.id === changeId);
      expect(entry?.state).toBe('committed');
      const undone = await runProcess(process.execPath, [cli.main, 'undo', changeId, '--admin', `127.0.0.1:${adminPort}`], { env: { ...process.env, AIRLOCK_ADMIN_TOKEN: stateToken }, timeoutMs: 30_000 });
      expect(undone.code, undone.stderr).toBe(0);
      expect(await name()).toBe(before);
      await second.stop();
    } finally {
      for (const r of runs) await r.kill();
      await dropRoles(server, [`${role}_r`, `${role}_w`]);
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
