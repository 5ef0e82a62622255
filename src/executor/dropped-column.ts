/**
 * ALTER TABLE … DROP COLUMN, made recoverable (issue 13, "Destructive DDL"):
 * before the agent's ALTER runs, in the same transaction and as the same
 * role, the column's definition (image kind `c`) and every row's key and
 * value (kind `x`, `row_to_json` of the key columns and the column) go into
 * the capture table, so they follow the transaction exactly and are
 * journalled with it. Undo adds the column back and sets each row's value by
 * its key.
 *
 * What undo puts back: the column's name, type (with its modifier),
 * collation, default, NOT NULL, identity or generation expression, and the
 * indexes and constraints PostgreSQL dropped with it (by their definitions).
 * What it cannot: the column's position (it comes back last), its
 * statistics target, storage and comment, column privileges, and views
 * (PostgreSQL refuses the DROP while a view uses the column, unless CASCADE).
 *
 * https://www.postgresql.org/docs/current/sql-altertable.html (DROP COLUMN:
 * "Indexes and table constraints involving the column will be automatically
 * dropped as well").
 */
import type pg from 'pg';
import { KEY_COLUMNS_SQL } from './capture.js';

/** The `c` image: what undo needs to add the column back. */
export interface ColumnDescriptor {
  /** 'schema.table'. */
  table: string;
  schema: string;
  name: string;
  column: string;
  /** format_type(): the type with its modifier ('numeric(10,2)'). */
  type: string;
  collation: string | null;
  notNull: boolean;
  /** The default expression, as pg_get_expr wrote it. */
  default: string | null;
  /** 'a' (ALWAYS), 'd' (BY DEFAULT) or ''. */
  identity: string;
  /** A stored generated column's expression, or null. */
  generated: string | null;
  /** The key columns the `x` images are matched on. */
  key: string[];
  /** Indexes and constraints that went with the column, as CREATE INDEX / ADD CONSTRAINT text. */
  indexes: string[];
  constraints: { name: string; def: string }[];
}

function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * One DO block (run as the agent's write role, capture on, before its
 * ALTER) that files each named column's definition and values under the
 * current change. A column that does not exist (DROP COLUMN IF EXISTS) is
 * skipped; PostgreSQL answers the ALTER itself. A column that is part of
 * the table's key, or a table without a key, is refused: its rows could not
 * be told apart to put the values back.
 */
export function journalColumnsSql(table: { schema: string | null; name: string }, columns: readonly string[]): string {
  const regclass = `pg_catalog.to_regclass(${literal(table.schema === null ? ident(table.name) : `${ident(table.schema)}.${ident(table.name)}`)})::oid`;
  const names = `ARRAY[${columns.map(literal).join(', ')}]::text[]`;
  return `DO $airlock$
DECLARE
  v_rel oid := ${regclass};
  v_col text;
  v_att record;
  v_key text[];
  v_idx jsonb;
  v_cons jsonb;
BEGIN
  IF v_rel IS NULL THEN RETURN; END IF;
  SELECT k.cols INTO v_key FROM (${KEY_COLUMNS_SQL}) k WHERE k.rel = v_rel;
  FOREACH v_col IN ARRAY ${names} LOOP
    SELECT t.attnum, t.atttypid, t.attnotnull, t.attidentity, t.attgenerated, pg_catalog.format_type(t.atttypid, t.atttypmod) AS type,
           CASE WHEN t.attcollation <> ty.typcollation THEN (SELECT pg_catalog.quote_ident(co.collname) FROM pg_catalog.pg_collation co WHERE co.oid = t.attcollation) END AS coll,
           (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = t.attrelid AND d.adnum = t.attnum) AS expr,
           n.nspname, c.relname
      INTO v_att FROM pg_catalog.pg_attribute t JOIN pg_catalog.pg_type ty ON ty.oid = t.atttypid
      JOIN pg_catalog.pg_class c ON c.oid = t.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE t.attrelid = v_rel AND t.attname = v_col AND t.attnum > 0 AND NOT t.attisdropped;
    CONTINUE WHEN NOT FOUND;
    IF v_key IS NULL OR v_col = ANY (v_key) THEN
      RAISE EXCEPTION USING ERRCODE = '0A000',
        MESSAGE = pg_catalog.format('airlock: column %s of %s.%s cannot be dropped by an agent: %s', v_col, v_att.nspname, v_att.relname,
          CASE WHEN v_key IS NULL THEN 'the table has no primary key or unique NOT NULL key, so its values could not be put back row by row'
               ELSE 'it is part of the table''s key, so its values could not be put back row by row' END),
        HINT = 'Nothing was changed. A human can run it directly.';
    END IF;
    v_idx := (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.pg_get_indexdef(i.indexrelid)), '[]') FROM pg_catalog.pg_index i
             WHERE i.indrelid = v_rel AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = v_rel)
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = i.indexrelid
                             AND d.refobjid = v_rel AND d.refobjsubid = v_att.attnum));
    v_cons := (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('name', k.conname, 'def', pg_catalog.pg_get_constraintdef(k.oid))), '[]')
               FROM pg_catalog.pg_constraint k WHERE k.conrelid = v_rel AND v_att.attnum = ANY (k.conkey) AND k.contype IN ('c', 'u', 'f', 'x', 'p'));
    INSERT INTO pg_temp.airlock_capture (change, rel, kind, img)
      SELECT pg_catalog.current_setting('airlock.change'), v_rel, 'c', pg_catalog.jsonb_build_object(
        'table', v_att.nspname || '.' || v_att.relname, 'schema', v_att.nspname, 'name', v_att.relname, 'column', v_col, 'type', v_att.type,
        'collation', v_att.coll, 'notNull', v_att.attnotnull, 'default', CASE WHEN v_att.attgenerated = '' THEN v_att.expr END,
        'identity', v_att.attidentity::text, 'generated', CASE WHEN v_att.attgenerated <> '' THEN v_att.expr END,
        'key', pg_catalog.to_jsonb(v_key), 'indexes', v_idx, 'constraints', v_cons)::json;
    IF v_att.attgenerated = '' THEN
      EXECUTE pg_catalog.format(
        'INSERT INTO pg_temp.airlock_capture (change, rel, kind, img) SELECT pg_catalog.current_setting(''airlock.change''), $1, ''x'', pg_catalog.row_to_json(s) FROM (SELECT %s, t.%I FROM %s t) s',
        (SELECT pg_catalog.string_agg(pg_catalog.format('t.%I', k), ', ') FROM pg_catalog.unnest(v_key) k), v_col, v_rel::regclass) USING v_rel;
    END IF;
  END LOOP;
END
$airlock$`;
}

