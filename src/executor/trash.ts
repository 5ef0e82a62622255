/**
 * The trash: where a DROP TABLE an agent was allowed goes instead of away
 * (issue 13, "Destructive DDL"). The table is moved, inside the agent's own
 * write transaction, into the schema `airlock_trash` under a unique name,
 * with its indexes, constraints, triggers, owned sequences, partitions and
 * rows; a human takes it back with `airlock undo` or removes it for good
 * with `airlock trash purge`.
 *
 * How a DROP TABLE becomes a move (write-executor.ts runs it):
 *
 *   1. the agent's own DROP TABLE runs, inside a savepoint, as the agent's
 *      write role: PostgreSQL itself says whether it may (ownership,
 *      dependent views and foreign keys, IF EXISTS), and its answer
 *      (`DROP TABLE`, a notice, an error) is the one the agent gets;
 *   2. the savepoint is rolled back, and QUARANTINE moves each table named
 *      into the trash, in the same transaction; a descriptor of the move
 *      (original names, what was detached, what was locked down) lands in
 *      the capture table as an image of kind `q`, so it follows the
 *      transaction exactly like captured rows do, and is journalled with them.
 *
 * What differs from a real DROP, and is taken care of:
 * - index and owned-sequence names are schema-wide: they are renamed to
 *   unique names too, so two trashed tables of one name never collide;
 * - foreign keys from the table to tables that stay would keep those
 *   tables' rows from being deleted (or cascade into the trash): they are
 *   dropped, their definitions kept in the descriptor, and added back by undo;
 * - a partition is detached from its parent, a child table un-inherited
 *   (otherwise the parent would still show its rows);
 * - agents' roles hold pg_read_all_data, which passes every schema's USAGE:
 *   each trashed relation gets row-level security, forced, with a
 *   restrictive policy that lets no row through (pg_read_all_data does not
 *   bypass row-level security), besides the policy's refusal of any
 *   statement that names the trash (rule airlock-internal).
 *
 * https://www.postgresql.org/docs/current/sql-altertable.html (SET SCHEMA:
 * "Associated indexes, constraints, and sequences owned by table columns
 * are moved as well"), https://www.postgresql.org/docs/current/ddl-rowsecurity.html
 */
import type pg from 'pg';
import type { Journal } from '../state/journal.js';

/** The schema trashed tables live in, owned by the service account. */
export const TRASH_SCHEMA = 'airlock_trash';

/** The restrictive row-level security policy that hides a trashed table's rows from everyone but superusers. */
export const TRASH_POLICY = 'airlock_trash';

/** What the journal keeps of one trashed relation (the table, or one of its partitions). */
export interface TrashedRelation {
  schema: string;
  name: string;
  /** Its name in the trash schema. */
  trash: string;
  /** Row-level security as it was (enabled, forced). */
  rls: boolean;
  force: boolean;
  indexes: { name: string; trash: string }[];
  sequences: { schema: string; name: string; trash: string; acl?: Privilege[] }[];
  /** Its privileges as they were (aclexplode), taken from every role while it is in the trash. */
  acl?: Privilege[];
}

/** One privilege as aclexplode() lists it; `grantee` quoted, or PUBLIC. */
export interface Privilege {
  grantee: string;
  privilege: string;
  grantable: boolean;
}

/** Sets an object's privileges back to `acl` (as the service account: a superuser's GRANT is recorded as the owner's). */
async function restorePrivileges(service: pg.Client, kind: 'TABLE' | 'SEQUENCE', name: string, acl: readonly Privilege[] | undefined): Promise<void> {
  if (acl === undefined) return;
  const now = await service.query<{ grantee: string }>(
    `SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee
       FROM pg_catalog.pg_class c, pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault($2, c.relowner))) a WHERE c.oid = pg_catalog.to_regclass($1)`,
    [name, kind === 'TABLE' ? 'r' : 's'],
  );
  for (const g of now.rows) await service.query(`REVOKE ALL ON ${kind} ${name} FROM ${g.grantee}`);
  for (const p of acl) await service.query(`GRANT ${p.privilege} ON ${kind} ${name} TO ${p.grantee}${p.grantable ? ' WITH GRANT OPTION' : ''}`);
}

