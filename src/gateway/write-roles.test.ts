/**
 * Write roles against real PostgreSQL servers: created with exactly the
 * privileges the rules could allow, repaired when tampered with, refused
 * when a membership would widen them, and manageable by a CREATEROLE service
 * account holding the table privileges WITH GRANT OPTION.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileAgentPolicy, DEFAULT_WRITE_LIMITS } from '../policy/rules.js';
import type { AgentPolicy, RuleConfig } from '../policy/rules.js';
import { dropRoles } from '../../test/support/drop-roles.js';
import { createTestDatabase, testServers, withClient } from '../../test/support/postgres-servers.js';
import type { TestDatabase, TestServer } from '../../test/support/postgres-servers.js';
import { prepareWriteRole, WriteRoleError } from './write-roles.js';

const SCHEMA = `
  CREATE TABLE public.tasks (id serial PRIMARY KEY, title text NOT NULL);
  CREATE TABLE public.notes (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text);
  CREATE TABLE public.companies (id int PRIMARY KEY, name text);
  CREATE TABLE public.scratch (x int);
  CREATE VIEW public.tasks_view AS SELECT * FROM public.tasks;
  CREATE VIEW public.companies_view AS SELECT * FROM public.companies;
  CREATE SCHEMA app;
  CREATE TABLE app.log (id bigserial PRIMARY KEY, line text);
  INSERT INTO public.companies VALUES (1, 'acme');
`;

function rule(index: number, r: Partial<RuleConfig> & Pick<RuleConfig, 'decision'>): RuleConfig {
  return { index, agents: null, kinds: null, tables: null, note: null, ...r };
}

/** ops (read-only profile) may insert and update tasks and the views over them, insert and delete notes, truncate scratch, create in app. */
const RULES: RuleConfig[] = [
  rule(0, { tables: ['public.companies'], decision: 'deny' }),
  rule(1, { kinds: ['insert', 'update'], tables: ['public.tasks', 'public.*_view'], decision: 'allow' }),
  rule(2, { kinds: ['insert', 'delete'], tables: ['public.notes'], decision: 'allow' }),
  rule(3, { kinds: ['truncate', 'drop'], tables: ['public.scratch'], decision: 'allow' }),
  rule(4, { kinds: ['create'], tables: ['app.*'], decision: 'allow' }),
];

const SETTINGS = { statementTimeoutMs: 45_000, lockTimeoutMs: 5_000, idleInTransactionMs: 30_000 };

const EXPECTED_TABLE_GRANTS = [
  'public.notes DELETE',
  'public.notes INSERT',
  'public.scratch TRUNCATE',
  'public.tasks INSERT',
  'public.tasks UPDATE',
  'public.tasks_view INSERT',
  'public.tasks_view UPDATE',
];

