/**
 * TLS between agents and Airlock: `sslmode=require` and `verify-full` work
 * when a certificate is configured, plaintext stays possible (TLS is the
 * client's choice), and bytes smuggled in before the handshake are refused.
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-SSL
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { selfSignedCert } from './support/certificates.js';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase, TestServer } from './support/postgres-servers.js';
import { DEFAULT_AGENT, startTestAirlock } from './support/airlock.js';
import type { TestAgent, TestAirlock } from './support/airlock.js';
import { dropRoles, readRolesOf } from './support/drop-roles.js';
import { runProcess } from './support/run-process.js';
import { parseErrorFields } from '../src/protocol/backend.js';
import { encodeSslRequest, encodeStartupMessage } from '../src/protocol/startup.js';
import { WireClient, describeMessages } from './support/wire.js';

const PSQL = '/usr/bin/psql';
const [server] = testServers() as [TestServer, ...TestServer[]];
/** The plaintext-only instance gets an agent of its own: two instances for one agent rotate its read-role password. */
const PLAIN_AGENT: TestAgent = { name: 'plain', password: 'plain-test-password' };


/** Whether a node-postgres client's connection runs over TLS (its socket is a TLSSocket). */
function encrypted(client: pg.Client): boolean {
  // `connection.stream` is not in node-postgres's typings; it is the socket the client talks over.
  const stream = (client as unknown as { connection: { stream: net.Socket & { encrypted?: boolean } } }).connection.stream;
  return stream.encrypted === true;
}

describe(`TLS to Airlock (${server.name} server behind it)`, () => {
  let dir: string;
  let db: TestDatabase;
  let airlock: TestAirlock;
  let plain: TestAirlock;
  let cert: string;
  let otherCert: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-tls-'));
    const [served, other] = await Promise.all([selfSignedCert(dir, 'airlock'), selfSignedCert(dir, 'other')]);
    cert = served.cert;
    otherCert = other.cert;
    db = await createTestDatabase(server, { seed: true });
    airlock = await startTestAirlock(server, db, {
      extraYaml: ['tls:', `  cert: ${JSON.stringify(served.cert)}`, `  key: ${JSON.stringify(served.key)}`],
    });
    plain = await startTestAirlock(server, db, { agents: [PLAIN_AGENT] });
  });

  afterAll(async () => {
    await airlock?.close();
    await plain?.close();
    await db?.drop();
    await dropRoles(server, readRolesOf(airlock, plain));
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const url = (sslmode: string, target: TestAirlock = airlock): string => target.url().replace('sslmode=disable', `sslmode=${sslmode}`);

  /** A libpq keyword string that checks the certificate against `rootCert` and the name localhost. */
  const verifyFull = (rootCert: string): string =>
    `host=localhost hostaddr=127.0.0.1 port=${airlock.port} user=${DEFAULT_AGENT.name} password=${DEFAULT_AGENT.password} ` +
    `dbname=${db.name} sslmode=verify-full sslrootcert=${rootCert}`;

  it('serves psql with sslmode=require over TLS', async () => {
    const r = await runProcess(PSQL, ['-X', '-v', 'ON_ERROR_STOP=1', url('require'), '-c', '\\conninfo', '-c', 'SELECT count(*) AS n FROM executives']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);
    expect(r.stdout).toMatch(/\n\s*1206\s*\n/);
  });

  it('presents the configured certificate (sslmode=verify-full with it as the root)', async () => {
    const ok = await runProcess(PSQL, ['-X', verifyFull(cert), '-c', 'SELECT 1 AS one']);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    const wrongRoot = await runProcess(PSQL, ['-X', verifyFull(otherCert), '-c', 'SELECT 1 AS one']);
    expect(wrongRoot.code).not.toBe(0);
    expect(wrongRoot.stderr).toMatch(/certificate verify failed/);
  });

  it('serves node-postgres over TLS', async () => {
    const client = new pg.Client({ ...airlock.clientConfig(), ssl: { rejectUnauthorized: false } });
    await client.connect();
    try {
      expect(encrypted(client)).toBe(true);
      const r = await client.query('SELECT count(*)::int AS n FROM companies WHERE id <= $1', [10]);
      expect(r.rows[0].n).toBe(10);
    } finally {
      await client.end();
    }
  });

  it('still serves plaintext clients (sslmode=disable) when TLS is configured', async () => {
    const r = await runProcess(PSQL, ['-X', url('disable'), '-c', '\\conninfo', '-c', 'SELECT 1 AS one']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('SSL connection');
    const client = new pg.Client({ ...airlock.clientConfig(), ssl: false });
    await client.connect();
    try {
      expect(encrypted(client)).toBe(false);
      expect((await client.query('SELECT 2 AS two')).rows[0].two).toBe(2);
    } finally {
      await client.end();
    }
  });

  it('answers an SSLRequest with S when TLS is configured and N when it is not', async () => {
    const tlsClient = await WireClient.connect(airlock.port);
    const plainClient = await WireClient.connect(plain.port);
    try {
      tlsClient.send(encodeSslRequest());
      plainClient.send(encodeSslRequest());
      expect(await tlsClient.readByte()).toBe('S');
      expect(await plainClient.readByte()).toBe('N');
      // After N the same connection goes on in plaintext, as the protocol says.
      const session = await plainClient.login(plain.clientConfig(PLAIN_AGENT.name));
      expect(session.processId).toBeGreaterThan(0);
    } finally {
      tlsClient.destroy();
      plainClient.destroy();
    }
  });

  it('refuses sslmode=require against an instance without TLS', async () => {
    const r = await runProcess(PSQL, ['-X', url('require', plain), '-c', 'SELECT 1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('server does not support SSL, but SSL was required');
  });

  it('refuses bytes sent right after an SSLRequest, before the handshake (CVE-2021-23214)', async () => {
    const client = await WireClient.connect(airlock.port);
    try {
      client.send(encodeSslRequest(), encodeStartupMessage({ user: DEFAULT_AGENT.name, database: db.name }));
      const messages = await client.rest();
      expect(client.closed).toBe(true);
      // One ErrorResponse and no 'S': the server must not start a handshake whose plaintext prefix a man in the middle wrote.
      expect(messages.map((m) => m.type), describeMessages(messages)).toEqual(['E']);
      const fields = parseErrorFields(messages[0]!.body);
      expect(fields.get('S')).toBe('FATAL');
      expect(fields.get('C')).toBe('08P01');
      expect(fields.get('M')).toContain('data was sent after SSLRequest, before the TLS handshake');
    } finally {
      client.destroy();
    }
  });
});