/** The descriptor of one DROP TABLE turned into a move: the image of kind `q`. */
export interface TrashDescriptor {
  /** 'schema.table', as it was. */
  table: string;
  schema: string;
  name: string;
  /** Its name in the trash schema. */
  trash: string;
  /** Rows it held (partitions included). */
  rows: number;
  /** The table first, then its partitions. */
  relations: TrashedRelation[];
  /** Foreign keys to tables that stayed, dropped at the move: `ALTER TABLE schema.name ADD CONSTRAINT constraint def`. */
  fks: { schema: string; name: string; constraint: string; def: string }[];
  /** The partitioned table it was a partition of, and its bound. */
  partitionOf: { schema: string; name: string; bound: string } | null;
  /** Tables it inherited from. */
  inherits: { schema: string; name: string }[];
}

export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** A relation as the agent named it: schema-qualified if it was, else resolved by the write role's search_path, as its DROP was. */
function regclassOf(t: { schema: string | null; name: string }): string {
  return `pg_catalog.to_regclass(${literal(t.schema === null ? ident(t.name) : `${ident(t.schema)}.${ident(t.name)}`)})::oid`;
}

/**
 * One statement (a DO block, run as the agent's write role on its write
 * connection, capture on) that moves `tables` into the trash and files a
 * descriptor of each move under the current change. Tables that do not
 * exist (DROP TABLE IF EXISTS) are skipped. Answers a single CommandComplete (DO).
 */
