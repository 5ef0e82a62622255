/**
 * The audit trail end to end: what an agent's session leaves on the record,
 * and that a log that cannot be written stops the gateway from serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { readAuditTail } from '../src/state/file-audit-log.js';
import { verifyAuditLog } from '../src/state/audit-verify.js';
import type { AuditFileWriter } from '../src/state/file-audit-log.js';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';

const server = testServers()[0]!;

describe('the audit trail', () => {
  let db: TestDatabase;
  let airlock: TestAirlock;
  let failWrites = false;

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    airlock = await startTestAirlock(server, db, {
      auditOptions: {
        wrapWriter: (inner: AuditFileWriter): AuditFileWriter => ({
          write: (data) => (failWrites ? Promise.reject(new Error('disk full (simulated)')) : inner.write(data)),
          sync: () => inner.sync(),
          close: () => inner.close(),
        }),
      },
    });
  });

  afterAll(async () => {
    await airlock?.close().catch(() => undefined);
    await db?.drop();
  });

  it('records each statement with its agent, decision, rule, rows and parameters, on a valid chain', async () => {
    const client = new pg.Client(airlock.clientConfig());
    await client.connect();
    await client.query('SELECT id FROM companies WHERE id <= $1', [3]);
    await client.query('DELETE FROM executives').catch(() => undefined);
    await client.end();
    await airlock.audit.flush();
    const { records } = await readAuditTail(airlock.stateDir, 50);
    const read = records.find((r) => r.text === 'SELECT id FROM companies WHERE id <= $1');
    expect(read).toMatchObject({ event: 'statement', agent: 'claude', decision: 'allow', rule: 'read', rows: 3, params: ['3'] });
    expect(read?.fingerprint).toMatch(/^[0-9a-f]+$/);
    const refused = records.find((r) => r.text === 'DELETE FROM executives');
    expect(refused).toMatchObject({ event: 'statement', agent: 'claude', decision: 'deny', rule: 'write', sqlstate: '42501' });
    expect(records.some((r) => r.event === 'connect' && r.agent === 'claude')).toBe(true);
    expect(await verifyAuditLog(airlock.stateDir)).toMatchObject({ ok: true });
  });

  it('refuses statements, loudly, once the log cannot be written', async () => {
    const client = new pg.Client(airlock.clientConfig());
    await client.connect();
    try {
      // Classified once while the log is healthy (a miss is judged off the
      // event loop, and the log may go unhealthy while it waits).
      await client.query('SELECT 1');
      failWrites = true;
      // This one is served and queued (or, if a write already failed, refused
      // as the next one must be); its write fails, and the log goes unhealthy.
      const first = await client.query('SELECT 1').catch((e: unknown) => e as pg.DatabaseError);
      if (first instanceof Error) expect((first as pg.DatabaseError).code).toBe('58030');
      await airlock.audit.flush().catch(() => undefined);
      expect(airlock.audit.healthy).toBe(false);
      const err = await client.query('SELECT count(*) FROM companies').catch((e: unknown) => e as pg.DatabaseError);
      expect(err).toBeInstanceOf(Error);
      expect((err as pg.DatabaseError).code).toBe('58030');
      expect((err as pg.DatabaseError).message).toContain('audit log cannot be written');
    } finally {
      await client.end().catch(() => undefined);
    }
  });
});
