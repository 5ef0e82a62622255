/**
 * Destructive DDL made recoverable (issue 13), end to end against real
 * PostgreSQL through the wire protocol: a DROP TABLE a rule allows moves the
 * table into the trash (airlock_trash) with its indexes, constraints and
 * rows, and `airlock undo` puts it back exactly, until a human purges it;
 * an ALTER TABLE … DROP COLUMN journals the column's values first, and undo
 * adds it back with them; DROP SCHEMA and DROP … CASCADE stay refused
 * (rule unrecoverable) unless a rule says allow_unrecoverable.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest } from '../src/cli/admin-client.js';
import { createAdminToken } from '../src/state/admin-tokens.js';
import { readAuditTail } from '../src/state/file-audit-log.js';
import type { ChangeEntry } from '../src/state/journal.js';
import type { UndoResult } from '../src/executor/undo.js';
import type { TrashItem } from '../src/executor/trash.js';
import { runDoctorChecks } from '../src/gateway/doctor.js';
import { startTestAirlock } from './support/airlock.js';
import type { TestAirlock } from './support/airlock.js';
import { createTestDatabase, testServers, withClient } from './support/postgres-servers.js';
import type { TestDatabase } from './support/postgres-servers.js';

const SCHEMA = `
  CREATE TABLE public.parent (id int PRIMARY KEY, name text NOT NULL);
  INSERT INTO public.parent SELECT g, 'p' || g FROM generate_series(1, 10) g;
  CREATE TABLE public.t_drop (
    id serial PRIMARY KEY,
    code text NOT NULL UNIQUE,
    parent_id int NOT NULL REFERENCES public.parent (id),
    amount numeric(12, 2) NOT NULL CHECK (amount >= 0),
    note text
  );
  CREATE INDEX t_drop_note ON public.t_drop (lower(note)) WHERE note IS NOT NULL;
  INSERT INTO public.t_drop (code, parent_id, amount, note)
    SELECT 'c' || g, 1 + g % 10, g * 1.25, CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || g END FROM generate_series(1, 500) g;
  CREATE TABLE public.t_col (id int PRIMARY KEY, keep text NOT NULL, gone numeric(10, 2) NOT NULL DEFAULT 1.5 CHECK (gone > 0));
  CREATE INDEX t_col_gone ON public.t_col (gone);
  INSERT INTO public.t_col SELECT g, 'k' || g, g * 0.5 FROM generate_series(1, 300) g;
  CREATE TABLE public.dep_t (id int PRIMARY KEY);
  CREATE VIEW public.dep_v AS SELECT id FROM public.dep_t;
  CREATE TABLE public.rolled (id int PRIMARY KEY, v text);
  INSERT INTO public.rolled VALUES (1, 'one'), (2, 'two');
  CREATE TABLE public.t_part (id int NOT NULL, at date NOT NULL, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
  CREATE TABLE public.t_part_2025 PARTITION OF public.t_part FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
  CREATE TABLE public.t_part_2026 PARTITION OF public.t_part FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
  INSERT INTO public.t_part SELECT g, DATE '2025-06-01' + g, 'v' || g FROM generate_series(1, 400) g;
  CREATE TABLE public.m_parent (id int PRIMARY KEY);
  CREATE TABLE public.m_child (id int PRIMARY KEY, m_parent_id int NOT NULL REFERENCES public.m_parent (id) ON DELETE CASCADE, parent_id int REFERENCES public.parent (id));
  INSERT INTO public.m_parent SELECT g FROM generate_series(1, 20) g;
  INSERT INTO public.m_child SELECT g, 1 + g % 20, 2 + g % 9 FROM generate_series(1, 60) g;
  CREATE TABLE public.t_kinds (id int PRIMARY KEY, ident bigint GENERATED ALWAYS AS IDENTITY, gen int GENERATED ALWAYS AS (id * 2) STORED, u text UNIQUE, c text COLLATE "C");
  INSERT INTO public.t_kinds (id, u, c) SELECT g, 'u' || g, 'c' || g FROM generate_series(1, 40) g;
  CREATE SCHEMA scratch_ops;
  CREATE SCHEMA scratch_boss;
`;

for (const server of testServers()) {
  describe(`destructive DDL made recoverable (${server.name})`, () => {
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

    async function agent(name = 'ops'): Promise<pg.Client> {
      const c = new pg.Client(airlock.clientConfig(name));
      await c.connect();
      clients.push(c);
      return c;
    }

    async function direct<T = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<T[]> {
      return withClient(db.url, async (c) => (await c.query(sql, values)).rows as T[]);
    }

    /** Rows (md5 over them in key order), indexes and constraints of a table: equal only if it is back exactly. */
    async function shape(table: string, order = 'id'): Promise<{ rows: string; indexes: string[]; constraints: string[]; privileges: string }> {
      const [row] = await direct<{ h: string; n: string }>(`SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY ${order}), '')) AS h, count(*) AS n FROM ${table} t`);
      const indexes = await direct<{ d: string }>('SELECT indexdef AS d FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 ORDER BY 1', table.split('.'));
      const constraints = await direct<{ d: string }>(
        'SELECT conname || \' \' || pg_get_constraintdef(oid) || \' \' || convalidated AS d FROM pg_constraint WHERE conrelid = $1::regclass ORDER BY 1',
        [table],
      );
      const [privileges] = await direct<{ p: string | null }>(
        `SELECT string_agg(a.grantee::regrole::text || ' ' || a.privilege_type || ' ' || a.is_grantable, ', ' ORDER BY 1) AS p
           FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a WHERE c.oid = $1::regclass`,
        [table],
      );
      return { rows: `${row!.n}:${row!.h}`, indexes: indexes.map((r) => r.d), constraints: constraints.map((r) => r.d), privileges: privileges!.p ?? '' };
    }

    async function changes(query = ''): Promise<ChangeEntry[]> {
      const r = await admin<{ changes: ChangeEntry[] }>('GET', `/v1/changes${query}`);
      expect(r.status).toBe(200);
      return r.body.changes;
    }

    /**
     * Changes recorded since `seen` (counting pending and aborted ones), once none is pending: an agent's
     * COMMIT is answered before Airlock asks pg_xact_status() and marks its changes.
     */
    async function settledSince(seen: number): Promise<ChangeEntry[]> {
      for (let i = 0; ; i++) {
        const added = (await changes('?all=true')).slice(seen);
        if (added.every((e) => e.state !== 'pending') || i === 50) return added;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }

    async function trash(): Promise<TrashItem[]> {
      const r = await admin<{ trash: TrashItem[] }>('GET', '/v1/trash');
      expect(r.status).toBe(200);
      return r.body.trash;
    }

    async function refusal(c: pg.Client, sql: string): Promise<pg.DatabaseError> {
      const err = await c.query(sql).catch((e: unknown) => e as pg.DatabaseError);
      expect(err, sql).toBeInstanceOf(Error);
      return err as pg.DatabaseError;
    }

    const exists = async (table: string): Promise<boolean> => (await direct<{ r: string | null }>('SELECT to_regclass($1)::text AS r', [table]))[0]!.r !== null;

    beforeAll(async () => {
      db = await createTestDatabase(server);
      await withClient(db.url, (c) => c.query(SCHEMA));
      stateDir = await mkdtemp(join(tmpdir(), 'airlock-trash-'));
      const limits = ['    write_limits: { max_rows: 100000, rows_per_hour: 1000000, require_where: false, writes_per_minute: 600 }'];
      airlock = await startTestAirlock(server, db, {
        stateDir,
        // No look at the schema mid-test: its grants sync would change the privileges the test compares.
        schemaRefreshMs: 3_600_000,
        agents: [
          { name: 'ops', password: 'ops-test-password', profile: 'read-write', extra: limits },
          { name: 'boss', password: 'boss-test-password', profile: 'read-write', extra: limits },
        ],
        extraYaml: [
          'rules:',
          '  - { agents: [ops, boss], kinds: [alter, drop], tables: ["public.*"], decision: allow }',
          '  - { agents: [ops], kinds: [drop], decision: allow }',
          '  - { agents: [boss], kinds: [drop], decision: allow, allow_unrecoverable: true }',
        ],
      });
      token = await createAdminToken(stateDir, 'alice');
      // ALTER and DROP need ownership: an operator hands the tables to the agents' write roles.
      const ops = airlock.config.agents[0]!.writeRole;
      const boss = airlock.config.agents[1]!.writeRole;
      for (const t of ['t_drop', 't_col', 'dep_t', 'rolled', 't_part', 't_part_2025', 't_part_2026', 'm_parent', 'm_child', 't_kinds']) await direct(`ALTER TABLE public.${t} OWNER TO ${ops}`);
      await direct(`ALTER SCHEMA scratch_ops OWNER TO ${ops}`);
      await direct(`ALTER SCHEMA scratch_boss OWNER TO ${boss}`);
    });

    afterAll(async () => {
      for (const c of clients) await c.end().catch(() => undefined);
      // The write roles own tables a view depends on: hand them back so the roles can be dropped.
      for (const a of airlock?.config.agents ?? []) await direct(`REASSIGN OWNED BY ${a.writeRole} TO CURRENT_USER`).catch(() => undefined);
      await airlock?.close();
      await db?.drop();
      await rm(stateDir, { recursive: true, force: true });
    });

    it('DROP TABLE moves the table into the trash (rows, indexes, constraints, sequence); undo puts it back exactly', async () => {
      const before = await shape('public.t_drop');
      expect(before.rows).toMatch(/^500:/);
      const seen = (await changes()).length;
      const c = await agent();
      const dropped = await c.query('DROP TABLE t_drop');
      expect(dropped.command).toBe('DROP');
      expect(await exists('public.t_drop')).toBe(false);

      const all = await changes();
      expect(all.length).toBe(seen + 1);
      const change = all.at(-1)!;
      expect(change).toMatchObject({ agent: 'ops', statement: 'DROP TABLE t_drop', state: 'committed', tables: { 'public.t_drop': 500 } });
      expect(change.trashed).toEqual([{ table: 'public.t_drop', trash: expect.stringMatching(/^t_drop_[0-9a-f]{12}$/), rows: 500 }]);
      const listed = await trash();
      expect(listed).toEqual([
        { change: change.id, table: 'public.t_drop', trash: change.trashed[0]!.trash, agent: 'ops', at: change.at, rows: 500, bytes: expect.any(Number) },
      ]);
      expect(listed[0]!.bytes).toBeGreaterThan(0);
      // The parent's rows are free of the trashed table's foreign key: a human may delete one.
      await direct('BEGIN; DELETE FROM parent WHERE id = 1; ROLLBACK');

      const undone = await admin<UndoResult>('POST', '/v1/undo', { changes: [change.id] });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(undone.body.ddl).toEqual([expect.stringMatching(/^table public\.t_drop put back from the trash \(500 row\(s\)/)]);
      expect(await shape('public.t_drop')).toEqual(before);
      expect(await trash()).toEqual([]);
      // Its sequence came back with it, and goes on where it was.
      const inserted = await c.query("INSERT INTO t_drop (code, parent_id, amount) VALUES ('new', 1, 1) RETURNING id");
      expect(inserted.rows).toEqual([{ id: 501 }]);
      await direct("DELETE FROM t_drop WHERE code = 'new'");
      expect((await changes()).find((e) => e.id === change.id)).toMatchObject({ state: 'undone' });
    });

    it('keeps the trash out of every agent\'s reach: refused by the policy, and no row visible to the roles', async () => {
      const c = await agent();
      await c.query('DROP TABLE rolled');
      const item = (await trash()).find((t) => t.table === 'public.rolled')!;
      expect(item).toBeDefined();
      for (const sql of [
        `SELECT * FROM airlock_trash.${item.trash}`,
        `DELETE FROM airlock_trash.${item.trash}`,
        `DROP TABLE airlock_trash.${item.trash}`,
        // What undo writes back as the service account comes from the capture table: no agent may forge a row there.
        "INSERT INTO pg_temp.airlock_capture (change, rel, kind, img) VALUES ('x', 1, 'c', '{}')",
      ]) {
        const err = await refusal(c, sql);
        expect(err.detail, sql).toMatch(/Rule: airlock-internal/);
      }
      // Below the policy: the agents' roles (pg_read_all_data) see no row of it, the owner neither.
      for (const role of [airlock.config.agents[0]!.readRole, airlock.config.agents[0]!.writeRole]) {
        const rows = await withClient(db.url, async (d) => {
          await d.query(`SET ROLE ${role}`);
          return (await d.query(`SELECT count(*)::int AS n FROM airlock_trash.${item.trash}`)).rows;
        });
        expect(rows, role).toEqual([{ n: 0 }]);
      }
      const undone = await admin<UndoResult>('POST', '/v1/undo', { changes: [item.change] });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(await direct('SELECT id, v FROM rolled ORDER BY id')).toEqual([
        { id: 1, v: 'one' },
        { id: 2, v: 'two' },
      ]);
    });

    it('leaves nothing in the journal or the trash for a DROP rolled back; journals one committed in the agent\'s transaction', async () => {
      const seen = (await changes('?all=true')).length;
      const c = await agent();
      await c.query('BEGIN');
      await c.query('DROP TABLE rolled');
      await c.query('ROLLBACK');
      expect(await exists('public.rolled')).toBe(true);
      await c.query('BEGIN');
      await c.query('SAVEPOINT s');
      await c.query('DROP TABLE rolled');
      await c.query('ROLLBACK TO SAVEPOINT s');
      await c.query('COMMIT');
      expect(await exists('public.rolled')).toBe(true);
      expect((await changes('?all=true')).length).toBe(seen);
      expect(await trash()).toEqual([]);

      await c.query('BEGIN');
      await c.query("UPDATE rolled SET v = 'changed' WHERE id = 1");
      await c.query('DROP TABLE rolled');
      await c.query('COMMIT');
      expect(await exists('public.rolled')).toBe(false);
      const added = await settledSince(seen);
      expect(added.map((e) => [e.statement, e.state])).toEqual([
        ["UPDATE rolled SET v = 'changed' WHERE id = 1", 'committed'],
        ['DROP TABLE rolled', 'committed'],
      ]);
      const undone = await admin<UndoResult>('POST', '/v1/undo', { transaction: added[0]!.txid });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(await direct('SELECT id, v FROM rolled ORDER BY id')).toEqual([
        { id: 1, v: 'one' },
        { id: 2, v: 'two' },
      ]);
    });

    it('refuses a DROP TABLE PostgreSQL would refuse (a view depends on it), and moves nothing', async () => {
      const c = await agent();
      const err = await refusal(c, 'DROP TABLE dep_t');
      expect(err.code).toBe('2BP01');
      expect(await exists('public.dep_t')).toBe(true);
      expect(await trash()).toEqual([]);
      // IF EXISTS of a table that is not there: PostgreSQL's notice, nothing trashed.
      const r = await c.query('DROP TABLE IF EXISTS no_such_table');
      expect(r.command).toBe('DROP');
      expect(await trash()).toEqual([]);
    });

    it('purges a trashed table for good (by change, and by age); its change can no longer be undone', async () => {
      const c = await agent();
      await c.query('DROP TABLE rolled');
      const [item] = await trash();
      expect(item?.table).toBe('public.rolled');
      const bad = await admin<{ error: string }>('POST', '/v1/trash/purge', {});
      expect(bad.status).toBe(400);
      const purged = await admin<{ purged: TrashItem[]; message: string }>('POST', '/v1/trash/purge', { changes: [item!.change] });
      expect(purged.status, JSON.stringify(purged.body)).toBe(200);
      expect(purged.body.purged.map((t) => t.table)).toEqual(['public.rolled']);
      expect(await trash()).toEqual([]);
      expect(await direct("SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'airlock_trash'")).toEqual([{ n: 0 }]);
      const undo = await admin<{ error: string }>('POST', '/v1/undo', { changes: [item!.change] });
      expect(undo.status).toBe(409);
      expect(undo.body.error).toMatch(/alice purged it from the trash at .*: the data is gone for good, so the change cannot be undone/);
      await airlock.audit.flush();
      const record = (await readAuditTail(stateDir, 50)).records.find((r) => r.event === 'trash-purge');
      expect(record?.detail).toMatchObject({ by: 'alice', changes: [item!.change] });

      // By age: what was trashed before the cutoff goes, what came after stays.
      await direct('CREATE TABLE public.rolled (id int PRIMARY KEY, v text)');
      await direct(`ALTER TABLE public.rolled OWNER TO ${airlock.config.agents[0]!.writeRole}`);
      await c.query('DROP TABLE rolled');
      expect(await trash()).toHaveLength(1);
      const none = await admin<{ purged: TrashItem[] }>('POST', '/v1/trash/purge', { olderThan: '1d' });
      expect(none.body.purged).toEqual([]);
      const all = await admin<{ purged: TrashItem[] }>('POST', '/v1/trash/purge', { olderThan: new Date(Date.now() + 1000).toISOString() });
      expect(all.body.purged.map((t) => t.table)).toEqual(['public.rolled']);
      expect(await trash()).toEqual([]);
    });

    it('DROP COLUMN journals the values; undo adds the column back with its type, default, NOT NULL, check, index and values', async () => {
      const before = await shape('public.t_col');
      const seen = (await changes()).length;
      const c = await agent();
      await c.query('ALTER TABLE t_col DROP COLUMN gone');
      expect(await direct("SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 't_col' AND column_name = 'gone'")).toEqual([{ n: 0 }]);
      const change = (await changes()).at(-1)!;
      expect((await changes()).length).toBe(seen + 1);
      expect(change).toMatchObject({ statement: 'ALTER TABLE t_col DROP COLUMN gone', tables: { 'public.t_col': 300 } });
      const undone = await admin<UndoResult>('POST', '/v1/undo', { changes: [change.id] });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(undone.body.ddl).toEqual(['column gone of public.t_col added back (numeric(10,2), its values set by key)']);
      expect(await shape('public.t_col')).toEqual(before);
      expect(await direct("SELECT column_default AS d, is_nullable AS n FROM information_schema.columns WHERE table_name = 't_col' AND column_name = 'gone'")).toEqual([
        { d: '1.5', n: 'NO' },
      ]);
      // A key column's values could not be put back row by row: refused, nothing changed.
      const key = await refusal(c, 'ALTER TABLE t_col DROP COLUMN id');
      expect(key.message).toMatch(/part of the table's key/);
      expect(await shape('public.t_col')).toEqual(before);
    });

    it('airlock doctor says what the trash holds', async () => {
      const c = await agent();
      await c.query('DROP TABLE t_drop');
      const checks = await runDoctorChecks(airlock.config);
      expect(checks.filter((k) => /trash/.test(k.message)).map((k) => `${k.outcome}: ${k.message}`)).toEqual([
        'ok: The trash (schema airlock_trash) holds 1 table(s); `airlock trash list` lists them.',
      ]);
      const [item] = await trash();
      expect((await admin<UndoResult>('POST', '/v1/undo', { changes: [item!.change] })).status).toBe(200);
    });

    it('DROP TABLE of two tables, one referencing the other: both trashed, both back with their foreign keys', async () => {
      const parent = await shape('public.m_parent');
      const child = await shape('public.m_child');
      const c = await agent();
      await c.query('DROP TABLE m_child, m_parent');
      expect(await exists('public.m_parent')).toBe(false);
      const items = await trash();
      expect(items.map((t) => [t.table, t.rows])).toEqual([
        ['public.m_child', 60],
        ['public.m_parent', 20],
      ]);
      expect(items[0]!.change).toBe(items[1]!.change);
      const undone = await admin<UndoResult>('POST', '/v1/undo', { changes: [items[0]!.change] });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(await shape('public.m_parent')).toEqual(parent);
      expect(await shape('public.m_child')).toEqual(child);
      expect(await trash()).toEqual([]);
    });

    it('DROP COLUMN of identity, generated, unique and collated columns, in a transaction: a ROLLBACK leaves nothing, a COMMIT is undone', async () => {
      const view = async () =>
        direct(
          `SELECT string_agg(format('%s|%s|%s|%s|%s', id, ident, gen, u, c), ',' ORDER BY id) AS rows,
                  (SELECT string_agg(format('%s %s %s %s %s', attname, format_type(atttypid, atttypmod), attidentity, attgenerated, attnotnull), ', ' ORDER BY attname)
                     FROM pg_attribute WHERE attrelid = 'public.t_kinds'::regclass AND attnum > 0 AND NOT attisdropped) AS columns,
                  (SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ', ' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'public.t_kinds'::regclass) AS constraints,
                  (SELECT collname FROM pg_attribute a JOIN pg_collation co ON co.oid = a.attcollation WHERE attrelid = 'public.t_kinds'::regclass AND attname = 'c') AS coll
             FROM public.t_kinds`,
        );
      const before = await view();
      const seen = (await changes('?all=true')).length;
      const c = await agent();
      await c.query('BEGIN');
      await c.query('ALTER TABLE t_kinds DROP COLUMN ident, DROP COLUMN gen');
      await c.query('ROLLBACK');
      expect((await changes('?all=true')).length).toBe(seen);
      expect(await view()).toEqual(before);
      await c.query('BEGIN');
      await c.query('ALTER TABLE t_kinds DROP COLUMN ident, DROP COLUMN gen');
      await c.query('ALTER TABLE t_kinds DROP COLUMN u, DROP COLUMN c');
      await c.query('COMMIT');
      const added = await settledSince(seen);
      expect(added.map((e) => [e.statement, e.state])).toEqual([
        ['ALTER TABLE t_kinds DROP COLUMN ident, DROP COLUMN gen', 'committed'],
        ['ALTER TABLE t_kinds DROP COLUMN u, DROP COLUMN c', 'committed'],
      ]);
      const undone = await admin<UndoResult>('POST', '/v1/undo', { transaction: added[0]!.txid });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(await view()).toEqual(before);
      // The identity goes on past the values it had.
      const next = await c.query('INSERT INTO t_kinds (id) VALUES (41) RETURNING ident, gen');
      expect(next.rows).toEqual([{ ident: '41', gen: 82 }]);
    });

    it('refuses DROP SCHEMA and DROP … CASCADE (rule unrecoverable) unless a rule allows them as such', async () => {
      const ops = await agent('ops');
      for (const sql of ['DROP SCHEMA scratch_ops', 'DROP TABLE rolled CASCADE']) {
        const err = await refusal(ops, sql);
        expect(err.code, sql).toBe('0A000');
        expect(err.detail, sql).toMatch(/Rule: unrecoverable/);
        expect(err.hint, sql).toMatch(/allow_unrecoverable: true/);
      }
      expect(await direct("SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'scratch_ops'")).toEqual([{ n: 1 }]);
      const boss = await agent('boss');
      await boss.query('DROP SCHEMA scratch_boss');
      expect(await direct("SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'scratch_boss'")).toEqual([{ n: 0 }]);
    });

    it('DROP TABLE of a partitioned table trashes it with its partitions; undo puts them back attached', async () => {
      const before = await shape('public.t_part', 'id, at');
      const parts = await direct("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS b FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'public.t_part'::regclass ORDER BY 1");
      const c = await agent();
      await c.query('DROP TABLE t_part');
      expect(await exists('public.t_part')).toBe(false);
      expect(await exists('public.t_part_2025')).toBe(false);
      const [item] = await trash();
      expect(item).toMatchObject({ table: 'public.t_part', rows: 400 });
      const undone = await admin<UndoResult>('POST', '/v1/undo', { changes: [item!.change] });
      expect(undone.status, JSON.stringify(undone.body)).toBe(200);
      expect(await shape('public.t_part', 'id, at')).toEqual(before);
      expect(await direct("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS b FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'public.t_part'::regclass ORDER BY 1")).toEqual(parts);
      // A single partition: detached into the trash, attached again by undo.
      await c.query('DROP TABLE t_part_2026');
      const [one] = await trash();
      expect(one).toMatchObject({ table: 'public.t_part_2026' });
      // The parent shows only what is left: the 2025 partition's rows.
      expect(await direct('SELECT count(*)::int AS n FROM t_part')).toEqual(await direct("SELECT count(*)::int AS n FROM t_part WHERE at < '2026-01-01'"));
      expect(await direct('SELECT count(*)::int AS n FROM t_part')).toEqual([{ n: 213 }]);
      const back = await admin<UndoResult>('POST', '/v1/undo', { changes: [one!.change] });
      expect(back.status, JSON.stringify(back.body)).toBe(200);
      expect(await shape('public.t_part', 'id, at')).toEqual(before);
      // A column dropped from the partitioned table (and so from every partition): back in all of them, with its values.
      const seen = (await changes()).length;
      await c.query('ALTER TABLE t_part DROP COLUMN v');
      const dropped = (await changes()).slice(seen);
      expect(dropped.map((e) => e.tables)).toEqual([{ 'public.t_part': 400 }]);
      const restored = await admin<UndoResult>('POST', '/v1/undo', { changes: [dropped[0]!.id] });
      expect(restored.status, JSON.stringify(restored.body)).toBe(200);
      expect(await shape('public.t_part', 'id, at')).toEqual(before);
      expect(await direct("SELECT count(*)::int AS n FROM t_part_2026 WHERE v IS NULL")).toEqual([{ n: 0 }]);
    });
  });
}