export function quarantineSql(tables: readonly { schema: string | null; name: string }[]): string {
  const roots = tables.map(regclassOf).join(', ');
  return `DO $airlock$
DECLARE
  root oid;
  r record;
  x record;
  tag text := pg_catalog.substr(pg_catalog.md5(pg_catalog.current_setting('airlock.change')), 1, 8);
  n bigint;
  moved oid[];
  rels jsonb;
  idx jsonb;
  seqs jsonb;
  fks jsonb;
  part jsonb;
  inh jsonb;
  newname text;
  roottrash text;
  y record;
  acl jsonb;
BEGIN
  FOREACH root IN ARRAY ARRAY[${roots}]::oid[] LOOP
    CONTINUE WHEN root IS NULL;
    -- A temporary table cannot leave its session's schema, and goes with the session anyway: dropped as asked.
    IF (SELECT c.relpersistence FROM pg_catalog.pg_class c WHERE c.oid = root) = 't' THEN
      EXECUTE pg_catalog.format('DROP TABLE %s', root::regclass);
      CONTINUE;
    END IF;
    EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s', root::regclass) INTO n;
    part := NULL;
    SELECT pg_catalog.jsonb_build_object('schema', pn.nspname, 'name', p.relname, 'bound', pg_catalog.pg_get_expr(c.relpartbound, c.oid))
      INTO part FROM pg_catalog.pg_class c JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
      JOIN pg_catalog.pg_class p ON p.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
      WHERE c.oid = root AND c.relispartition;
    IF part IS NOT NULL THEN
      EXECUTE pg_catalog.format('ALTER TABLE %I.%I DETACH PARTITION %s', part->>'schema', part->>'name', root::regclass);
    END IF;
    inh := '[]';
    FOR x IN SELECT pn.nspname, p.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
        JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = root AND part IS NULL ORDER BY i.inhseqno LOOP
      EXECUTE pg_catalog.format('ALTER TABLE %s NO INHERIT %I.%I', root::regclass, x.nspname, x.relname);
      inh := inh || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('schema', x.nspname, 'name', x.relname));
    END LOOP;
    -- The table, then its partitions (pg_partition_tree lists nothing for a table that is not partitioned).
    moved := ARRAY[root] || ARRAY(SELECT t.relid FROM pg_catalog.pg_partition_tree(root) t JOIN pg_catalog.pg_class c ON c.oid = t.relid
                   WHERE c.relkind IN ('r', 'p') AND t.relid <> root ORDER BY t.level, t.relid);
    fks := '[]';
    FOR x IN SELECT n2.nspname, c.relname, k.conname, pg_catalog.pg_get_constraintdef(k.oid) AS def
        FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid JOIN pg_catalog.pg_namespace n2 ON n2.oid = c.relnamespace
        WHERE k.contype = 'f' AND k.conparentid = 0 AND k.conrelid = ANY (moved) AND NOT (k.confrelid = ANY (moved)) LOOP
      EXECUTE pg_catalog.format('ALTER TABLE %I.%I DROP CONSTRAINT %I', x.nspname, x.relname, x.conname);
      fks := fks || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('schema', x.nspname, 'name', x.relname, 'constraint', x.conname, 'def', x.def));
    END LOOP;
    rels := '[]';
    FOR r IN SELECT c.oid, n2.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity
        FROM pg_catalog.unnest(moved) WITH ORDINALITY m(oid, ord) JOIN pg_catalog.pg_class c ON c.oid = m.oid
        JOIN pg_catalog.pg_namespace n2 ON n2.oid = c.relnamespace ORDER BY m.ord LOOP
      -- Its privileges, kept for undo and taken from everyone (the owner too): no role holds any on a trashed table.
      acl := (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
                'privilege', a.privilege_type, 'grantable', a.is_grantable)), '[]')
              FROM pg_catalog.pg_class c, pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault('r', c.relowner))) a WHERE c.oid = r.oid);
      FOR y IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_class c, pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault('r', c.relowner))) a WHERE c.oid = r.oid LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON TABLE %I.%I FROM %s', r.nspname, r.relname,
          CASE WHEN y.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(y.grantee)) END);
      END LOOP;
      EXECUTE pg_catalog.format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', r.nspname, r.relname);
      EXECUTE pg_catalog.format('CREATE POLICY ${TRASH_POLICY} ON %I.%I AS RESTRICTIVE USING (false) WITH CHECK (false)', r.nspname, r.relname);
      idx := '[]';
      FOR x IN SELECT c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = r.oid ORDER BY c.oid LOOP
        newname := pg_catalog.left(x.relname, 40) || '_' || pg_catalog.substr(pg_catalog.md5(tag || x.relname), 1, 12);
        EXECUTE pg_catalog.format('ALTER INDEX %I.%I RENAME TO %I', r.nspname, x.relname, newname);
        idx := idx || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('name', x.relname, 'trash', newname));
      END LOOP;
      seqs := '[]';
      FOR x IN SELECT DISTINCT s.oid, sn.nspname, s.relname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
          JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
          WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
            AND d.refobjid = r.oid AND d.deptype IN ('a', 'i') LOOP
        newname := pg_catalog.left(x.relname, 40) || '_' || pg_catalog.substr(pg_catalog.md5(tag || x.nspname || '.' || x.relname), 1, 12);
        seqs := seqs || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('schema', x.nspname, 'name', x.relname, 'trash', newname,
          'acl', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
                   'privilege', a.privilege_type, 'grantable', a.is_grantable)), '[]')
                  FROM pg_catalog.pg_class c, pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault('s', c.relowner))) a WHERE c.oid = x.oid)));
        FOR y IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_class c, pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault('s', c.relowner))) a WHERE c.oid = x.oid LOOP
          EXECUTE pg_catalog.format('REVOKE ALL ON SEQUENCE %I.%I FROM %s', x.nspname, x.relname,
            CASE WHEN y.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(y.grantee)) END);
        END LOOP;
        EXECUTE pg_catalog.format('ALTER SEQUENCE %I.%I RENAME TO %I', x.nspname, x.relname, newname);
      END LOOP;
      newname := pg_catalog.left(r.relname, 40) || '_' || pg_catalog.substr(pg_catalog.md5(tag || r.nspname || '.' || r.relname), 1, 12);
      EXECUTE pg_catalog.format('ALTER TABLE %I.%I RENAME TO %I', r.nspname, r.relname, newname);
      EXECUTE pg_catalog.format('ALTER TABLE %I.%I SET SCHEMA ${TRASH_SCHEMA}', r.nspname, newname);
      IF r.oid = root THEN roottrash := newname; END IF;
      rels := rels || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('schema', r.nspname, 'name', r.relname, 'trash', newname,
        'rls', r.relrowsecurity, 'force', r.relforcerowsecurity, 'indexes', idx, 'sequences', seqs, 'acl', acl));
    END LOOP;
    INSERT INTO pg_temp.airlock_capture (change, rel, kind, img)
      SELECT pg_catalog.current_setting('airlock.change'), root, 'q', pg_catalog.jsonb_build_object(
        'table', (rels->0->>'schema') || '.' || (rels->0->>'name'), 'schema', rels->0->>'schema', 'name', rels->0->>'name',
        'trash', roottrash, 'rows', n, 'relations', rels, 'fks', fks, 'partitionOf', part, 'inherits', inh)::json;
  END LOOP;
END
$airlock$`;
}