/** A `c` image's descriptor. */
export function parseColumnDescriptor(image: string): ColumnDescriptor {
  return JSON.parse(image) as ColumnDescriptor;
}

/**
 * Adds a dropped column back and sets every journalled row's value by its
 * key, as the service account inside the caller's transaction. Throws a
 * plain Error, in a full sentence, when it cannot (the table is gone, a
 * column of that name exists again).
 */
export async function restoreColumn(service: pg.Client, d: ColumnDescriptor, values: readonly string[]): Promise<void> {
  const table = `${ident(d.schema)}.${ident(d.name)}`;
  const found = await service.query<{ oid: number | null }>('SELECT pg_catalog.to_regclass($1)::oid AS oid', [table]);
  const oid = found.rows[0]?.oid ?? null;
  if (oid === null) throw new Error(`Table ${d.table} no longer exists, so its column ${d.column} cannot be put back.`);
  const taken = await service.query('SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attname = $2 AND NOT attisdropped', [oid, d.column]);
  if (taken.rowCount !== 0) throw new Error(`Column ${d.column} of ${d.table} cannot be put back: the table has a column of that name again. Drop or rename it, then undo again.`);
  const col = ident(d.column);
  const collate = d.collation === null ? '' : ` COLLATE ${d.collation}`;
  if (d.generated !== null) {
    // Its values follow from the expression: computed again.
    await service.query(`ALTER TABLE ${table} ADD COLUMN ${col} ${d.type}${collate} GENERATED ALWAYS AS (${d.generated}) STORED`);
  } else {
    await service.query(`ALTER TABLE ${table} ADD COLUMN ${col} ${d.type}${collate}`);
    if (values.length > 0) {
      const keyMatch = d.key.map((c) => `t.${ident(c)} = k.${ident(c)}`).join(' AND ');
      // The values' own record type: the key columns and this one, typed as the table has them now.
      await service.query(
        `UPDATE ${table} t SET ${col} = k.${col} FROM pg_catalog.json_populate_recordset(NULL::${table}, $1::json) k WHERE ${keyMatch}`,
        [`[${values.join(',')}]`],
      );
    }
    if (d.default !== null) await service.query(`ALTER TABLE ${table} ALTER COLUMN ${col} SET DEFAULT ${d.default}`);
    if (d.identity === 'a' || d.identity === 'd') {
      await service.query(`ALTER TABLE ${table} ALTER COLUMN ${col} SET NOT NULL`);
      await service.query(`ALTER TABLE ${table} ALTER COLUMN ${col} ADD GENERATED ${d.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY`);
      await service.query(`SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence($1, $2), coalesce((SELECT pg_catalog.max(${col}) FROM ${table}), 1))`, [table, d.column]);
    }
  }
  if (d.notNull) await service.query(`ALTER TABLE ${table} ALTER COLUMN ${col} SET NOT NULL`);
  for (const def of d.indexes) await service.query(def);
  for (const c of d.constraints) await service.query(`ALTER TABLE ${table} ADD CONSTRAINT ${ident(c.name)} ${c.def}`);
}
