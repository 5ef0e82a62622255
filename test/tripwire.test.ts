/**
 * Canary tables and the tripwire, end to end: a refused statement, a record,
 * and a webhook a local HTTP listener receives.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { readAuditTail } from '../src/state/file-audit-log.js';
import { createTestDatabase, testServers } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';

const server = testServers()[0]!;

describe('canary tables and the tripwire', () => {
  let db: TestDatabase;
  let hook: Server;
  const received: { path: string; body: Record<string, unknown> }[] = [];
  let airlock: TestAirlock;
  let hookUrl: string;

  beforeAll(async () => {
    db = await createTestDatabase(server, { seed: true });
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query('CREATE VIEW public.key_summary AS SELECT id, created_at FROM public.api_keys');
    await admin.end();
    hook = createServer((req, res) => {
      let data = '';
      req.on('data', (c: Buffer) => (data += c.toString()));
      req.on('end', () => {
        received.push({ path: req.url ?? '', body: JSON.parse(data) as Record<string, unknown> });
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}`;
    airlock = await startTestAirlock(server, db, {
      extraYaml: [
        'canary_tables: [public.api_keys, public.nothing_like_this]',
        'tripwire:',
        '  refusals: 3',
        '  window_seconds: 600',
        '  webhook:',
        `    url: ${hookUrl}/json`,
      ],
    });
  });

  afterAll(async () => {
    await airlock?.close();
    await new Promise((resolve) => hook?.close(resolve));
    await db?.drop();
  });

  /** Waits until the tripwire's freeze of `agent` is persisted. */
  async function frozenByTripwire(a: TestAirlock, agent: string): Promise<void> {
    for (let i = 0; i < 250 && a.gateway.freezes.causeFor(agent) === null; i++) await new Promise((r) => setTimeout(r, 20));
    expect(a.gateway.freezes.causeFor(agent)).toMatchObject({ kind: 'manual', freeze: { by: 'airlock-tripwire' } });
  }

  async function waitForHook(n: number): Promise<void> {
    for (let i = 0; i < 100 && received.length < n; i++) await new Promise((r) => setTimeout(r, 20));
  }

  it('warns at start-up about a canary pattern that matches nothing', () => {
    expect(airlock.gateway.warnings.some((w) => w.includes('public.nothing_like_this matches no table'))).toBe(true);
  });

  it('refuses a read of a canary table, and the webhook hears of it at once', async () => {
    const client = new pg.Client(airlock.clientConfig());
    await client.connect();
    try {
      for (const sql of ['SELECT * FROM api_keys', 'SELECT count(*) FROM public.key_summary']) {
        const err = await client.query(sql).catch((e: unknown) => e as pg.DatabaseError);
        expect((err as pg.DatabaseError).code, sql).toBe('42501');
        expect((err as pg.DatabaseError).message, sql).toContain('canary table');
      }
      // Other reads go on.
      expect((await client.query('SELECT count(*)::int AS n FROM companies')).rows[0].n).toBe(1196);
    } finally {
      await client.end();
    }
    await waitForHook(2);
    expect(received[0]).toMatchObject({ path: '/json', body: { event: 'tripwire', agent: 'claude', rule: 'canary', statement: 'SELECT * FROM api_keys' } });
    expect(String(received[0]!.body.reason)).toContain('canary');
    expect(received[1]!.body.statement).toBe('SELECT count(*) FROM public.key_summary');
  });

  it('trips on the third refused destructive statement within the window, and records it', async () => {
    // The canary froze the agent; a human lifts that first (while frozen,
    // refusals name the freeze and do not trip it again).
    await frozenByTripwire(airlock, 'claude');
    await airlock.gateway.freezes.unfreeze({ kind: 'agent', agent: 'claude' }, 'test');
    const before = received.length;
    const client = new pg.Client(airlock.clientConfig());
    await client.connect();
    try {
      for (const sql of ['DELETE FROM executives', 'DROP TABLE companies', 'UPDATE tasks SET title = title']) {
        await client.query(sql).catch(() => undefined);
      }
    } finally {
      await client.end();
    }
    await waitForHook(before + 1);
    expect(received.length).toBe(before + 1);
    expect(received[before]!.body).toMatchObject({ event: 'tripwire', agent: 'claude', statement: 'UPDATE tasks SET title = title' });
    expect(String(received[before]!.body.reason)).toContain('3 destructive statements refused within 600 s');
    await airlock.audit.flush();
    const { records } = await readAuditTail(airlock.stateDir, 50);
    expect(records.some((r) => r.event === 'tripwire' && r.agent === 'claude' && (r.reason ?? '').includes('3 destructive'))).toBe(true);
  });

  it('sends a Slack-compatible body when asked', async () => {
    const other = await startTestAirlock(server, db, {
      agents: [{ name: 'cursor', password: 'cursor-test-password' }],
      extraYaml: ['canary_tables: [public.api_keys]', 'tripwire:', '  webhook:', `    url: ${hookUrl}/slack`, '    format: slack'],
    });
    try {
      const before = received.length;
      const client = new pg.Client(other.clientConfig());
      await client.connect();
      await client.query('TABLE api_keys').catch(() => undefined);
      await client.end();
      await waitForHook(before + 1);
      expect(received[before]!.path).toBe('/slack');
      expect(String(received[before]!.body.text)).toContain('Airlock tripwire: agent "cursor" touched a canary table');
      await frozenByTripwire(other, 'cursor');
    } finally {
      await other.close();
    }
  });
});
