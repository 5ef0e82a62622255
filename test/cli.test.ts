/**
 * The `airlock` command as a user runs it: a real process built from the
 * current source, its output and its exit code.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { auditLogPath } from '../src/state/file-audit-log.js';
import { adminRequest } from '../src/cli/admin-client.js';
import { buildCli, freePort, runProcess, RunningProcess } from './support/cli.js';
import type { BuiltCli, ProcessResult, RunOptions } from './support/cli.js';
import { dropRoles } from './support/drop-roles.js';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';

/** Exit codes `airlock` promises (src/cli/main.ts, check-command.ts). */
const EXIT = { ok: 0, failed: 1, usage: 2, denied: 3 } as const;

const server = testServers()[0]!;
let cli: BuiltCli;

/** Strings no run may print: the upstream (superuser) password, and more as tests add them. */
const secrets = new Set<string>();
/** Processes started by the current test, checked for secrets and stopped after it. */
let started: RunningProcess[] = [];

beforeAll(async () => {
  cli = await buildCli();
  if (server.password !== null) secrets.add(server.password);
}, 180_000);

afterAll(async () => {
  await cli?.remove();
});

afterEach(async () => {
  const runs = started;
  started = [];
  for (const run of runs) await run.kill();
  for (const run of runs) {
    for (const secret of secrets) {
      expect(run.output, 'a run printed a password').not.toContain(secret);
    }
  }
});

/** Starts `airlock ...args`; the test's clean-up stops it and checks its output for secrets. */
function airlock(args: string[], options: RunOptions = {}): RunningProcess {
  const run = new RunningProcess(process.execPath, [cli.main, ...args], options);
  started.push(run);
  return run;
}

/** Runs `airlock ...args` to its end. */
function airlockRun(args: string[], options: RunOptions = {}): Promise<ProcessResult> {
  return airlock(args, options).exited(options.timeoutMs ?? 30_000);
}

describe('airlock check', () => {
  it('refuses a DELETE: DENY with the rule and SQLSTATE, exit code 3', async () => {
    const r = await airlockRun(['check', 'DELETE FROM executives']);
    expect(r.stdout).toContain('Statement 1: DELETE (write)');
    expect(r.stdout).toContain('DENY [write, SQLSTATE 42501]');
    expect(r.stdout).toContain('may not DELETE on public.executives (profile read-only)');
    expect(r.code).toBe(EXIT.denied);
  });

  it('allows SELECT 1 with exit code 0', async () => {
    const r = await airlockRun(['check', 'SELECT 1']);
    expect(r.stdout).toMatch(/ALLOW \(allow-read\)/);
    expect(r.stdout).not.toContain('DENY');
    expect(r.code).toBe(EXIT.ok);
  });

  it('prints parseable JSON with --json', async () => {
    const denied = await airlockRun(['check', '--json', 'DELETE FROM executives']);
    const d = JSON.parse(denied.stdout) as { decision: { kind: string; rule: string }; classification: { ok: boolean; statements: { kind: string }[] } };
    expect(d.decision).toMatchObject({ kind: 'deny', rule: 'write' });
    expect(d.classification.statements[0]!.kind).toBe('write');
    expect(denied.code).toBe(EXIT.denied);

    const allowed = await airlockRun(['check', '--json', 'SELECT 1; SELECT 2']);
    const a = JSON.parse(allowed.stdout) as { decision: { kind: string }; classification: { statements: unknown[] } };
    expect(a.decision.kind).toBe('allow-read');
    expect(a.classification.statements).toHaveLength(2);
    expect(allowed.code).toBe(EXIT.ok);
  });

  it('reports a parse error with its position', async () => {
    const r = await airlockRun(['check', 'SELECT * FROM WHERE x']);
    expect(r.stdout).toContain('Parse error: syntax error at or near "WHERE" (at character 15)');
    expect(r.stdout).toContain('DENY [unparsable, SQLSTATE 42601]');
    expect(r.code).toBe(EXIT.denied);
  });

  it('reports a command-line mistake with the usage and exit code 2', async () => {
    const r = await airlockRun(['check']);
    expect(r.stderr).toContain('check takes one SQL string');
    expect(r.stderr).toContain('Usage: airlock');
    expect(r.code).toBe(EXIT.usage);
    const unknown = await airlockRun(['frobnicate']);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknown.code).toBe(EXIT.usage);
  });
});

