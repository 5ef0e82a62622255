/**
 * Vitest's global setup: one embedded PostgreSQL 18 for the whole run, and a
 * probe of the machine's own PostgreSQL. Tests reach both through
 * `test/support/postgres-servers.ts`, each in a database of its own.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../src/demo/embedded-postgres.js';
import type { RunningPostgres } from '../src/demo/embedded-postgres.js';

/** How a test reaches a server as its superuser. */
export interface ProvidedServer {
  host: string;
  port: number;
  user: string;
  /** null: the server trusts local TCP connections. */
  password: string | null;
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** The run's embedded PostgreSQL 18 (SCRAM-SHA-256, random superuser password). */
    airlockEmbeddedPostgres: ProvidedServer;
    /** The machine's PostgreSQL at 127.0.0.1:5432, or null when it is absent or disabled (AIRLOCK_TEST_LOCAL_PG=0). */
    airlockLocalPostgres: ProvidedServer | null;
  }
}

const LOCAL: ProvidedServer = { host: '127.0.0.1', port: 5432, user: 'postgres', password: null };
const LOCAL_PROBE_TIMEOUT_MS = 2_000;

let server: RunningPostgres | undefined;
let workDir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  workDir = await mkdtemp(join(tmpdir(), 'airlock-test-pg-'));
  // As root, the server runs as the OS user postgres, which must enter this directory.
  await chmod(workDir, 0o755);
  const dir = workDir;
  const [embedded, local] = await Promise.all([
    startEmbeddedPostgres({ dataDir: join(dir, 'data'), persistent: false }),
    probeLocalPostgres(),
  ]).catch(async (error: unknown) => {
    // Vitest does not call teardown when setup fails: leave no temp dir behind.
    await rm(dir, { recursive: true, force: true });
    throw error;
  });
  server = embedded;
  project.provide('airlockEmbeddedPostgres', {
    host: embedded.host,
    port: embedded.port,
    user: embedded.user,
    password: embedded.password,
  });
  project.provide('airlockLocalPostgres', local);
}

export async function teardown(): Promise<void> {
  await server?.stop();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
}

async function probeLocalPostgres(): Promise<ProvidedServer | null> {
  if (process.env['AIRLOCK_TEST_LOCAL_PG'] === '0') return null;
  const client = new pg.Client({
    host: LOCAL.host,
    port: LOCAL.port,
    user: LOCAL.user,
    database: 'postgres',
    connectionTimeoutMillis: LOCAL_PROBE_TIMEOUT_MS,
  });
  // A late socket error after the probe gave up is expected; the probe's answer is already "absent".
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    // Absent, refusing, or asking for a password: tests that want it run on the embedded server only.
    if (!(error instanceof Error)) throw error;
    return null;
  }
  try {
    await client.query('SELECT 1');
    return LOCAL;
  } finally {
    await client.end();
  }
}