/** A `q` image's descriptor. */
export function parseTrashDescriptor(image: string): TrashDescriptor {
  return JSON.parse(image) as TrashDescriptor;
}

/**
 * Puts a trashed table back where it was, as the service account, inside
 * the caller's transaction. Throws a plain Error with a full sentence when
 * it cannot (the trash no longer holds it, its name is taken).
 */
export async function restoreFromTrash(service: pg.Client, d: TrashDescriptor): Promise<void> {
  const there = await service.query<{ oid: number | null }>('SELECT pg_catalog.to_regclass($1)::oid AS oid', [`${ident(TRASH_SCHEMA)}.${ident(d.trash)}`]);
  if (there.rows[0]?.oid == null) throw new Error(`Table ${d.table} is no longer in the trash (as ${TRASH_SCHEMA}.${d.trash}), so it cannot be put back.`);
  const taken = await service.query<{ oid: number | null }>('SELECT pg_catalog.to_regclass($1)::oid AS oid', [`${ident(d.schema)}.${ident(d.name)}`]);
  if (taken.rows[0]?.oid != null) {
    throw new Error(`Table ${d.table} cannot be put back from the trash: a table of that name exists again. Rename or drop it, then undo again.`);
  }
  for (const r of d.relations) {
    const inTrash = `${ident(TRASH_SCHEMA)}.${ident(r.trash)}`;
    await service.query(`DROP POLICY IF EXISTS ${TRASH_POLICY} ON ${inTrash}`);
    await service.query(`ALTER TABLE ${inTrash} ${r.rls ? 'ENABLE' : 'DISABLE'} ROW LEVEL SECURITY, ${r.force ? 'FORCE' : 'NO FORCE'} ROW LEVEL SECURITY`);
    for (const i of r.indexes) await service.query(`ALTER INDEX ${ident(TRASH_SCHEMA)}.${ident(i.trash)} RENAME TO ${ident(i.name)}`);
    for (const s of r.sequences) await service.query(`ALTER SEQUENCE ${ident(TRASH_SCHEMA)}.${ident(s.trash)} RENAME TO ${ident(s.name)}`);
    await service.query(`ALTER TABLE ${inTrash} RENAME TO ${ident(r.name)}`);
    await service.query(`ALTER TABLE ${ident(TRASH_SCHEMA)}.${ident(r.name)} SET SCHEMA ${ident(r.schema)}`);
    await restorePrivileges(service, 'TABLE', `${ident(r.schema)}.${ident(r.name)}`, r.acl);
    for (const s of r.sequences) await restorePrivileges(service, 'SEQUENCE', `${ident(r.schema)}.${ident(s.name)}`, s.acl);
  }
}

/**
 * Links a table put back by restoreFromTrash to the tables around it again:
 * its parent (INHERIT, ATTACH PARTITION) and its foreign keys (validated as
 * they are added). Run after every table of the undo is back, since a key
 * may point at another table the same undo brings back.
 */