describe('airlock start, audit verify and audit tail', () => {
  let db: TestDatabase;
  let dir: string;
  let stateDir: string;
  let configPath: string;
  let port: number;
  let adminPort: number;
  let env: Record<string, string | undefined>;
  let gatewayRun: RunningProcess | undefined;
  const agentPassword = randomBytes(18).toString('base64url');
  const readRole = (): string => `${db.name}_claude`;

  beforeAll(async () => {
    secrets.add(agentPassword);
    db = await createTestDatabase(server, { seed: true });
    dir = await mkdtemp(join(tmpdir(), 'airlock-cli-'));
    stateDir = join(dir, 'state');
    configPath = join(dir, 'airlock.yaml');
    port = await freePort();
    adminPort = await freePort();
    const auth = server.password === null ? server.user : `${server.user}:\${UPSTREAM_PASSWORD}`;
    await writeFile(
      configPath,
      [
        `listen: 127.0.0.1:${port}`,
        'admin:',
        `  listen: 127.0.0.1:${adminPort}`,
        `upstream: postgres://${auth}@${server.host}:${server.port}/${db.name}?sslmode=disable`,
        `state_dir: ${JSON.stringify(stateDir)}`,
        'audit:',
        '  flush_ms: 2',
        'agents:',
        '  - name: claude',
        '    password: ${AGENT_PASSWORD}',
        '    profile: read-only',
        `    read_role: ${readRole()}`,
      ].join('\n') + '\n',
      { mode: 0o600 },
    );
    env = { ...process.env, UPSTREAM_PASSWORD: server.password ?? undefined, AGENT_PASSWORD: agentPassword };
  });

  afterAll(async () => {
    await gatewayRun?.kill();
    await db?.drop();
    if (db !== undefined) await dropRoles(server, [readRole()]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const agentUrl = (): string =>
    `postgres://claude:${encodeURIComponent(agentPassword)}@127.0.0.1:${port}/${db.name}?sslmode=disable`;

  async function withAgent<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ connectionString: agentUrl() });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }

  /** Starts the gateway for one test; the test's clean-up kills it if the test did not stop it. */
  async function startGatewayProcess(): Promise<RunningProcess> {
    const run = airlock(['start', '--config', configPath], { env });
    gatewayRun = run;
    await run.waitFor(/is listening on[^\n]*\nAgents: [^\n]*\n/, 30_000);
    return run;
  }

  /** Lets the audit log's group commit (flush_ms 2) reach the file. */
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 300));

  it('starts, says where it listens, serves psql and node-postgres, and stops on SIGTERM with exit code 0', async () => {
    const run = await startGatewayProcess();
    expect(run.stdout).toContain(`Airlock is listening on 127.0.0.1:${port}, in front of postgres://${server.user}@${server.host}:${server.port}/${db.name}`);
    expect(run.stdout).toContain('Agents: claude (read-only).');

    const count = await withAgent((c) => c.query<{ n: number }>('SELECT count(*)::int AS n FROM executives'));
    expect(count.rows[0]!.n).toBe(1206);
    const refused = await withAgent((c) => c.query('DELETE FROM executives').catch((e: unknown) => e as pg.DatabaseError));
    expect((refused as pg.DatabaseError).code).toBe('42501');

    const psql = await runProcess('psql', [agentUrl(), '-X', '-At', '-c', 'SELECT count(*) FROM companies'], {
      env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
    });
    expect(psql.stderr).toBe('');
    expect(psql.stdout.trim()).toBe('1196');
    const psqlDelete = await runProcess('psql', [agentUrl(), '-X', '-At', '-v', 'VERBOSITY=verbose', '-c', 'DELETE FROM companies'], {
      env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
    });
    expect(psqlDelete.code).not.toBe(0);
    expect(psqlDelete.stderr).toContain('42501');

    const t0 = Date.now();
    const stopped = await run.stop('SIGTERM', 10_000);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(stopped.stdout).toContain('Airlock is stopping.');
    // A graceful stop closes the gateway, which puts a shutdown record on the chain and flushes it.
    const records = (await readFile(auditLogPath(stateDir), 'utf8')).trimEnd().split('\n');
    expect((JSON.parse(records.at(-1)!) as { event: string }).event, 'the last audit record after SIGTERM').toBe('shutdown');
    expect(stopped.signal).toBeNull();
    expect(stopped.code).toBe(EXIT.ok);
  });

  it('admin token create prints a token once; freeze, status and unfreeze use it through the running server', async () => {
    const created = await airlockRun(['admin', 'token', 'create', '--name', 'alice', '--config', configPath], { env });
    expect(created.code).toBe(EXIT.ok);
    const token = created.stdout.match(/airlock_admin_[A-Za-z0-9_-]+/)?.[0];
    expect(token).toBeDefined();
    // Printed once, by create (the one run allowed to), and never again:
    expect(await readFile(join(stateDir, 'admin-tokens.json'), 'utf8')).not.toContain(token!);

    const run = await startGatewayProcess();
    const withToken = { ...env, AIRLOCK_ADMIN_TOKEN: token };
    const noToken = await airlockRun(['freeze', '--agent', 'claude', '--reason', 'x', '--config', configPath], { env: { ...env, AIRLOCK_ADMIN_TOKEN: agentPassword } });
    expect(noToken.code).not.toBe(EXIT.ok);

    const frozen = await airlockRun(['freeze', '--agent', 'claude', '--reason', 'release freeze', '--until', '2h', '--config', configPath], { env: withToken });
    expect(frozen.code, frozen.stderr).toBe(EXIT.ok);
    const refused = await withAgent((c) => c.query('DELETE FROM executives').catch((e: unknown) => e as pg.DatabaseError));
    expect((refused as pg.DatabaseError).message).toContain('frozen by alice');
    // --admin needs no config, so no secrets in the operator's environment.
    const status = await airlockRun(['status', '--admin', `127.0.0.1:${adminPort}`], { env: { PATH: process.env.PATH, AIRLOCK_ADMIN_TOKEN: token } });
    expect(status.stdout).toContain('release freeze');
    const lifted = await airlockRun(['unfreeze', '--agent', 'claude', '--config', configPath], { env: withToken });
    expect(lifted.code).toBe(EXIT.ok);
    for (const r of [noToken, frozen, status, lifted]) expect(r.stdout + r.stderr).not.toContain(token!);
    const after = await withAgent((c) => c.query('DELETE FROM executives').catch((e: unknown) => e as pg.DatabaseError));
    expect((after as pg.DatabaseError).message).not.toContain('frozen');
    await run.stop('SIGTERM', 10_000);
  });

  it('audit verify says the log is intact after the gateway ran', async () => {
    const r = await airlockRun(['audit', 'verify', '--state-dir', stateDir]);
    expect(r.stdout).toMatch(/The audit log is intact: \d+ records/);
    expect(r.code).toBe(EXIT.ok);
  });

  it('audit tail -n 5 prints the last five records, statements included', async () => {
    const run = await startGatewayProcess();
    const marker = `tail_${randomBytes(4).toString('hex')}`;
    await withAgent(async (c) => {
      await c.query(`SELECT '${marker}' AS a`);
      await c.query('DELETE FROM executives').catch((e: unknown) => e);
      await c.query(`SELECT '${marker}' AS b`);
    });
    await settle();
    const r = await airlockRun(['audit', 'tail', '-n', '5', '--state-dir', stateDir]);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(5);
    expect(r.stdout).toContain(`SELECT '${marker}' AS b`);
    expect(r.stdout).toMatch(/claude deny \[write\] 42501: DELETE FROM executives/);
    expect(r.code).toBe(EXIT.ok);
    await run.stop('SIGTERM');
  });

  it('audit tail -f prints a record appended while it follows, and stops on SIGINT', async () => {
    const run = await startGatewayProcess();
    await withAgent((c) => c.query('SELECT 1'));
    await settle();
    const tail = airlock(['audit', 'tail', '-f', '-n', '1', '--state-dir', stateDir]);
    // The one old record printed means the follow has its starting offset.
    await tail.waitFor(/#\d+ /, 10_000);
    const marker = `follow_${randomBytes(4).toString('hex')}`;
    await withAgent((c) => c.query(`SELECT '${marker}' AS followed`));
    await tail.waitFor(new RegExp(`claude allow .*SELECT '${marker}' AS followed`), 10_000);
    const stopped = await tail.stop('SIGINT', 5_000);
    await run.stop('SIGTERM');
    expect(stopped.signal).toBeNull();
    expect(stopped.code).toBe(EXIT.ok);
  });

  it('audit verify names the line of an edited record and exits 1', async () => {
    const path = auditLogPath(stateDir);
    const lines = (await readFile(path, 'utf8')).split('\n');
    const index = lines.findIndex((l) => l.includes('"DELETE FROM executives"'));
    expect(index).toBeGreaterThanOrEqual(0);
    lines[index] = lines[index]!.replace('"DELETE FROM executives"', '"DELETE FROM executiveZ"');
    await writeFile(path, lines.join('\n'));
    const r = await airlockRun(['audit', 'verify', '--state-dir', stateDir]);
    expect(r.stdout).toContain('The audit log is NOT intact');
    expect(r.stdout).toContain(`line ${index + 1}`);
    expect(r.code).toBe(EXIT.failed);
  });
});

