/**
 * Undo, end to end against real PostgreSQL (issue 13): every row an agent's
 * write changes is journalled before it commits, and an admin puts it back
 * through the admin API. The incident replayed: an agent deletes every
 * company (cascading to their executives and everything else that hangs
 * off them); one undo restores every table exactly, foreign keys intact.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest } from '../src/cli/admin-client.js';
import { createAdminToken } from '../src/state/admin-tokens.js';
import { readAuditTail } from '../src/state/file-audit-log.js';
import { runDoctorChecks } from '../src/gateway/doctor.js';
import type { ChangeEntry } from '../src/state/journal.js';
import { FileJournal } from '../src/state/file-journal.js';
import type { UndoResult } from '../src/executor/undo.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { createTestDatabase, testServers, withClient } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';

/** Every table of the demo, and a few of the test's own. */
const DEMO_TABLES = ['companies', 'executives', 'users', 'projects', 'tasks', 'invoices'];

const EXTRA_SCHEMA = `
  CREATE TABLE public.bulk (id int PRIMARY KEY, n bigint NOT NULL, amount numeric(30, 10) NOT NULL, note text, big bigint NOT NULL);
  INSERT INTO public.bulk SELECT g, g, g * 1.0000000001, CASE WHEN g % 7 = 0 THEN NULL ELSE 'row ' || g END, 9007199254740993 + g FROM generate_series(1, 10000) g;
  CREATE TABLE public.scratch (id int PRIMARY KEY, v text NOT NULL);
  INSERT INTO public.scratch SELECT g, 'v' || g FROM generate_series(1, 50) g;
  CREATE TABLE public.keyless (v int);
  CREATE TABLE public.ddl_t (id int PRIMARY KEY, v text);
  INSERT INTO public.ddl_t VALUES (1, 'one'), (2, 'two');
`;

