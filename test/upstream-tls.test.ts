/**
 * Airlock's own connections to the upstream over TLS, checked as libpq's
 * sslmode=verify-full does: the service account's and every agent session's.
 */
import { execFileSync } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/demo/embedded-postgres.js';
import type { RunningPostgres } from '../src/demo/embedded-postgres.js';
import { createTestDatabase } from './support/postgres-servers.js';
import type { TestDatabase, TestServer } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import { caSignedServerCert } from './support/certificates.js';

describe('TLS to the upstream', () => {
  let workDir: string;
  let postgres: RunningPostgres;
  let server: TestServer;
  let db: TestDatabase;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'airlock-upstream-tls-'));
    // As root, the server runs as the OS user postgres, which must enter this directory.
    await chmod(workDir, 0o755);
    const dataDir = join(workDir, 'data');
    postgres = await startEmbeddedPostgres({ dataDir, persistent: true });
    const certs = join(workDir, 'certs');
    await mkdir(certs);
    await caSignedServerCert(certs);
    for (const f of ['server.crt', 'server.key']) {
      await copyFile(join(certs, f), join(dataDir, f));
      await chmod(join(dataDir, f), 0o600);
      if (process.getuid?.() === 0) {
        const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
        const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
        await chown(join(dataDir, f), uid, gid);
      }
    }
    const admin = new pg.Client({ connectionString: postgres.url() });
    await admin.connect();
    await admin.query("ALTER SYSTEM SET ssl_cert_file = 'server.crt'");
    await admin.query("ALTER SYSTEM SET ssl_key_file = 'server.key'");
    await admin.query('ALTER SYSTEM SET ssl = on');
    await admin.query('SELECT pg_reload_conf()');
    await admin.end();
    const p = postgres;
    server = { name: 'embedded', host: p.host, port: p.port, user: p.user, password: p.password, adminUrl: (d = 'postgres') => p.url(d) };
    db = await createTestDatabase(server, { seed: true });
  }, 120_000);

  afterAll(async () => {
    await db?.drop();
    await postgres?.stop();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it('with sslmode=verify-full, serves reads over encrypted upstream connections', async () => {
    const airlock = await startTestAirlock(server, db, {
      upstreamQuery: `sslmode=verify-full&sslrootcert=${encodeURIComponent(join(workDir, 'certs', 'ca.crt'))}`,
    });
    try {
      const client = new pg.Client(airlock.clientConfig());
      await client.connect();
      const r = await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      expect(r.rows[0].ssl).toBe(true);
      expect((await client.query('SELECT count(*)::int AS n FROM companies')).rows[0].n).toBe(1196);
      await client.end();
    } finally {
      await airlock.close();
    }
  });

  it('refuses to start when the upstream certificate is not signed by sslrootcert', async () => {
    await expect(
      startTestAirlock(server, db, {
        upstreamQuery: `sslmode=verify-full&sslrootcert=${encodeURIComponent(join(workDir, 'certs', 'other-ca.crt'))}`,
      }),
    ).rejects.toThrow(/service account/);
  });
});