describe('airlock start with a broken config', () => {
  let dir: string;
  const upstreamPassword = `pw${randomBytes(12).toString('hex')}`;

  beforeAll(async () => {
    secrets.add(upstreamPassword);
    dir = await mkdtemp(join(tmpdir(), 'airlock-cli-bad-'));
  });

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const base = (agent: string[], upstream = 'postgres://svc:${UPSTREAM_PASSWORD}@127.0.0.1:5432/app?sslmode=disable'): string =>
    ['listen: 127.0.0.1:0', `upstream: ${upstream}`, 'agents:', ...agent].join('\n') + '\n';

  const cases: [name: string, yaml: string, expected: string[]][] = [
    [
      'an unknown key',
      base(['  - name: claude', '    password: ${AGENT_PASSWORD}', '    colour: blue']),
      ['agents[0].colour', 'is not a known key'],
    ],
    ['an unknown top-level key', base(['  - name: claude', '    password: ${AGENT_PASSWORD}']) + 'listne: 1\n', ['listne']],
    [
      'a wrong profile',
      base(['  - name: claude', '    password: ${AGENT_PASSWORD}', '    profile: read-wirte']),
      ['agents[0].profile', 'read-wirte'],
    ],
    [
      'a missing environment variable',
      base(['  - name: claude', '    password: ${AIRLOCK_TEST_UNSET_VARIABLE}']),
      ['agents[0].password', 'AIRLOCK_TEST_UNSET_VARIABLE is not set'],
    ],
    [
      'a bad upstream URL that holds the password itself',
      base(['  - name: claude', '    password: ${AGENT_PASSWORD}'], `postgres://svc:${upstreamPassword}@127.0.0.1:5432/app?sslmode=bogus`),
      ['upstream'],
    ],
  ];

  it.each(cases)('refuses %s with exit code 1, naming the key', async (_name, yaml, expected) => {
    const path = join(dir, `${randomBytes(4).toString('hex')}.yaml`);
    await writeFile(path, yaml, { mode: 0o600 });
    const env: Record<string, string | undefined> = {
      ...process.env,
      UPSTREAM_PASSWORD: upstreamPassword,
      AGENT_PASSWORD: 'a-long-enough-agent-password',
    };
    delete env['AIRLOCK_TEST_UNSET_VARIABLE'];
    const r = await airlockRun(['start', '--config', path], { env });
    expect(r.stderr).toContain('The configuration has');
    expect(r.stderr).toContain(`${path}: `);
    for (const e of expected) expect(r.stderr).toContain(e);
    expect(r.stdout).not.toContain('listening');
    expect(r.code).toBe(EXIT.failed);
  });

  it('refuses a config file that does not exist with exit code 1', async () => {
    const r = await airlockRun(['start', '--config', join(dir, 'missing.yaml')]);
    expect(r.stderr).toContain('does not exist');
    expect(r.code).toBe(EXIT.failed);
  });
});

