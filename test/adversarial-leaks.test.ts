/**
 * Issue 11, item 6: reads that leak what a rule denies, through a real
 * Airlock on both servers. The planner's statistics (pg_stats and the
 * catalogs under it) hold sample values of every table, so they are refused
 * to an agent that may not read some table; the server's configuration
 * files (and the functions behind their views) are refused to every agent,
 * on the read path and the write path.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { openAgentSession } from './support/agent-session.js';
import type { AgentSession, Sendable } from './support/agent-session.js';

/** `claude` may not read api_keys; `auditor` may read everything; `writer` may write. */
const AGENTS = [
  { name: 'claude', password: 'claude-test-password' },
  { name: 'auditor', password: 'auditor-test-password' },
  { name: 'writer', password: 'writer-test-password', profile: 'read-write' },
];
const RULES = ['rules:', '  - { agents: [claude], kinds: [select], tables: [public.api_keys], decision: deny }'];

const STATISTICS: Sendable[] = [
  "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'api_keys'",
  "SELECT histogram_bounds::text FROM pg_catalog.pg_stats WHERE schemaname = 'public' AND tablename = 'api_keys'",
  "SELECT * FROM pg_stats WHERE (schemaname || '.' || tablename)::regclass = 'public.api_keys'::regclass",
  "SELECT stavalues1::text FROM pg_statistic WHERE starelid = 'api_keys'::regclass",
  'SELECT count(*) FROM pg_statistic_ext_data',
  'SELECT count(*) FROM pg_stats_ext',
  'SELECT count(*) FROM pg_stats_ext_exprs',
  'SELECT (SELECT most_common_vals::text FROM pg_stats LIMIT 1)',
  { text: 'SELECT most_common_vals::text FROM pg_stats WHERE tablename = $1', values: ['api_keys'] },
];

const CONFIGURATION: Sendable[] = [
  'SELECT * FROM pg_hba_file_rules',
  'SELECT * FROM pg_catalog.pg_hba_file_rules()',
  'SELECT * FROM pg_ident_file_mappings',
  'SELECT * FROM pg_ident_file_mappings()',
  'SELECT * FROM pg_file_settings',
  'SELECT name, setting FROM pg_catalog.pg_show_all_file_settings()',
  'SELECT * FROM pg_config()',
  'SELECT * FROM pg_config',
  { text: 'SELECT * FROM pg_show_all_file_settings() WHERE name = $1', values: ['primary_conninfo'] },
];

function label(s: Sendable): string {
  return typeof s === 'string' ? s : `${s.text} (extended protocol)`;
}

describe.each(testServers().map((s) => [s.name, s] as const))('reads that leak what a rule denies, on the %s server', (_name, server) => {
  let db: TestDatabase;
  let airlock: TestAirlock;
  const open: AgentSession[] = [];

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      // Statistics exist once the tables are analysed.
      await admin.query('ANALYZE');
      await admin.query('CREATE TABLE notes (id serial PRIMARY KEY, body text)');
      // Views a superuser schema owner made: they read with the owner's privileges.
      await admin.query('CREATE VIEW hba_rules AS SELECT * FROM pg_hba_file_rules()');
      await admin.query('CREATE VIEW role_secrets AS SELECT rolname, rolpassword FROM pg_authid');
      await admin.query("CREATE VIEW key_stats AS SELECT most_common_vals::text AS v FROM pg_stats WHERE tablename = 'api_keys'");
    } finally {
      await admin.end();
    }
    airlock = await startTestAirlock(server, db, { agents: AGENTS, extraYaml: RULES });
  });

  afterAll(async () => {
    for (const s of open) await s.close();
    await airlock?.close();
    await db?.drop();
  });

  async function session(agent: string): Promise<AgentSession> {
    const s = await openAgentSession(airlock.clientConfig(agent));
    open.push(s);
    return s;
  }

  /** Sends and expects Airlock's own refusal under `rule` (its detail names the rule; the server never saw it). */
  async function expectRefused(agent: string, what: Sendable, rule: string): Promise<void> {
    const s = await session(agent);
    const r = await s.send(what);
    expect(r.ok, label(what)).toBe(false);
    if (!r.ok) {
      const err = r.error as Error & { code?: string; detail?: string };
      expect(err.detail, label(what)).toContain(`Rule: ${rule}.`);
      expect(err.code).toBe('42501');
    }
  }

  it.each(STATISTICS.map((s) => [label(s), s] as const))('refuses %s to an agent a rule keeps from api_keys', async (_l, what) => {
    await expectRefused('claude', what, 'statistics-catalog');
  });

  it('says which rule keeps tables from the agent, and what a human can do', async () => {
    const s = await session('claude');
    const r = await s.send('SELECT * FROM pg_stats');
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.message).toContain('rules[0] keeps some tables from it');
      expect((r.error as Error & { hint?: string }).hint).toContain('may read every table');
    }
  });

  it("serves the statistics to an agent that may read every table (they are its tables' values anyway)", async () => {
    const s = await session('auditor');
    const r = await s.send("SELECT count(*)::int AS n FROM pg_stats WHERE schemaname = 'public'");
    expect(r.ok ? r.result.rows[0] : r.error.message).toEqual({ n: expect.any(Number) });
    if (r.ok) expect(r.result.rows[0].n).toBeGreaterThan(0);
  });

  it.each(CONFIGURATION.map((s) => [label(s), s] as const))('refuses %s to every agent', async (_l, what) => {
    for (const agent of ['claude', 'auditor', 'writer']) await expectRefused(agent, what, 'credential-catalog');
  });

  it('refuses views over them', async () => {
    await expectRefused('auditor', 'SELECT * FROM role_secrets', 'credential-catalog');
    await expectRefused('auditor', 'SELECT * FROM hba_rules', 'unsafe-view');
    await expectRefused('claude', 'SELECT * FROM key_stats', 'statistics-catalog');
    const s = await session('auditor');
    const r = await s.send('SELECT count(*)::int AS n FROM key_stats');
    expect(r.ok ? null : r.error.message).toBeNull();
  });

  it.each([
    "INSERT INTO notes (body) SELECT line_number::text FROM pg_hba_file_rules()",
    'INSERT INTO notes (body) SELECT setting FROM pg_catalog.pg_show_all_file_settings()',
    'INSERT INTO notes (body) SELECT setting FROM pg_file_settings',
  ])('refuses %s on the write path', async (sql) => {
    await expectRefused('writer', sql, 'credential-catalog');
  });
});