for (const server of testServers()) {
  describe(`undo (${server.name})`, () => {
    let db: TestDatabase;
    let stateDir: string;
    let airlock: TestAirlock;
    let token: string;
    const clients: pg.Client[] = [];

    const admin = <T>(method: 'GET' | 'POST', path: string, body?: unknown) =>
      adminRequest({ host: airlock.gateway.adminAddress.host, port: airlock.gateway.adminAddress.port, token }, method, path, body) as Promise<{
        status: number;
        body: T;
      }>;

    async function agent(): Promise<pg.Client> {
      const c = new pg.Client(airlock.clientConfig('ops'));
      await c.connect();
      clients.push(c);
      return c;
    }

    async function direct<T = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<T[]> {
      return withClient(db.url, async (c) => (await c.query(sql, values)).rows as T[]);
    }

    /** An md5 over a table's rows in key order: equal only if every row is back, exactly. */
    async function fingerprint(tables: readonly string[]): Promise<Record<string, string>> {
      const out: Record<string, string> = {};
      for (const t of tables) {
        const [row] = await direct<{ h: string; n: string }>(`SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.id), '')) AS h, count(*) AS n FROM public.${t} t`);
        out[t] = `${row!.n}:${row!.h}`;
      }
      return out;
    }

    async function changes(query = ''): Promise<ChangeEntry[]> {
      const r = await admin<{ changes: ChangeEntry[] }>('GET', `/v1/changes${query}`);
      expect(r.status).toBe(200);
      return r.body.changes;
    }

    /** The journal's latest change of the agent, asserted to be the only new one since `before`. */
    async function lastChange(before: number): Promise<ChangeEntry> {
      const all = await changes();
      expect(all.length).toBe(before + 1);
      return all.at(-1)!;
    }

    beforeAll(async () => {
      db = await createTestDatabase(server, { seed: true });
      await withClient(db.url, (c) => c.query(EXTRA_SCHEMA));
      stateDir = await mkdtemp(join(tmpdir(), 'airlock-undo-'));
      airlock = await startTestAirlock(server, db, {
        stateDir,
        agents: [
          {
            name: 'ops',
            password: 'ops-test-password',
            profile: 'read-write',
            extra: ['    write_limits: { max_rows: 100000, rows_per_hour: 1000000, require_where: false, writes_per_minute: 600 }'],
          },
        ],
        extraYaml: [
          'rules:',
          '  - { agents: [ops], kinds: [truncate], tables: [public.scratch], decision: allow }',
          '  - { agents: [ops], kinds: [alter, drop], tables: [public.ddl_t], decision: allow }',
        ],
      });
      token = await createAdminToken(stateDir, 'alice');
      // ALTER and DROP need ownership: an operator hands ddl_t to the agent's write role.
      await direct(`ALTER TABLE public.ddl_t OWNER TO ${airlock.config.agents[0]!.writeRole}`);
    });

    afterAll(async () => {
      for (const c of clients) await c.end().catch(() => undefined);
      await airlock?.close();
      await db?.drop();
      await rm(stateDir, { recursive: true, force: true });
    });

    it('installs capture on every keyed table, and says where it is missing', () => {
      const byTable = new Map(airlock.gateway.capture.map((s) => [s.table, s]));
      for (const t of [...DEMO_TABLES, 'bulk', 'scratch']) expect(byTable.get(`public.${t}`)?.installed, t).toBe(true);
      expect(byTable.get('public.keyless')?.installed).toBe(false);
      expect(airlock.gateway.warnings.join('\n')).toMatch(/public\.keyless: it has no primary key/);
    });

    it('airlock doctor says where capture is missing', async () => {
      const checks = await runDoctorChecks(airlock.config);
      expect(checks.filter((c) => /Undo capture/.test(c.message)).map((c) => `${c.outcome}: ${c.message}`)).toEqual([
        expect.stringMatching(/^warn: Undo capture is not in place on public\.keyless: it has no primary key/),
        expect.stringMatching(/^ok: Undo capture is in place on \d+ of \d+ tables\.$/),
      ]);
    });

    it('replays the incident: every company deleted (cascading to 1,206 executives), put back by one undo', async () => {
      const before = await fingerprint(DEMO_TABLES);
      expect(before.companies).toMatch(/^1196:/);
      expect(before.executives).toMatch(/^1206:/);
      const seen = (await changes()).length;
      const c = await agent();
      const deleted = await c.query('DELETE FROM companies');
      expect(deleted.rowCount).toBe(1196);
      expect(await direct('SELECT (SELECT count(*) FROM companies)::int AS c, (SELECT count(*) FROM executives)::int AS e')).toEqual([{ c: 0, e: 0 }]);

      const change = await lastChange(seen);
      expect(change).toMatchObject({ agent: 'ops', statement: 'DELETE FROM companies', state: 'committed', kind: 'write' });
      expect(change.tables['public.companies']).toBe(1196);
      expect(change.tables['public.executives']).toBe(1206);
      // The audit record links the change id to the journal entry: the intent before COMMIT, the kept statement after.
      await airlock.audit.flush();
      const written = (await readAuditTail(stateDir, 50)).records.filter((r) => (r.detail as { changeId?: string } | undefined)?.changeId === change.id);
      expect(written.map((r) => [r.event, (r.detail as { outcome?: string }).outcome])).toEqual([
        ['write-intent', undefined],
        ['statement', 'committed'],
      ]);

      const plan = await admin<UndoResult>('POST', '/v1/undo', { changes: [change.id], dryRun: true });
      expect(plan.status).toBe(200);
      expect(plan.body.applied).toBe(false);
      expect(plan.body.tables.find((t) => t.table === 'public.companies')).toMatchObject({ insert: 1196, delete: 0, update: 0 });
      // Parents before children.
      const order = plan.body.tables.map((t) => t.table);
      expect(order.indexOf('public.companies')).toBeLessThan(order.indexOf('public.executives'));
      expect(await direct('SELECT count(*)::int AS c FROM companies')).toEqual([{ c: 0 }]);

      const undone = await admin<UndoResult>('POST', '/v1/undo', { changes: [change.id] });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(undone.body.applied).toBe(true);
      expect(await fingerprint(DEMO_TABLES)).toEqual(before);
      // Foreign keys intact: every executive's company is there (the constraint holds, and checks it).
      expect(await direct('SELECT count(*)::int AS n FROM executives e LEFT JOIN companies c ON c.id = e.company_id WHERE c.id IS NULL')).toEqual([{ n: 0 }]);
      expect(await direct("SELECT count(*)::int AS n FROM pg_constraint WHERE conrelid = 'public.executives'::regclass AND contype = 'f' AND convalidated")).toEqual([{ n: 1 }]);

      const after = await changes();
      expect(after.find((e) => e.id === change.id)).toMatchObject({ state: 'undone', undoneBy: undone.body.undoChangeId });
      expect(after.find((e) => e.id === undone.body.undoChangeId)).toMatchObject({ kind: 'undo', by: 'alice', undoes: [change.id], state: 'committed' });
      // On the record with the admin's name.
      await airlock.audit.flush();
      const undoRecord = (await readAuditTail(stateDir, 50)).records.find((r) => r.event === 'undo');
      expect(undoRecord?.detail).toMatchObject({ by: 'alice', changes: [change.id], undoChangeId: undone.body.undoChangeId });
      // Requests that cannot be done as asked.
      expect((await admin<{ error: string }>('POST', '/v1/undo', { changes: [change.id], agent: 'ops', since: new Date().toISOString() })).status).toBe(400);
      expect((await admin<{ error: string }>('POST', '/v1/undo', { agent: 'ops' })).body.error).toMatch(/needs "since"/);
      expect((await admin<{ error: string }>('POST', '/v1/undo', { changes: ['no-such-change'] })).status).toBe(404);
      expect((await admin<{ error: string }>('POST', '/v1/undo', { changes: [change.id], force: 'yes' })).status).toBe(400);
      const again = await admin<{ error: string }>('POST', '/v1/undo', { changes: [change.id] });
      expect(again.status).toBe(409);
      expect(again.body.error).toMatch(/already undone/);
    });

    it('undoes an UPDATE of 10,000 rows exactly (bigint and numeric digits included)', async () => {
      const before = await fingerprint(['bulk']);
      const seen = (await changes()).length;
      const c = await agent();
      const r = await c.query("UPDATE bulk SET n = n * 2, amount = amount + 0.0000000001, note = 'changed', big = big + 1");
      expect(r.rowCount).toBe(10000);
      const change = await lastChange(seen);
      expect(change.tables).toEqual({ 'public.bulk': 10000 });
      expect(await fingerprint(['bulk'])).not.toEqual(before);
      const undone = await admin<UndoResult>('POST', '/v1/undo', { changes: [change.id] });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(undone.body.tables).toEqual([{ table: 'public.bulk', delete: 0, update: 10000, insert: 0 }]);
      expect(await fingerprint(['bulk'])).toEqual(before);
    });

    it('undoes an INSERT, and the undo itself can be undone', async () => {
      const seen = (await changes()).length;
      const c = await agent();
      await c.query("INSERT INTO scratch VALUES (1001, 'new'), (1002, 'newer')");
      const change = await lastChange(seen);
      expect(change.tables).toEqual({ 'public.scratch': 2 });
      const undone = await admin<UndoResult>('POST', '/v1/undo', { changes: [change.id] });
      expect(undone.status).toBe(200);
      expect(await direct('SELECT count(*)::int AS n FROM scratch WHERE id > 1000')).toEqual([{ n: 0 }]);
      const redo = await admin<UndoResult>('POST', '/v1/undo', { changes: [undone.body.undoChangeId] });
      expect(redo.status, JSON.stringify(redo.body)).toBe(200);
      expect(await direct('SELECT id, v FROM scratch WHERE id > 1000 ORDER BY id')).toEqual([
        { id: 1001, v: 'new' },
        { id: 1002, v: 'newer' },
      ]);
      await direct('DELETE FROM scratch WHERE id > 1000');
    });

    it('undoes a TRUNCATE: its rows were journalled like a DELETE', async () => {
      const before = await fingerprint(['scratch']);
      const seen = (await changes()).length;
      const c = await agent();
      await c.query('TRUNCATE scratch');
      expect(await direct('SELECT count(*)::int AS n FROM scratch')).toEqual([{ n: 0 }]);
      const change = await lastChange(seen);
      expect(change.tables).toEqual({ 'public.scratch': 50 });
      const undone = await admin<UndoResult>('POST', '/v1/undo', { changes: [change.id] });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(await fingerprint(['scratch'])).toEqual(before);
    });

    it('leaves nothing in the journal for writes rolled back: ROLLBACK, ROLLBACK TO SAVEPOINT, a refused write', async () => {
      const seen = (await changes('?all=true')).length;
      const c = await agent();
      await c.query('BEGIN');
      await c.query("UPDATE scratch SET v = 'rolled back' WHERE id = 1");
      await c.query('ROLLBACK');
      await c.query('BEGIN');
      await c.query("UPDATE scratch SET v = 'kept' WHERE id = 2");
      await c.query('SAVEPOINT s');
      await c.query("UPDATE scratch SET v = 'rolled back to savepoint' WHERE id = 3");
      await c.query('ROLLBACK TO SAVEPOINT s');
      await c.query("INSERT INTO scratch VALUES (2001, 'kept too')");
      await c.query('COMMIT');
      // Refused by PostgreSQL (a duplicate key): nothing kept, nothing journalled.
      await expect(c.query("INSERT INTO scratch VALUES (2, 'duplicate')")).rejects.toThrow(/duplicate key/);
      // Refused by the keyless table's missing capture: rolled back, nothing journalled.
      const refused = await c.query('INSERT INTO keyless VALUES (1)').catch((e: pg.DatabaseError) => e);
      expect(refused).toBeInstanceOf(Error);
      expect((refused as pg.DatabaseError).message).toMatch(/could not be journalled/);
      expect((refused as pg.DatabaseError).detail).toMatch(/no-journal/);
      expect(await direct('SELECT count(*)::int AS n FROM keyless')).toEqual([{ n: 0 }]);

      const all = await changes('?all=true');
      const added = all.slice(seen);
      expect(added.map((e) => e.statement)).toEqual(["UPDATE scratch SET v = 'kept' WHERE id = 2", "INSERT INTO scratch VALUES (2001, 'kept too')"]);
      expect(added.every((e) => e.state === 'committed')).toBe(true);
      expect(new Set(added.map((e) => e.txid)).size).toBe(1);

      // One statement of the transaction undone; the other stays.
      const undone = await admin<UndoResult>('POST', '/v1/undo', { changes: [added[0]!.id] });
      expect(undone.status).toBe(200);
      expect(await direct('SELECT id, v FROM scratch WHERE id IN (1, 2, 3, 2001) ORDER BY id')).toEqual([
        { id: 1, v: 'v1' },
        { id: 2, v: 'v2' },
        { id: 3, v: 'v3' },
        { id: 2001, v: 'kept too' },
      ]);
      // The rest of the transaction, by its id.
      const rest = await admin<UndoResult>('POST', '/v1/undo', { transaction: added[1]!.txid });
      expect(rest.status, JSON.stringify(rest.body)).toBe(200);
      expect(rest.body.changes).toEqual([added[1]!.id]);
      expect(await direct('SELECT count(*)::int AS n FROM scratch WHERE id = 2001')).toEqual([{ n: 0 }]);
    });

    it('refuses a COMMIT sent with other transaction control after writes, rolls the transaction back, and journals nothing', async () => {
      const seen = (await changes('?all=true')).length;
      const c = await agent();
      await c.query('BEGIN');
      await c.query("UPDATE scratch SET v = 'not alone' WHERE id = 6");
      const err = await c.query('SAVEPOINT late; COMMIT').catch((e: unknown) => e as pg.DatabaseError);
      expect(err).toBeInstanceOf(Error);
      expect((err as pg.DatabaseError).detail).toMatch(/Rule: write-not-alone/);
      expect(await direct('SELECT v FROM scratch WHERE id = 6')).toEqual([{ v: 'v6' }]);
      expect((await changes('?all=true')).length).toBe(seen);
      // The session goes on, outside a transaction.
      await c.query("UPDATE scratch SET v = 'alone' WHERE id = 6");
      expect((await changes()).at(-1)?.statement).toBe("UPDATE scratch SET v = 'alone' WHERE id = 6");
      await direct("UPDATE scratch SET v = 'v6' WHERE id = 6");
    });

    it('stops at a row changed again since, lists it, and overwrites it only with force', async () => {
      const seen = (await changes()).length;
      const c = await agent();
      await c.query("UPDATE scratch SET v = 'agent' WHERE id IN (10, 11)");
      const change = await lastChange(seen);
      // Someone else changes one of the rows afterwards.
      await direct("UPDATE scratch SET v = 'human' WHERE id = 11");
      const checked = await admin<{ changes: (ChangeEntry & { conflicts?: number })[] }>('GET', '/v1/changes?check=true');
      expect(checked.body.changes.find((e) => e.id === change.id)?.conflicts).toBe(1);
      const stopped = await admin<UndoResult & { error: string }>('POST', '/v1/undo', { changes: [change.id] });
      expect(stopped.status).toBe(409);
      expect(stopped.body.applied).toBe(false);
      expect(stopped.body.error).toMatch(/changed again/);
      expect(stopped.body.conflicts).toHaveLength(1);
      expect(stopped.body.conflicts[0]).toMatchObject({ table: 'public.scratch', key: '["11"]' });
      expect(stopped.body.conflicts[0]!.found).toMatch(/"human"/);
      expect(await direct('SELECT id, v FROM scratch WHERE id IN (10, 11) ORDER BY id')).toEqual([
        { id: 10, v: 'agent' },
        { id: 11, v: 'human' },
      ]);
      const forced = await admin<UndoResult>('POST', '/v1/undo', { changes: [change.id], force: true });
      expect(forced.status).toBe(200);
      expect(forced.body.applied).toBe(true);
      expect(await direct('SELECT id, v FROM scratch WHERE id IN (10, 11) ORDER BY id')).toEqual([
        { id: 10, v: 'v10' },
        { id: 11, v: 'v11' },
      ]);
    });

    it('undoes everything one agent did since a time', async () => {
      const before = await fingerprint(['scratch', 'bulk']);
      await new Promise((resolve) => setTimeout(resolve, 5));
      const since = new Date().toISOString();
      const c = await agent();
      await c.query("UPDATE scratch SET v = 'a' WHERE id = 20");
      await c.query('DELETE FROM scratch WHERE id = 21');
      await c.query('INSERT INTO scratch VALUES (3001, $1)', ['b']);
      await c.query('DELETE FROM bulk WHERE id <= 5');
      const listed = await changes(`?agent=ops&since=${encodeURIComponent(since)}`);
      expect(listed).toHaveLength(4);
      const byTable = await changes(`?agent=ops&since=${encodeURIComponent(since)}&table=bulk`);
      expect(byTable).toHaveLength(1);
      const undone = await admin<UndoResult>('POST', '/v1/undo', { agent: 'ops', since });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(undone.body.changes).toEqual(listed.map((e) => e.id));
      expect(await fingerprint(['scratch', 'bulk'])).toEqual(before);
    });

    it('refuses destructive DDL whose loss undo could not take back, and makes the rest recoverable (test/trash.test.ts has the details)', async () => {
      const c = await agent();
      // DROP … CASCADE the policy refuses before it gets this far (it reaches what no rule names).
      const cascade = await c.query('DROP TABLE ddl_t CASCADE').catch((e: unknown) => e as pg.DatabaseError);
      expect(cascade).toBeInstanceOf(Error);
      expect((cascade as pg.DatabaseError).code).toMatch(/^(42501|0A000)$/);
      // A DROP COLUMN's values are journalled, and undo brings them back.
      const seen = (await changes()).length;
      await c.query('ALTER TABLE ddl_t DROP COLUMN v');
      const dropped = await lastChange(seen);
      expect((await admin<UndoResult>('POST', '/v1/undo', { changes: [dropped.id] })).status).toBe(200);
      // A DROP TABLE moves the table into the trash, and undo moves it back.
      await c.query('DROP TABLE ddl_t');
      const trashed = await lastChange(seen + 2);
      expect(trashed.trashed.map((t) => t.table)).toEqual(['public.ddl_t']);
      expect((await admin<UndoResult>('POST', '/v1/undo', { changes: [trashed.id] })).status).toBe(200);
      expect(await direct('SELECT id, v FROM ddl_t ORDER BY id')).toEqual([
        { id: 1, v: 'one' },
        { id: 2, v: 'two' },
      ]);
      // Other ALTERs go through.
      await c.query('ALTER TABLE ddl_t ADD COLUMN w int');
    });

    it('settles at start a change whose outcome was never marked (Airlock killed between COMMIT and the mark), and can undo it', async () => {
      // What a crash there leaves: the journal holds the change as pending, the database committed it.
      // (And one whose transaction never committed: it must come out aborted.)
      const rowText = async (id: number): Promise<string> => (await direct<{ j: string }>('SELECT row_to_json(t)::text AS j FROM scratch t WHERE id = $1', [id]))[0]!.j;
      const run = async (end: 'COMMIT' | 'ROLLBACK', id: number): Promise<{ txid: string; rows: { table: string; kind: 'o' | 'n'; image: string }[] }> =>
        withClient(db.url, async (c) => {
          const before = (await c.query<{ j: string }>('SELECT row_to_json(t)::text AS j FROM scratch t WHERE id = $1', [id])).rows[0]!.j;
          await c.query('BEGIN');
          const after = (await c.query<{ j: string }>("UPDATE scratch t SET v = 'after a crash' WHERE id = $1 RETURNING row_to_json(t)::text AS j", [id])).rows[0]!.j;
          const txid = (await c.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
          await c.query(end);
          return { txid, rows: [{ table: 'public.scratch', kind: 'o', image: before }, { table: 'public.scratch', kind: 'n', image: after }] };
        });
      const original = await rowText(40);
      for (const c of clients.splice(0)) await c.end();
      await airlock.close();
      const committed = await run('COMMIT', 40);
      const aborted = await run('ROLLBACK', 41);
      const journal = await FileJournal.open(stateDir);
      await journal.record([
        { id: 'crash-committed', txid: committed.txid, kind: 'write', agent: 'ops', by: null, statement: "UPDATE scratch SET v = 'after a crash' WHERE id = 40", rows: committed.rows },
        { id: 'crash-aborted', txid: aborted.txid, kind: 'write', agent: 'ops', by: null, statement: "UPDATE scratch SET v = 'after a crash' WHERE id = 41", rows: aborted.rows },
      ]);
      await journal.close();

      airlock = await startTestAirlock(server, db, {
        stateDir,
        agents: [{ name: 'ops', password: 'ops-test-password', profile: 'read-write' }],
      });
      const all = await changes('?all=true');
      expect(all.find((e) => e.id === 'crash-committed')?.state).toBe('committed');
      expect(all.find((e) => e.id === 'crash-aborted')?.state).toBe('aborted');
      const undone = await admin<UndoResult>('POST', '/v1/undo', { changes: ['crash-committed'] });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(await rowText(40)).toBe(original);
      const refused = await admin<{ error: string }>('POST', '/v1/undo', { changes: ['crash-aborted'] });
      expect(refused.status).toBe(409);
      expect(refused.body.error).toMatch(/never committed/);
    });
  });
}