describe('airlock demo', () => {
  let cwd: string;
  let dataDir: string;

  beforeAll(async () => {
    // The embedded PostgreSQL runs as the OS user postgres when we are root: it must reach .airlock/ in here.
    cwd = await mkdtemp(join('/tmp', 'airlock-demo-'));
    await chmod(cwd, 0o755);
    dataDir = join(cwd, '.airlock', 'demo-postgres');
  });

  afterAll(async () => {
    // If a failed run left the demo's PostgreSQL behind, stop it (its pid is the first line of postmaster.pid).
    const pid = await postmasterPid(dataDir);
    if (pid !== null) process.kill(pid, 'SIGQUIT');
    if (cwd !== undefined) await rm(cwd, { recursive: true, force: true });
  });

  it('serves the printed SELECT, refuses the printed DELETE, runs what it prints for ops, and stops everything on Ctrl-C', async () => {
    const port = await freePort();
    const run = airlock(['demo', '--port', String(port)], { cwd, timeoutMs: 90_000 });
    await run.waitFor(/Press Ctrl-C/, 90_000);
    const superuserPassword = (await readFile(join(dataDir, 'airlock-superuser-password'), 'utf8')).trim();
    secrets.add(superuserPassword);

    const url = run.stdout.match(/psql "(postgres:\/\/[^"]+)"/)?.[1];
    const select = run.stdout.match(/A read that works:\n\s+(SELECT[^\n]+)/)?.[1];
    const del = run.stdout.match(/A DELETE that Airlock refuses[^\n]*\n\s+(DELETE[^\n]+)/)?.[1];
    expect(url).toMatch(new RegExp(`^postgres://claude:[^@]+@127\\.0\\.0\\.1:${port}/demo$`));
    expect(select).toBeDefined();
    expect(del).toBeDefined();

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const rows = await client.query(select!);
      expect(rows.rows).toHaveLength(5);
      expect(Object.keys(rows.rows[0] as object)).toEqual(['full_name', 'title']);
      const err = await client.query(del!).catch((e: unknown) => e as pg.DatabaseError);
      expect((err as pg.DatabaseError).code).toBe('42501');
      const after = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM executives');
      expect(after.rows[0]!.n).toBe(1206);
    } finally {
      await client.end();
    }

    const psql = await runProcess('psql', [url!, '-X', '-At', '-c', select!], { env: { ...process.env, PGCONNECT_TIMEOUT: '10' } });
    expect(psql.stdout.trim().split('\n')).toHaveLength(5);

    // ops: a read-write agent under the demo's rules. Each printed statement does what the line above it says.
    const opsUrl = run.stdout.match(/psql "(postgres:\/\/ops:[^"]+)"/)?.[1];
    const update = run.stdout.match(/An UPDATE that works[^\n]*\n\s+(UPDATE[^\n]+)/)?.[1];
    const tooMany = run.stdout.match(/A DELETE that the row limit refuses[^\n]*\n\s+(DELETE[^\n]+)/)?.[1];
    const approval = run.stdout.match(/A write that needs a human's approval[^\n]*\n\s+([A-Z][^\n]+)/)?.[1];
    expect(opsUrl).toMatch(new RegExp(`^postgres://ops:[^@]+@127\\.0\\.0\\.1:${port}/demo$`));
    expect([update, tooMany, approval]).not.toContain(undefined);
    const ops = new pg.Client({ connectionString: opsUrl });
    await ops.connect();
    const counts = async () =>
      (await ops.query<{ tasks: number; projects: number }>('SELECT (SELECT count(*)::int FROM tasks) AS tasks, (SELECT count(*)::int FROM projects) AS projects')).rows[0];
    try {
      const updated = await ops.query(update!);
      expect(updated.rowCount).toBe(1);
      expect(updated.rows[0]).toMatchObject({ id: '1', status: 'done' });

      const before = await counts();
      const limit = await ops.query(tooMany!).catch((e: unknown) => e as pg.DatabaseError);
      expect(limit).toBeInstanceOf(pg.DatabaseError);
      expect((limit as pg.DatabaseError).code).toBe('54000');
      expect((limit as pg.DatabaseError).detail).toMatch(/^Rule: row-limit\./);
      expect((limit as pg.DatabaseError).message).toContain('public.tasks 1792, public.projects 448');
      expect(await counts()).toEqual(before);

      // The write that needs approval waits; the human approves it with the printed token, and it completes.
      const notices: string[] = [];
      ops.on('notice', (n) => notices.push(n.message ?? ''));
      const waiting = ops.query(approval!);
      await expect.poll(() => notices.find((n) => /waiting for approval #\d+/.test(n)), { timeout: 10_000, interval: 50 }).toBeDefined();
      const id = /#(\d+)/.exec(notices.find((n) => n.includes('waiting for approval'))!)![1];
      const [, token, adminHost, adminPort] = /export AIRLOCK_ADMIN_TOKEN=(\S+) AIRLOCK_ADMIN_ADDRESS=([\d.]+):(\d+)/.exec(run.stdout)!;
      const decided = await adminRequest({ host: adminHost!, port: Number(adminPort), token: token! }, 'POST', `/v1/approvals/${id}/approve`, {});
      expect(decided.status).toBe(200);
      expect((await waiting).rowCount).toBe(1);
      // Nobody reads the customers' credentials, ops included.
      const hidden = await ops.query('SELECT count(*) FROM api_keys').catch((e: unknown) => e as pg.DatabaseError);
      expect((hidden as pg.DatabaseError).code).toBe('42501');
    } finally {
      await ops.end();
    }

    const stopped = await run.stop('SIGINT', 60_000);
    expect(stopped.stdout).toContain('Stopping Airlock and the demo database');
    expect(await postmasterPid(dataDir), 'the demo PostgreSQL is still running').toBeNull();
    expect(stopped.signal).toBeNull();
    expect(stopped.code).toBe(EXIT.ok);
  }, 180_000);
});

/** The pid of a PostgreSQL running on `dataDir`, or null when none is. */
async function postmasterPid(dataDir: string | undefined): Promise<number | null> {
  if (dataDir === undefined) return null;
  let text: string;
  try {
    text = await readFile(join(dataDir, 'postmaster.pid'), 'utf8');
  } catch (error) {
    // No pid file: no server on this directory.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const pid = Number(text.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (error) {
    // ESRCH: a stale pid file left by a server that is gone.
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return null;
    throw error;
  }
}
