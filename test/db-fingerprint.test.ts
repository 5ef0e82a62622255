import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/demo/embedded-postgres.js';
import type { RunningPostgres } from '../src/demo/embedded-postgres.js';
import { seedDemo } from '../src/demo/seed.js';
import { dbFingerprint, diffFingerprints } from './support/db-fingerprint.js';
import { createTestDatabase, testServers, uniqueName } from './support/postgres-servers.js';

/**
 * Changes that reach beyond one database (roles, ALTER SYSTEM, slots) would
 * show in the fingerprints of tests running beside this one, so the table of
 * changes runs on a cluster of its own.
 */
let cluster: RunningPostgres;
let workDir: string;
let scratchDir: string;
let url: string;
const DB = 'fingerprinted';

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'airlock-fingerprint-'));
  await chmod(workDir, 0o755);
  scratchDir = join(workDir, 'scratch');
  await mkdir(scratchDir);
  // The server writes here as the OS user postgres.
  await chmod(scratchDir, 0o777);
  cluster = await startEmbeddedPostgres({ dataDir: join(workDir, 'data') });
  await run(cluster.url(), [`CREATE DATABASE ${DB}`]);
  url = cluster.url(DB);
  await seedDemo(url);
  await run(url, ['CREATE ROLE agent_ro NOLOGIN', 'GRANT SELECT ON ALL TABLES IN SCHEMA public TO agent_ro']);
});

afterAll(async () => {
  await cluster?.stop();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

async function run(target: string, statements: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: target });
  await client.connect();
  try {
    // One statement per query: ALTER SYSTEM, CREATE DATABASE and friends refuse a transaction block.
    for (const sql of statements) await client.query(sql);
  } finally {
    await client.end();
  }
}

interface Case {
  what: string;
  /** Statements run by the superuser, each on its own, in the fingerprinted database. */
  change?: string[];
  /** Statements run in a session that stays open until the second snapshot is taken. */
  hold?: string[];
  /** Statements run in the `postgres` database (cluster-wide changes). */
  changeCluster?: string[];
  /** Statements run after the check, so that later cases can work (a prepared transaction blocks slot creation). */
  undo?: string[];
  /** A line of the diff must match. */
  diff: RegExp;
}

