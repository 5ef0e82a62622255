/**
 * `airlock doctor` against a real PostgreSQL: a healthy read path passes, and
 * each way a superuser can weaken a read role is found and named. Also that
 * `startGateway` repairs what it can and refuses to start on what it cannot.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import type { AirlockConfig } from '../src/config/load.js';
import { runDoctorChecks } from '../src/gateway/doctor.js';
import type { DoctorCheck } from '../src/gateway/doctor.js';
import { startGateway } from '../src/gateway/gateway.js';
import { FileAuditLog } from '../src/state/file-audit-log.js';
import { buildCli, RunningProcess } from './support/cli.js';
import type { BuiltCli } from './support/cli.js';
import { dropRoles } from './support/drop-roles.js';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase, TestServer } from './support/postgres-servers.js';

const AGENT_PASSWORD = 'doctor-test-agent-password';

let cli: BuiltCli;
beforeAll(async () => {
  cli = await buildCli();
}, 180_000);
afterAll(async () => {
  await cli?.remove();
});

function fails(checks: DoctorCheck[]): DoctorCheck[] {
  return checks.filter((c) => c.outcome === 'fail');
}

function describeChecks(checks: DoctorCheck[]): string {
  return checks.map((c) => `${c.outcome}: ${c.message}`).join('\n');
}

describe.each(testServers().map((s) => [s.name, s] as const))('doctor on the %s server', (_name, server: TestServer) => {
  let db: TestDatabase;
  let dir: string;
  let configPath: string;
  let config: AirlockConfig;
  let role: string;
  /** ops may write public.executives only: its write role is what doctor checks on the write path. */
  let opsRead: string;
  let opsWrite: string;
  const env = (): Record<string, string | undefined> => ({ ...process.env, UPSTREAM_PASSWORD: server.password ?? undefined, AGENT_PASSWORD });

  /** Runs SQL as the superuser, in the test database. */
  async function superuser(sql: string): Promise<void> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  }

  /** Starts the gateway (which creates or repairs the read role) and stops it again. */
  async function startAndStopGateway(): Promise<string[]> {
    const stateDir = await mkdtemp(join(tmpdir(), 'airlock-doctor-state-'));
    const audit = await FileAuditLog.open(stateDir, { flushMs: 2 });
    try {
      const gateway = await startGateway({ config: { ...config, stateDir }, audit, log: () => undefined });
      await gateway.close();
      return gateway.warnings;
    } finally {
      await audit.close();
      await rm(stateDir, { recursive: true, force: true });
    }
  }

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    role = `${db.name}_claude`;
    opsRead = `${db.name}_ops`;
    opsWrite = `${db.name}_ops_w`;
    dir = await mkdtemp(join(tmpdir(), 'airlock-doctor-'));
    const auth = server.password === null ? server.user : `${server.user}:\${UPSTREAM_PASSWORD}`;
    const yaml = [
      'listen: 127.0.0.1:0',
      'admin:',
      '  listen: 127.0.0.1:0',
      `upstream: postgres://${auth}@${server.host}:${server.port}/${db.name}?sslmode=disable`,
      `state_dir: ${JSON.stringify(join(dir, 'state'))}`,
      'agents:',
      '  - name: claude',
      '    password: ${AGENT_PASSWORD}',
      '    profile: read-only',
      `    read_role: ${role}`,
      '  - name: ops',
      '    password: ${AGENT_PASSWORD}',
      '    profile: read-only',
      `    read_role: ${opsRead}`,
      `    write_role: ${opsWrite}`,
      'rules:',
      '  - { agents: [ops], kinds: [insert, update, delete], tables: [public.executives], decision: allow }',
    ].join('\n');
    configPath = join(dir, 'airlock.yaml');
    await writeFile(configPath, yaml + '\n', { mode: 0o600 });
    config = parseConfig(yaml, { source: configPath, baseDir: dir, env: env() }).config;
    await startAndStopGateway();
  });

  afterAll(async () => {
    await db?.drop();
    if (role !== undefined) await dropRoles(server, [role, opsRead, opsWrite]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('finds nothing wrong with the read path a gateway set up', async () => {
    const checks = await runDoctorChecks(config);
    expect(fails(checks), describeChecks(checks)).toEqual([]);
    const text = describeChecks(checks);
    expect(text).toMatch(/ok: A READ ONLY transaction refuses writes on this server \(tried DELETE FROM \S+ WHERE false: 25006\)/);
    expect(text).toContain(`ok: Agent "claude": as "${role}", DELETE FROM`);
    expect(text).toContain('is refused for lack of privilege (42501)');
    expect(text).toContain(`ok: Agent "claude": read role "${role}" starts every transaction READ ONLY.`);
    expect(text).toContain(`ok: Agent "claude": read role "${role}" is not a superuser`);
    expect(text).toMatch(/ok: Agent "claude": as "[^"]+", CREATE TABLE in public is refused/);
    // The test servers' service account is a superuser: worth a word, not a failure.
    expect(text).toContain('warn: The service account is a superuser.');
    // The write path: ops's write role.
    expect(text).toContain(`ok: Agent "ops": write role "${opsWrite}" is not a superuser`);
    expect(text).toContain(`ok: Agent "ops": write role "${opsWrite}" holds no write privilege beyond what its rules could allow.`);
    expect(text).toMatch(new RegExp(`ok: Agent "ops": as "${opsWrite}", DELETE FROM public\\.\\w+, which its rules do not allow, is refused for lack of privilege \\(42501\\)`));
  });

  it('fails when the write role has powers or privileges beyond its rules, and a gateway start repairs it', async () => {
    await superuser(`ALTER ROLE ${opsWrite} CREATEROLE; GRANT DELETE ON ALL TABLES IN SCHEMA public TO ${opsWrite}`);
    try {
      const checks = await runDoctorChecks(config);
      const failed = fails(checks).map((c) => c.message);
      expect(failed.some((m) => m.includes(`write role "${opsWrite}" has rolcreaterole`)), describeChecks(checks)).toBe(true);
      expect(failed.some((m) => m.includes(`write role "${opsWrite}" holds `) && m.includes('DELETE on public.companies,')), describeChecks(checks)).toBe(true);
      expect(failed.some((m) => m.includes(`as "${opsWrite}", DELETE FROM`) && m.includes('was not refused for privilege')), describeChecks(checks)).toBe(true);
    } finally {
      await startAndStopGateway();
    }
    const repaired = await runDoctorChecks(config);
    expect(fails(repaired), describeChecks(repaired)).toEqual([]);
  });

  it('warns, naming the table, when PUBLIC may write to one', async () => {
    await superuser('GRANT INSERT ON executives TO PUBLIC');
    try {
      const checks = await runDoctorChecks(config);
      const warnings = checks.filter((c) => c.outcome === 'warn').map((c) => c.message);
      expect(warnings.some((w) => w.includes(`"${role}" may write to public.executives`)), describeChecks(checks)).toBe(true);
    } finally {
      await superuser('REVOKE INSERT ON executives FROM PUBLIC');
    }
  });

  it('fails when the read role is a superuser, and a gateway start repairs it', async () => {
    await superuser(`ALTER ROLE ${role} SUPERUSER`);
    try {
      const checks = await runDoctorChecks(config);
      const failed = fails(checks).map((c) => c.message);
      expect(failed.some((m) => m.includes(`read role "${role}" has rolsuper`)), describeChecks(checks)).toBe(true);
      // As a superuser the role is no wall: the DELETE probe is not refused.
      expect(failed.some((m) => m.includes('was not refused for privilege')), describeChecks(checks)).toBe(true);
    } finally {
      await startAndStopGateway();
    }
    const repaired = await runDoctorChecks(config);
    expect(fails(repaired), describeChecks(repaired)).toEqual([]);
  });

  it('fails when the read role no longer defaults to READ ONLY', async () => {
    await superuser(`ALTER ROLE ${role} RESET default_transaction_read_only`);
    try {
      const checks = await runDoctorChecks(config);
      const failed = fails(checks).map((c) => c.message);
      expect(failed.some((m) => m.includes(`read role "${role}" does not default to READ ONLY transactions`)), describeChecks(checks)).toBe(true);
    } finally {
      await startAndStopGateway();
    }
    expect(fails(await runDoctorChecks(config))).toEqual([]);
  });

  it('warns when this database sets default_transaction_read_only = off for the read role', async () => {
    const dbName = db.name;
    await superuser(`ALTER ROLE ${role} IN DATABASE ${dbName} SET default_transaction_read_only = off`);
    try {
      const checks = await runDoctorChecks(config);
      const warnings = checks.filter((c) => c.outcome === 'warn').map((c) => c.message);
      expect(warnings.some((w) => w.includes('sets default_transaction_read_only = off')), describeChecks(checks)).toBe(true);
    } finally {
      await superuser(`ALTER ROLE ${role} IN DATABASE ${dbName} RESET default_transaction_read_only`);
    }
  });

  it('fails when the read role is a member of pg_write_all_data, and the gateway refuses to start', async () => {
    await superuser(`GRANT pg_write_all_data TO ${role}`);
    try {
      const checks = await runDoctorChecks(config);
      const failed = fails(checks).map((c) => c.message);
      expect(failed.some((m) => m.includes(`read role "${role}" is also a member of pg_write_all_data`)), describeChecks(checks)).toBe(true);
      expect(failed.some((m) => m.includes('was not refused for privilege')), describeChecks(checks)).toBe(true);

      const refused = await startAndStopGateway().then(
        () => null,
        (e: unknown) => e as Error,
      );
      expect(refused, 'startGateway started with a read role that may write').toBeInstanceOf(Error);
      expect(refused!.message).toContain(`The read role "${role}" is a member of "pg_write_all_data"`);
      expect(refused!.message).toContain(`REVOKE "pg_write_all_data" FROM "${role}"`);
    } finally {
      await superuser(`REVOKE pg_write_all_data FROM ${role}`);
    }
    expect(fails(await runDoctorChecks(config))).toEqual([]);
  });

  describe('airlock doctor as a process', () => {
    async function doctor(): Promise<{ code: number | null; stdout: string; stderr: string }> {
      const run = new RunningProcess(process.execPath, [cli.main, 'doctor', '--config', configPath], { env: env() });
      const r = await run.exited(60_000);
      if (server.password !== null) expect(r.stdout + r.stderr).not.toContain(server.password);
      expect(r.stdout + r.stderr).not.toContain(AGENT_PASSWORD);
      return r;
    }

    it('prints its checks and exits 0 when the read path holds', async () => {
      const r = await doctor();
      expect(r.stdout).toMatch(/^ok {4}Connected to postgres:\/\//m);
      expect(r.stdout).toMatch(/^ok {4}A READ ONLY transaction refuses writes/m);
      expect(r.stdout).not.toMatch(/^FAIL/m);
      expect(r.stdout).toContain('The read and write paths hold');
      expect(r.code).toBe(0);
    });

    it('prints FAIL lines and exits 1 when something failed', async () => {
      await superuser(`ALTER ROLE ${role} SUPERUSER`);
      try {
        const r = await doctor();
        expect(r.stdout).toMatch(new RegExp(`^FAIL {2}Agent "claude": read role "${role}" has rolsuper`, 'm'));
        expect(r.stdout).toMatch(/check\(s\) failed: the read and write paths are not safe as they are/);
        expect(r.code).toBe(1);
      } finally {
        await superuser(`ALTER ROLE ${role} NOSUPERUSER`);
      }
    });
  });
});