export async function relinkRestored(service: pg.Client, d: TrashDescriptor): Promise<void> {
  const table = `${ident(d.schema)}.${ident(d.name)}`;
  for (const p of d.inherits) await service.query(`ALTER TABLE ${table} INHERIT ${ident(p.schema)}.${ident(p.name)}`);
  if (d.partitionOf !== null) await service.query(`ALTER TABLE ${ident(d.partitionOf.schema)}.${ident(d.partitionOf.name)} ATTACH PARTITION ${table} ${d.partitionOf.bound}`);
  for (const fk of d.fks) await service.query(`ALTER TABLE ${ident(fk.schema)}.${ident(fk.name)} ADD CONSTRAINT ${ident(fk.constraint)} ${fk.def}`);
}

/** One table in the trash, as `airlock trash list` shows it. */
export interface TrashItem {
  /** The change that trashed it (`airlock undo` takes that id); null for a table the journal does not know. */
  change: string | null;
  /** 'schema.table', as it was. */
  table: string;
  /** Its name in the trash schema. */
  trash: string;
  agent: string | null;
  /** When it was trashed (ISO 8601); null when unknown. */
  at: string | null;
  rows: number | null;
  /** Bytes on disk, partitions, indexes and TOAST included. */
  bytes: number;
}

/** Tables now in the trash schema (roots only: partitions count with their table), with their size. */
export async function trashTables(service: pg.Client): Promise<Map<string, number>> {
  const { rows } = await service.query<{ relname: string; bytes: string }>(
    `SELECT c.relname, (pg_catalog.pg_total_relation_size(c.oid) + coalesce((SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(t.relid))
              FROM pg_catalog.pg_partition_tree(c.oid) t WHERE t.relid <> c.oid), 0))::text AS bytes
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname`,
    [TRASH_SCHEMA],
  );
  return new Map(rows.map((r) => [r.relname, Number(r.bytes ?? 0)]));
}

/**
 * The trash as the journal and the database together say: each table a
 * committed change moved there and that is there still, oldest first, then
 * any table there the journal does not know (another instance's, or put
 * there by hand), with `change` null.
 */
export function trashItems(journal: Journal, inTrash: ReadonlyMap<string, number>): TrashItem[] {
  const left = new Map(inTrash);
  const out: TrashItem[] = [];
  for (const e of journal.list()) {
    if (e.state !== 'committed' || e.purged !== null) continue;
    for (const t of e.trashed) {
      const bytes = left.get(t.trash);
      if (bytes === undefined) continue;
      left.delete(t.trash);
      out.push({ change: e.id, table: t.table, trash: t.trash, agent: e.agent, at: e.at, rows: t.rows, bytes });
    }
  }
  for (const [trash, bytes] of left) out.push({ change: null, table: '(unknown)', trash, agent: null, at: null, rows: null, bytes });
  return out;
}

/** Drops one trashed table for good (partitions with it), as the service account. */
export async function purgeTrashed(service: pg.Client, trash: string): Promise<void> {
  await service.query(`DROP TABLE IF EXISTS ${ident(TRASH_SCHEMA)}.${ident(trash)}`);
}

/** Creates the trash schema if missing (inside installCapture's transaction), closed to PUBLIC. */
export async function ensureTrashSchema(service: pg.Client): Promise<void> {
  const exists = await service.query('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1', [TRASH_SCHEMA]);
  if (exists.rowCount !== 0) return;
  await service.query(`CREATE SCHEMA ${TRASH_SCHEMA}`);
  await service.query(`REVOKE ALL ON SCHEMA ${TRASH_SCHEMA} FROM PUBLIC`);
}

/** The SQL that removes the trash and everything in it (README: "What undo installs in the database"). */
export const REMOVE_TRASH_SQL = `DROP SCHEMA ${TRASH_SCHEMA} CASCADE; -- every trashed table with it: purge or undo first`;
