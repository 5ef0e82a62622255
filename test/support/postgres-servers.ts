/**
 * The PostgreSQL servers a test may use, and throwaway databases on them.
 * Test files run in parallel processes against the same servers: every
 * database, role or other cluster-wide thing a test creates needs a unique
 * name (`uniqueName`), and is dropped again.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { seedDemo } from '../../src/demo/seed.js';
import type { ProvidedServer } from '../global-setup.js';

export const TEST_SERVER_NAMES = ['embedded', 'local'] as const;
export type TestServerName = (typeof TEST_SERVER_NAMES)[number];

export interface TestServer {
  /** `embedded`: PostgreSQL 18 started for this run. `local`: the machine's own server (PostgreSQL 15 here). */
  name: TestServerName;
  host: string;
  port: number;
  /** A superuser. */
  user: string;
  /** null when the server trusts local connections. */
  password: string | null;
  /** The superuser's URL to `db` (default `postgres`). */
  adminUrl(db?: string): string;
}

export interface TestDatabase {
  name: string;
  /** The superuser's URL to this database. */
  url: string;
  /** Ends whatever still uses the database (sessions, prepared transactions, slots) and drops it. */
  drop(): Promise<void>;
}

/** The embedded server always; the local one when the global setup found it. */
export function testServers(): TestServer[] {
  const servers: TestServer[] = [toTestServer('embedded', inject('airlockEmbeddedPostgres'))];
  const local = inject('airlockLocalPostgres');
  if (local !== null) servers.push(toTestServer('local', local));
  return servers;
}

/** Names made by `uniqueName()` with its default prefix, and names derived from them (`<name>_reader`). */
export const UNIQUE_NAME_PATTERN = /^airlock_t_[0-9a-f]{12}(_|$)/;

/** A name no other test (in any process) uses: `<prefix>_<12 hex digits>`, a valid unquoted identifier. */
export function uniqueName(prefix = 'airlock_t'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** Creates a fresh database, seeded with the demo company when asked. */
export async function createTestDatabase(server: TestServer, opts: { seed?: boolean } = {}): Promise<TestDatabase> {
  const name = uniqueName();
  await withClient(server.adminUrl(), async (admin) => {
    await createDatabaseRetrying(admin, name);
  });
  const url = server.adminUrl(name);
  const drop = () => dropTestDatabase(server, name);
  if (opts.seed) {
    try {
      await seedDemo(url);
    } catch (error) {
      await drop();
      throw error;
    }
  }
  return { name, url, drop };
}

function toTestServer(name: TestServerName, provided: ProvidedServer): TestServer {
  const { host, port, user, password } = provided;
  const auth = password === null ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
  return {
    name,
    host,
    port,
    user,
    password,
    adminUrl: (db = 'postgres') => `postgres://${auth}@${host}:${port}/${encodeURIComponent(db)}`,
  };
}

/** SQLSTATE 55006 object_in_use: someone is connected to template1, which CREATE DATABASE copies. */
const OBJECT_IN_USE = '55006';
const CREATE_ATTEMPTS = 10;

async function createDatabaseRetrying(admin: pg.Client, name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await admin.query(`CREATE DATABASE ${name}`);
      return;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code !== OBJECT_IN_USE || attempt >= CREATE_ATTEMPTS) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }
}

/**
 * DROP DATABASE … WITH (FORCE) ends other sessions but refuses while the
 * database has prepared transactions or logical replication slots, which
 * adversarial tests may leave behind on purpose; clear those from inside it first.
 * @see https://www.postgresql.org/docs/current/sql-dropdatabase.html
 */
async function dropTestDatabase(server: TestServer, name: string): Promise<void> {
  const present = await withClient(server.adminUrl(), async (admin) => {
    const result = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return result.rowCount === 1;
  });
  if (!present) return;
  await withClient(server.adminUrl(name), async (db) => {
    const prepared = await db.query<{ gid: string }>(
      'SELECT gid FROM pg_prepared_xacts WHERE database = current_database()',
    );
    for (const { gid } of prepared.rows) await db.query(`ROLLBACK PREPARED ${db.escapeLiteral(gid)}`);
    await db.query(
      'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active',
    );
  });
  await withClient(server.adminUrl(), async (admin) => {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
}

/** Runs `use` on a node-postgres client of its own (to `url`), closed afterwards. */
export async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}