describe.each(testServers().map((s) => [s.name, s] as const))('write roles on the %s server', (_name, server: TestServer) => {
  let db: TestDatabase;
  let role: string;
  let policy: AgentPolicy;
  const password = 'write-role-test-password';
  const roles: string[] = [];

  async function superuser<T extends pg.QueryResultRow = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<T[]> {
    return withClient(db.url, async (c) => (await c.query<T>(sql, values)).rows);
  }

  async function prepare(as: { user: string; password: string } | null = null, name = role): Promise<{ warnings: string[] }> {
    const client = new pg.Client(
      as === null ? { connectionString: db.url } : { host: server.host, port: server.port, database: db.name, user: as.user, password: as.password },
    );
    await client.connect();
    try {
      return await prepareWriteRole(client, name, password, policy, SETTINGS);
    } finally {
      await client.end();
    }
  }

  async function tableGrants(name = role): Promise<string[]> {
    const rows = await superuser<{ g: string }>(
      `SELECT table_schema || '.' || table_name || ' ' || privilege_type AS g FROM information_schema.role_table_grants
        WHERE grantee = $1 ORDER BY 1`,
      [name],
    );
    return rows.map((r) => r.g);
  }

  /** Runs `sql` logged in as the write role with its password. */
  async function asRole(sql: string): Promise<pg.QueryResult | pg.DatabaseError> {
    const client = new pg.Client({ host: server.host, port: server.port, database: db.name, user: role, password });
    await client.connect();
    try {
      return await client.query(sql).catch((e: unknown) => e as pg.DatabaseError);
    } finally {
      await client.end();
    }
  }

  beforeAll(async () => {
    db = await createTestDatabase(server);
    await withClient(db.url, (c) => c.query(SCHEMA));
    role = `${db.name}_ops_w`;
    roles.push(role);
    policy = compileAgentPolicy({ name: 'ops', groups: [], profile: 'read-only', writeLimits: DEFAULT_WRITE_LIMITS }, RULES);
    expect(policy.mayWrite).toBe(true);
    await prepare();
  });

  afterAll(async () => {
    await db?.drop();
    // Newest first: the service account granted the last write role its membership (PostgreSQL 16+ records the grantor).
    await dropRoles(server, [...roles].reverse());
  });

  it('creates a LOGIN role without powers, a member of pg_read_all_data only, with its settings', async () => {
    const [attrs] = await superuser(
      'SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin, rolinherit FROM pg_roles WHERE rolname = $1',
      [role],
    );
    expect(attrs).toEqual({ rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolreplication: false, rolbypassrls: false, rolcanlogin: true, rolinherit: true });
    const members = await superuser<{ rolname: string }>(
      'SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1)',
      [role],
    );
    expect(members.map((m) => m.rolname)).toEqual(['pg_read_all_data']);
    const [settings] = await superuser<{ setconfig: string[] }>(
      'SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = 0 AND setrole = (SELECT oid FROM pg_roles WHERE rolname = $1)',
      [role],
    );
    expect([...settings!.setconfig].sort()).toEqual([
      'default_transaction_read_only=off',
      'idle_in_transaction_session_timeout=30000',
      'lock_timeout=5000',
      'search_path=public',
      'statement_timeout=45000',
    ]);
  });

  it('holds exactly the table, sequence and schema privileges its rules could allow', async () => {
    expect(await tableGrants()).toEqual(EXPECTED_TABLE_GRANTS);
    const [p] = await superuser(
      `SELECT has_sequence_privilege($1, 'public.tasks_id_seq', 'USAGE') AS serial_seq,
              has_sequence_privilege($1, 'app.log_id_seq', 'USAGE') AS other_seq,
              has_sequence_privilege($1, pg_get_serial_sequence('public.notes', 'id'), 'USAGE') AS identity_seq,
              has_schema_privilege($1, 'app', 'CREATE') AS create_app,
              has_schema_privilege($1, 'public', 'CREATE') AS create_public,
              has_table_privilege($1, 'public.companies', 'SELECT') AS reads`,
      [role],
    );
    // companies_view reads companies, which the rules deny: no grant on the view either.
    expect(p).toEqual({ serial_seq: true, other_seq: false, identity_seq: false, create_app: true, create_public: false, reads: true });
  });

  it('logs in with its password; PostgreSQL allows what the rules allow and refuses the rest', async () => {
    expect(await asRole("INSERT INTO tasks (title) VALUES ('a') RETURNING current_user AS u")).toMatchObject({ rows: [{ u: role }] });
    expect(await asRole("INSERT INTO notes (body) VALUES ('identity needs no sequence grant')")).toMatchObject({ rowCount: 1 });
    expect(await asRole("INSERT INTO tasks_view (title) VALUES ('through the view')")).toMatchObject({ rowCount: 1 });
    expect(await asRole('TRUNCATE scratch')).toMatchObject({ command: 'TRUNCATE' });
    expect(await asRole('CREATE TABLE app.made_by_agent (x int)')).toMatchObject({ command: 'CREATE' });
    for (const sql of [
      'DELETE FROM tasks WHERE false',
      "UPDATE companies SET name = 'x' WHERE id = 1",
      "INSERT INTO companies_view VALUES (2, 'through a view')",
      'CREATE TABLE public.t2 (x int)',
      // DROP needs ownership, which Airlock never grants, whatever the rules say.
      'DROP TABLE scratch',
      "INSERT INTO app.log (line) VALUES ('x')",
      "SELECT nextval('app.log_id_seq')",
    ]) {
      const err = await asRole(sql);
      expect(err, sql).toBeInstanceOf(Error);
      expect((err as pg.DatabaseError).code, sql).toBe('42501');
    }
    // What it created, it owns and may drop.
    expect(await asRole('DROP TABLE app.made_by_agent')).toMatchObject({ command: 'DROP' });
  });

  it('is repaired when tampered with: powers, extra grants (table, column, sequence, schema) and lost grants', async () => {
    await superuser(
      `ALTER ROLE ${role} SUPERUSER CREATEDB; GRANT DELETE, TRIGGER ON tasks TO ${role}; GRANT UPDATE (name) ON companies TO ${role};
       GRANT USAGE ON SEQUENCE app.log_id_seq TO ${role}; GRANT CREATE ON SCHEMA public TO ${role}; REVOKE INSERT ON tasks FROM ${role};
       ALTER ROLE ${role} SET default_transaction_read_only = on`,
    );
    expect(await tableGrants()).toContain('public.tasks DELETE');
    const { warnings } = await prepare();
    expect(warnings).toEqual([]);
    expect(await tableGrants()).toEqual(EXPECTED_TABLE_GRANTS);
    const [p] = await superuser(
      `SELECT r.rolsuper, r.rolcreatedb, has_sequence_privilege($1, 'app.log_id_seq', 'USAGE') AS seq,
              has_schema_privilege($1, 'public', 'CREATE') AS create_public,
              has_column_privilege($1, 'public.companies', 'name', 'UPDATE') AS col
         FROM pg_roles r WHERE r.rolname = $1`,
      [role],
    );
    expect(p).toEqual({ rolsuper: false, rolcreatedb: false, seq: false, create_public: false, col: false });
    expect(await asRole('SHOW default_transaction_read_only')).toMatchObject({ rows: [{ default_transaction_read_only: 'off' }] });
  });

  it('follows the schema: a table created later gets its grants on the next sync, one the rules do not name gets none', async () => {
    await superuser('DROP TABLE public.scratch; CREATE TABLE public.scratch (x int); CREATE TABLE public.other (x int)');
    expect(await tableGrants()).not.toContain('public.scratch TRUNCATE');
    await prepare();
    expect(await tableGrants()).toEqual(EXPECTED_TABLE_GRANTS);
  });

  it('refuses to go on when the role is a member of a role that may write, and warns about PUBLIC grants', async () => {
    await superuser(`GRANT pg_write_all_data TO ${role}`);
    try {
      const err = await prepare().catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(WriteRoleError);
      expect((err as Error).message).toContain(`REVOKE "pg_write_all_data" FROM "${role}"`);
    } finally {
      await superuser(`REVOKE pg_write_all_data FROM ${role}`);
    }
    await superuser('GRANT UPDATE ON companies TO PUBLIC');
    try {
      const { warnings } = await prepare();
      expect(warnings.join('\n')).toMatch(/may UPDATE on public\.companies through grants to PUBLIC/);
    } finally {
      await superuser('REVOKE UPDATE ON companies FROM PUBLIC');
    }
  });

  it('can be managed by a CREATEROLE service account holding the privileges WITH GRANT OPTION, and says what it lacks', async () => {
    const svc = `${db.name}_svc`;
    const svcPassword = 'service-account-test-password';
    roles.push(svc);
    const writer = `${db.name}_ops_w2`;
    roles.push(writer);
    await superuser(
      `CREATE ROLE ${svc} LOGIN CREATEROLE PASSWORD '${svcPassword}';
       GRANT pg_read_all_data TO ${svc} WITH ADMIN OPTION;
       GRANT INSERT, UPDATE ON public.tasks, public.tasks_view TO ${svc} WITH GRANT OPTION;
       GRANT USAGE ON SEQUENCE public.tasks_id_seq TO ${svc} WITH GRANT OPTION;
       GRANT TRUNCATE ON public.scratch TO ${svc} WITH GRANT OPTION;
       GRANT INSERT ON public.notes TO ${svc} WITH GRANT OPTION;
       GRANT CREATE ON SCHEMA app TO ${svc} WITH GRANT OPTION;`,
    );
    const { warnings } = await prepare({ user: svc, password: svcPassword }, writer);
    // DELETE on notes is the one privilege it could not grant: PostgreSQL will refuse those deletes, and the warning says so.
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`"${writer}" lacks DELETE ON TABLE public.notes`);
    expect(await tableGrants(writer)).toEqual(EXPECTED_TABLE_GRANTS.filter((g) => g !== 'public.notes DELETE'));
    // Tampered by the service account itself: repaired by it.
    await withClient(`postgres://${svc}:${svcPassword}@${server.host}:${server.port}/${db.name}`, async (c) => {
      await c.query(`REVOKE INSERT ON tasks FROM ${writer}`);
    });
    await superuser(`GRANT DELETE ON notes TO ${svc} WITH GRANT OPTION`);
    expect((await prepare({ user: svc, password: svcPassword }, writer)).warnings).toEqual([]);
    expect(await tableGrants(writer)).toEqual(EXPECTED_TABLE_GRANTS);
    // A table the write role created itself (its rules allow create in app): as its owner it holds
    // privileges its rules do not allow, which a non-superuser service account cannot take back.
    // Not fatal (Airlock still judges every statement), but said.
    await withClient(`postgres://${writer}:${password}@${server.host}:${server.port}/${db.name}`, async (c) => {
      await c.query('CREATE TABLE app.mine (x int)');
    });
    const owned = await prepare({ user: svc, password: svcPassword }, writer);
    expect(owned.warnings.join('\n')).toMatch(new RegExp(`"${writer}" owns app\\.mine and holds .*TRUNCATE on app\\.mine`));
  });
});