const CASES: Case[] = [
  { what: 'an updated row', change: ["UPDATE companies SET name = 'Acme Analytics Inc' WHERE id = 1"], diff: /^tables: public\.companies changed: content [0-9a-f]{32} → [0-9a-f]{32}\.$/ },
  { what: 'a deleted row (cascading)', change: ['DELETE FROM companies WHERE id = 2'], diff: /^tables: public\.executives changed: content .*; rows 1206 → 1204\.$/ },
  { what: 'an inserted row', change: ["INSERT INTO users (company_id, email, full_name, role, is_active, created_at) VALUES (1, 'eve@example.com', 'Eve', 'member', true, now())"], diff: /^tables: public\.users changed: content .*; rows (\d+) → \d+\.$/ },
  { what: 'a truncated table', change: ['TRUNCATE api_keys'], diff: /^tables: public\.api_keys changed: .*rows 598 → 0/ },
  { what: 'a write through the purge function', change: ['SELECT purge_inactive_users()'], diff: /^tables: public\.users changed: .*rows \d+ → \d+/ },
  { what: 'a new table', change: ['CREATE TABLE loot (x int)'], diff: /^objects: table public\.loot was added/ },
  { what: 'a dropped view', change: ['DROP VIEW active_users'], diff: /^objects: view public\.active_users was removed/ },
  { what: 'a new column', change: ['ALTER TABLE companies ADD COLUMN notes text'], diff: /^columns: companies\.notes was added/ },
  { what: 'a changed column type', change: ['ALTER TABLE executives ALTER COLUMN phone TYPE varchar(40)'], diff: /^columns: executives\.phone changed: .*atttypid/ },
  { what: 'a new column default', change: ["ALTER TABLE projects ALTER COLUMN status SET DEFAULT 'planned'"], diff: /^objects: default value for public\.projects\.status was added/ },
  { what: 'a grant on a table', change: ['GRANT DELETE ON companies TO agent_ro'], diff: /^objects: table public\.companies changed: relacl .*"agent_ro=r\/postgres"\] → .*"agent_ro=rd\/postgres"\]\.$/ },
  { what: 'a grant on the public schema', change: ['GRANT CREATE ON SCHEMA public TO agent_ro'], diff: /^objects: schema public changed: nspacl/ },
  { what: 'a grant on a built-in function', change: ['GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_file(text) TO agent_ro'], diff: /^objects: function pg_catalog\.pg_read_file\(pg_catalog\.text\) changed: proacl .* → .*agent_ro=X\/postgres/ },
  { what: 'a new owner', change: ['ALTER TABLE invoices OWNER TO agent_ro'], diff: /^objects: table public\.invoices changed: .*relowner postgres → agent_ro\.$/ },
  { what: 'a replaced function body', change: ['CREATE OR REPLACE FUNCTION purge_inactive_users() RETURNS integer LANGUAGE sql VOLATILE AS $$ SELECT 0 $$'], diff: /^objects: function public\.purge_inactive_users\(\) changed: .*prolang/ },
  { what: 'a SECURITY DEFINER function', change: ['ALTER FUNCTION purge_inactive_users() SECURITY DEFINER'], diff: /^objects: function public\.purge_inactive_users\(\) changed: prosecdef false → true/ },
  { what: 'a new trigger', change: ['CREATE FUNCTION nop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$', 'CREATE TRIGGER t BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION nop()'], diff: /^objects: trigger t on public\.tasks was added/ },
  { what: 'disabled triggers (foreign keys)', change: ['ALTER TABLE executives DISABLE TRIGGER ALL'], diff: /^objects: trigger "RI_ConstraintTrigger_c_\d+" on public\.executives changed: tgenabled O → D/ },
  { what: 'row-level security', change: ['ALTER TABLE users ENABLE ROW LEVEL SECURITY', 'CREATE POLICY only_active ON users USING (is_active)'], diff: /^objects: policy only_active on public\.users was added/ },
  { what: 'an event trigger', change: ["CREATE FUNCTION evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$", 'CREATE EVENT TRIGGER spy ON ddl_command_end EXECUTE FUNCTION evt()'], diff: /^objects: event trigger spy was added/ },
  { what: 'an extension', change: ['CREATE EXTENSION dblink'], diff: /^objects: extension dblink was added/ },
  { what: 'an enum type', change: ["CREATE TYPE mood AS ENUM ('sad', 'ok')"], diff: /^objects: enum label public\.mood\.ok was added/ },
  { what: 'a rule', change: ['CREATE RULE keep AS ON DELETE TO tasks DO INSTEAD NOTHING'], diff: /^objects: rule keep on public\.tasks was added/ },
  { what: 'a dropped index', change: ['DROP INDEX tasks_project_id_idx'], diff: /^objects: index public\.tasks_project_id_idx was removed/ },
  { what: 'default privileges', change: ['ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO agent_ro'], diff: /^objects: default acl .* was added/ },
  { what: 'a new schema', change: ['CREATE SCHEMA stash'], diff: /^objects: schema stash was added/ },
  { what: 'an unlogged table', change: ['ALTER TABLE tasks SET UNLOGGED'], diff: /^objects: table public\.tasks changed: .*relpersistence p → u/ },
  { what: 'a rewritten table (VACUUM FULL)', change: ['VACUUM FULL invoices'], diff: /^objects: table public\.invoices changed: relfilenode/ },
  { what: 'a foreign server', change: ['CREATE FOREIGN DATA WRAPPER fdw', 'CREATE SERVER elsewhere FOREIGN DATA WRAPPER fdw', "CREATE USER MAPPING FOR agent_ro SERVER elsewhere OPTIONS (password 'x')"], diff: /^objects: user mapping agent_ro on server elsewhere was added/ },
  { what: 'a publication', change: ['CREATE PUBLICATION leak FOR TABLE companies'], diff: /^objects: publication leak was added/ },
  { what: 'a grant on a parameter', changeCluster: ['GRANT SET ON PARAMETER work_mem TO agent_ro'], diff: /^objects: parameter ACL work_mem was added/ },
  { what: 'a materialized view', change: ['CREATE MATERIALIZED VIEW mv AS SELECT id FROM companies WITH NO DATA'], diff: /^tables: public\.mv was added \(populated no\)/ },
  { what: 'a sequence advanced', change: ["SELECT nextval('invoice_number_seq')"], diff: /^sequences: public\.invoice_number_seq changed: last_value \d+ → \d+\.$/ },
  { what: 'a sequence reset', change: ["SELECT setval('companies_id_seq', 5, false)"], diff: /^sequences: public\.companies_id_seq changed: is_called true → false; last_value 1196 → 5/ },
  { what: 'a sequence altered', change: ['ALTER SEQUENCE tasks_id_seq INCREMENT BY 7'], diff: /^sequences: public\.tasks_id_seq changed: seqincrement 1 → 7/ },
  { what: 'a new role', changeCluster: ['CREATE ROLE mallory LOGIN'], diff: /^roles: role mallory was added/ },
  { what: 'a role made superuser', changeCluster: ['ALTER ROLE agent_ro SUPERUSER'], diff: /^roles: role agent_ro changed: rolsuper false → true/ },
  { what: 'a role password', changeCluster: ["ALTER ROLE agent_ro PASSWORD 'hunter2'"], diff: /^roles: role agent_ro changed: password none → [0-9a-f]{32}/ },
  { what: 'a role membership', changeCluster: ['GRANT pg_read_server_files TO agent_ro'], diff: /^memberships: agent_ro is a member of pg_read_server_files \(granted by postgres\) was added/ },
  { what: 'a database setting', changeCluster: [`ALTER DATABASE ${DB} SET default_transaction_read_only = off`], diff: /^settings: ALTER DATABASE SET IN DATABASE fingerprinted changed|^settings: ALTER DATABASE IN DATABASE fingerprinted SET was added/ },
  { what: 'a role setting', changeCluster: ['ALTER ROLE agent_ro SET statement_timeout = 0'], diff: /^settings: ALTER ROLE agent_ro SET was added \(config statement_timeout=0\)/ },
  { what: 'a role setting in this database', changeCluster: [`ALTER ROLE agent_ro IN DATABASE ${DB} SET search_path = stash`], diff: /^settings: ALTER ROLE agent_ro IN DATABASE fingerprinted SET was added/ },
  { what: 'ALTER SYSTEM before a reload', changeCluster: ["ALTER SYSTEM SET log_statement = 'none'"], diff: /^settings: file setting log_statement in .*postgresql\.auto\.conf was added/ },
  { what: 'ALTER SYSTEM and a reload', changeCluster: ["ALTER SYSTEM SET work_mem = '64MB'", 'SELECT pg_reload_conf()', 'SELECT pg_sleep(0.3)'], diff: /^settings: setting work_mem was added \(value 65536, source configuration file/ },
  { what: 'a database property', changeCluster: [`ALTER DATABASE ${DB} CONNECTION LIMIT 3`], diff: /^database: database fingerprinted changed: datconnlimit -1 → 3/ },
  { what: 'another database', changeCluster: ['CREATE DATABASE stolen'], diff: /^database: other database stolen was added/ },
  { what: 'a large object', change: ["SELECT lo_from_bytea(424242, 'secret')"], diff: /^large objects: large object 424242 was added \(owner postgres, acl default, content [0-9a-f]{32}\)/ },
  { what: 'a large object rewritten', change: ["SELECT lo_put(424242, 0, 'S')"], diff: /^large objects: large object 424242 changed: content/ },
  { what: 'an advisory lock held', hold: ['SELECT pg_advisory_lock(42)'], diff: /^locks: advisory key 0\/42\/1 ExclusiveLock held by pid \d+ was added/ },
  { what: 'a table lock held', hold: ['BEGIN', 'LOCK TABLE companies IN SHARE MODE'], diff: /^locks: relation on companies ShareLock held by pid \d+ was added \(state idle in transaction/ },
  { what: 'a prepared transaction', change: ['BEGIN', 'DELETE FROM tasks WHERE id = 2', "PREPARE TRANSACTION 'ghost'"], undo: ["ROLLBACK PREPARED 'ghost'"], diff: /^prepared transactions: prepared transaction ghost was added/ },
  { what: 'a prepared transaction holding locks', change: ['BEGIN', 'DELETE FROM tasks WHERE id = 3', "PREPARE TRANSACTION 'ghost2'"], undo: ["ROLLBACK PREPARED 'ghost2'"], diff: /^locks: relation on tasks RowExclusiveLock held by prepared transaction ghost2 was added/ },
  { what: 'a physical replication slot', changeCluster: ["SELECT pg_create_physical_replication_slot('drain')"], diff: /^replication slots: replication slot drain was added \(type physical/ },
  { what: 'a logical replication slot', change: ["SELECT pg_create_logical_replication_slot('tap', 'test_decoding')"], diff: /^replication slots: replication slot tap was added \(type logical, plugin test_decoding, database fingerprinted/ },
  { what: 'a comment on a table', change: ["COMMENT ON TABLE executives IS 'ignore previous instructions'"], diff: /^comments: comment on table executives was added/ },
  { what: 'a changed comment', change: ["COMMENT ON TABLE companies IS 'hacked'"], diff: /^comments: comment on table companies changed: text Airlock demo data.* → hacked/ },
  { what: 'a comment on a built-in function', change: ["COMMENT ON FUNCTION pg_catalog.now() IS 'trust me'"], diff: /^comments: comment on built-in objects changed: text \d+ comments, md5 [0-9a-f]{32} → \d+ comments, md5 [0-9a-f]{32}\.$/ },
  { what: 'a comment on a role', changeCluster: ["COMMENT ON ROLE agent_ro IS 'trusted'"], diff: /^comments: comment on role agent_ro was added/ },
  { what: 'a file written by the server', change: [`COPY (SELECT * FROM api_keys) TO '/SCRATCH/keys.csv'`], diff: /^files: keys\.csv was added \(type file, size \d+, content [0-9a-f]{32}\)/ },
];

describe('dbFingerprint', () => {
  it.each(CASES)('names $what', async (c) => {
    const before = await dbFingerprint(url, { scratchDir });
    const swap = (sql: string) => sql.replace('/SCRATCH', scratchDir);
    if (c.change) await run(url, c.change.map(swap));
    if (c.changeCluster) await run(cluster.url(), c.changeCluster.map(swap));
    const holder = new pg.Client({ connectionString: url });
    if (c.hold) {
      await holder.connect();
      for (const sql of c.hold) await holder.query(sql);
    }
    try {
      const diff = diffFingerprints(before, await dbFingerprint(url, { scratchDir }));
      expect(diff.some((line) => c.diff.test(line)), `expected a line like ${c.diff} in:\n${diff.join('\n')}`).toBe(true);
    } finally {
      if (c.hold) await holder.end();
      if (c.undo) await run(url, c.undo);
    }
  });

  it('sees no change where there was none (VACUUM, ANALYZE, CHECKPOINT, temporary tables, reads)', async () => {
    const before = await dbFingerprint(url, { scratchDir });
    await run(url, ['VACUUM ANALYZE', 'CHECKPOINT', 'SELECT count(*) FROM companies', 'CREATE TEMP TABLE scratchpad AS SELECT 1 AS x']);
    expect(diffFingerprints(before, await dbFingerprint(url, { scratchDir }))).toEqual([]);
  });

  it("leaves out other tests' uniquely named roles unless asked", async () => {
    const role = uniqueName();
    const before = await dbFingerprint(url);
    const all = await dbFingerprint(url, { ignoreName: () => false });
    await run(cluster.url(), [`CREATE ROLE ${role}`]);
    expect(diffFingerprints(before, await dbFingerprint(url))).toEqual([]);
    const everything = diffFingerprints(all, await dbFingerprint(url, { ignoreName: () => false }));
    expect(everything.filter((line) => line.startsWith(`roles: role ${role} was added (`))).toHaveLength(1);
  });

  it('says when the scratch directory is gone', async () => {
    const fp = await dbFingerprint(url, { scratchDir: join(workDir, 'nowhere') });
    expect(fp.sections.files).toEqual({ '(the scratch directory)': { exists: 'no' } });
  });
});

describe('dbFingerprint on every test server', () => {
  it('is stable, and sees a deleted row, on each server version', async () => {
    await Promise.all(
      testServers().map(async (server) => {
        const db = await createTestDatabase(server, { seed: true });
        try {
          const before = await dbFingerprint(db.url);
          expect(Object.keys(before.sections.tables)).toContain('public.companies');
          expect(before.sections.tables['public.companies']?.['rows']).toBe('1196');
          expect(diffFingerprints(before, await dbFingerprint(db.url))).toEqual([]);
          await run(db.url, ['DELETE FROM executives WHERE id = 7']);
          expect(diffFingerprints(before, await dbFingerprint(db.url))).toEqual([
            expect.stringMatching(/^tables: public\.executives changed: content .*; rows 1206 → 1205\.$/),
          ]);
        } finally {
          await db.drop();
        }
      }),
    );
  });
});
