/**
 * Capture: how the rows an agent's write changes reach the undo journal.
 *
 * Airlock installs, as its service account, in a schema of its own
 * (`airlock`), four trigger functions, and on every keyed table four
 * statement-level triggers:
 *
 *   AFTER INSERT  … REFERENCING NEW TABLE                 (after-images)
 *   AFTER UPDATE  … REFERENCING OLD TABLE … NEW TABLE     (before and after)
 *   AFTER DELETE  … REFERENCING OLD TABLE                 (before-images)
 *   BEFORE TRUNCATE                                       (the whole table)
 *
 * each `FOR EACH STATEMENT WHEN (current_setting('airlock.capture', true) = 'on')`.
 * Only Airlock's write connection sets `airlock.capture` (with `SET LOCAL`,
 * inside the write's own transaction); for every other session the WHEN is
 * false and PostgreSQL queues no trigger call. Statement-level triggers see
 * every row a statement changed, cascaded rows included (each cascade is a
 * statement of its own on the child table, and fires its triggers), and
 * copy them (as `row_to_json(row)`, cheaper to make than jsonb and read
 * back as it is) in one set-based INSERT … SELECT into a temporary table of the
 * write connection's own session. That table lives in the write's
 * transaction: a savepoint or transaction rolled back takes its captured
 * rows with it, so capture follows the transaction exactly. Airlock reads
 * the rows back on the write connection before COMMIT and journals them.
 *
 * https://www.postgresql.org/docs/current/sql-createtrigger.html
 * (transition tables; WHEN on statement-level triggers).
 */
import type pg from 'pg';
import { TRASH_SCHEMA, ensureTrashSchema } from './trash.js';

/** The schema Airlock's capture functions live in. */
export const CAPTURE_SCHEMA = 'airlock';

/** The temporary table, in each write connection's own session, captured rows land in. */
export const CAPTURE_TABLE = 'airlock_capture';

/** The session setting that turns capture on, for the current transaction only. */
export const CAPTURE_SETTING = 'airlock.capture';

/** The session setting holding the change id captured rows are filed under. */
export const CHANGE_SETTING = 'airlock.change';

/** Trigger name → what it fires on and the function it runs. */
export const CAPTURE_TRIGGERS = [
  { name: 'airlock_capture_insert', fn: 'capture_insert', timing: 'AFTER INSERT', referencing: 'REFERENCING NEW TABLE AS airlock_new' },
  { name: 'airlock_capture_update', fn: 'capture_update', timing: 'AFTER UPDATE', referencing: 'REFERENCING OLD TABLE AS airlock_old NEW TABLE AS airlock_new' },
  { name: 'airlock_capture_delete', fn: 'capture_delete', timing: 'AFTER DELETE', referencing: 'REFERENCING OLD TABLE AS airlock_old' },
  { name: 'airlock_capture_truncate', fn: 'capture_truncate', timing: 'BEFORE TRUNCATE', referencing: '' },
] as const;

const INTO = `INSERT INTO pg_temp.${CAPTURE_TABLE} (change, rel, kind, img) SELECT pg_catalog.current_setting('${CHANGE_SETTING}'), TG_RELID`;

/** The trigger functions' bodies (plpgsql); every name schema-qualified, so no search_path can redirect them. */
const FUNCTIONS: Record<string, string> = {
  capture_insert: `BEGIN ${INTO}, 'i', pg_catalog.row_to_json(r) FROM airlock_new r; RETURN NULL; END`,
  capture_update: `BEGIN ${INTO}, 'o', pg_catalog.row_to_json(r) FROM airlock_old r; ${INTO}, 'n', pg_catalog.row_to_json(r) FROM airlock_new r; RETURN NULL; END`,
  capture_delete: `BEGIN ${INTO}, 'd', pg_catalog.row_to_json(r) FROM airlock_old r; RETURN NULL; END`,
  // TRUNCATE triggers cannot have transition tables: read the rows before they go. ONLY: a TRUNCATE fires this trigger on each table it empties.
  capture_truncate:
    "BEGIN EXECUTE pg_catalog.format('INSERT INTO pg_temp.airlock_capture (change, rel, kind, img) SELECT pg_catalog.current_setting(''airlock.change''), $1, ''t'', " +
    "pg_catalog.row_to_json(r) FROM ONLY %I.%I r', TG_TABLE_SCHEMA, TG_TABLE_NAME) USING TG_RELID; RETURN NULL; END",
};

/** Created on each write connection when it opens; emptied at every COMMIT. */
export const CREATE_CAPTURE_TABLE =
  `CREATE TEMPORARY TABLE IF NOT EXISTS ${CAPTURE_TABLE} (seq bigint GENERATED ALWAYS AS IDENTITY, change text NOT NULL, ` +
  `rel oid NOT NULL, kind "char" NOT NULL, img json NOT NULL) ON COMMIT DELETE ROWS`;

/** Turns capture on for the current transaction (or savepoint), filed under `changeId`; answers one row of three columns. */
export function captureOnQuery(changeId: string): string {
  return `SELECT pg_catalog.set_config('${CAPTURE_SETTING}', 'on', true), pg_catalog.set_config('${CHANGE_SETTING}', '${changeId.replace(/'/g, "''")}', true), 'capture'`;
}

/**
 * The captured row's table as 'schema.table' when it was captured: a table
 * moved into the trash later in the same transaction (trash.ts) is named
 * as it was, from the move's descriptor.
 */
const CAPTURED_NAME =
  `CASE WHEN n.nspname = '${TRASH_SCHEMA}' THEN coalesce((SELECT (m->>'schema') || '.' || (m->>'name') FROM pg_temp.${CAPTURE_TABLE} q ` +
  `CROSS JOIN LATERAL pg_catalog.json_array_elements(q.img->'relations') m WHERE q.kind = 'q' AND m->>'trash' = r.relname LIMIT 1), ` +
  `n.nspname || '.' || r.relname) ELSE n.nspname || '.' || r.relname END`;

const FROM_CAPTURE =
  `FROM pg_temp.${CAPTURE_TABLE} c JOIN pg_catalog.pg_class r ON r.oid = c.rel ` + 'JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace';

/**
 * Every row captured in this transaction so far, one row each, in capture
 * order: change, 'schema.table', kind, image (`row_to_json(row)`'s text,
 * kept as text, never parsed into numbers).
 */
export const READ_CAPTURED = `SELECT c.change, ${CAPTURED_NAME}, c.kind::text, c.img::text ${FROM_CAPTURE} ORDER BY c.seq`;

/** Rows captured for one change, counted per table and kind: `'schema.table', kind, count`. */
export function countCapturedQuery(changeId: string): string {
  // A trashed table (kind q, trash.ts) counts the rows it held, under its name as it was.
  return (
    `SELECT CASE WHEN c.kind = 'q' THEN c.img->>'table' ELSE ${CAPTURED_NAME} END, c.kind::text, ` +
    `pg_catalog.sum(CASE WHEN c.kind = 'q' THEN (c.img->>'rows')::bigint ELSE 1 END) ${FROM_CAPTURE} WHERE c.change = '${changeId.replace(/'/g, "''")}' GROUP BY 1, 2`
  );
}

/** A table's key: its primary key, else a unique, non-partial index on plain NOT NULL columns. */
export const KEY_COLUMNS_SQL = `
  SELECT k.indrelid AS rel, (pg_catalog.array_agg(a.attname::text ORDER BY u.ord)) AS cols
  FROM (SELECT DISTINCT ON (i.indrelid) i.indrelid, i.indkey, i.indexrelid FROM pg_catalog.pg_index i
        WHERE (i.indisprimary OR (i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute x WHERE x.attrelid = i.indrelid AND x.attnum = ANY (i.indkey) AND NOT x.attnotnull)))
          AND i.indisvalid AND 0 <> ALL (i.indkey)
        ORDER BY i.indrelid, i.indisprimary DESC, i.indexrelid) k
  CROSS JOIN LATERAL pg_catalog.unnest(k.indkey) WITH ORDINALITY u(attnum, ord)
  JOIN pg_catalog.pg_attribute a ON a.attrelid = k.indrelid AND a.attnum = u.attnum
  GROUP BY k.indrelid`;

/** Where capture stands on one table. */
export interface CaptureState {
  /** 'schema.table'. */
  table: string;
  installed: boolean;
  /** Why not, in a sentence. */
  reason: string | null;
}

/** Ordinary and partitioned tables Airlock may capture: not system ones, not its own, not temporary, not partitions (their parent captures them). */
const TABLES_SQL = `
  SELECT c.oid, n.nspname, c.relname, kc.cols,
         (SELECT pg_catalog.count(*) FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND t.tgenabled <> 'D'
            AND t.tgname = ANY ($1::text[])) AS present
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN (${KEY_COLUMNS_SQL}) kc ON kc.rel = c.oid
  WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND NOT c.relispartition
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', '${CAPTURE_SCHEMA}') AND n.nspname !~ '^pg_'
    AND n.nspname NOT LIKE 'airlock_trash%'
  ORDER BY n.nspname, c.relname`;

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

interface TableRow {
  oid: number;
  nspname: string;
  relname: string;
  cols: string[] | null;
  present: string;
}

/** Where capture is in place and where it is not (for `airlock doctor` and the start-up warnings). */
export async function captureStatus(service: pg.Client): Promise<CaptureState[]> {
  const names = CAPTURE_TRIGGERS.map((t) => t.name);
  const { rows } = await service.query<TableRow>(TABLES_SQL, [names]);
  const fns = await service.query<{ proname: string; prosrc: string }>(
    'SELECT p.proname, p.prosrc FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1',
    [CAPTURE_SCHEMA],
  );
  const functionsOk = Object.entries(FUNCTIONS).every(([name, body]) => fns.rows.some((f) => f.proname === name && f.prosrc === body));
  return rows.map((r) => {
    const table = `${r.nspname}.${r.relname}`;
    if (r.cols === null) return { table, installed: false, reason: 'it has no primary key or unique NOT NULL key, so undo could not tell its rows apart' };
    if (!functionsOk) return { table, installed: false, reason: `Airlock's capture functions in schema "${CAPTURE_SCHEMA}" are missing or changed` };
    if (Number(r.present) !== CAPTURE_TRIGGERS.length) return { table, installed: false, reason: "its capture triggers are missing or disabled" };
    return { table, installed: true, reason: null };
  });
}

/**
 * Installs capture on every keyed table that lacks it (and the functions,
 * if missing or changed), under an advisory lock so several instances do
 * not race; a table where it cannot be installed (not the service account's
 * to alter, say) is reported, not fatal. Returns the state of each table.
 */
export async function installCapture(service: pg.Client): Promise<CaptureState[]> {
  const before = await captureStatus(service);
  const trash = await service.query('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1', [TRASH_SCHEMA]);
  if (trash.rowCount !== 0 && before.every((s) => s.installed || s.reason?.startsWith('it has no primary key') === true)) return before;
  const failures = new Map<string, string>();
  await service.query('BEGIN');
  try {
    await service.query("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('airlock read role'), pg_catalog.hashtext('airlock capture'))");
    // CREATE SCHEMA needs CREATE on the database even when the schema exists: only when it does not.
    const exists = await service.query('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1', [CAPTURE_SCHEMA]);
    if (exists.rowCount === 0) {
      await service.query('SAVEPOINT airlock_capture_schema');
      try {
        await service.query(`CREATE SCHEMA ${CAPTURE_SCHEMA}`);
      } catch (err) {
        await service.query('ROLLBACK');
        const reason = `the service account could not create the schema "${CAPTURE_SCHEMA}" for Airlock's capture functions (${(err as Error).message}); a database owner can run CREATE SCHEMA ${CAPTURE_SCHEMA} AUTHORIZATION <service account>`;
        return before.map((st) => (st.installed ? st : { ...st, reason: st.reason?.startsWith('it has no primary key') === true ? st.reason : reason }));
      }
    }
    // Where an agent's DROP TABLE puts the table (trash.ts); without it, such a DROP fails and is rolled back.
    await service.query('SAVEPOINT airlock_trash_schema');
    try {
      await ensureTrashSchema(service);
      await service.query('RELEASE SAVEPOINT airlock_trash_schema');
    } catch {
      // Deliberately not fatal: capture goes on without it, and an agent's DROP TABLE then fails
      // ("schema airlock_trash does not exist") and is rolled back, the database's words telling why.
      await service.query('ROLLBACK TO SAVEPOINT airlock_trash_schema');
    }
    // The functions run as the writer (not SECURITY DEFINER): they write only into the writer's own temporary table.
    const fns = await service.query<{ proname: string; prosrc: string }>(
      'SELECT p.proname, p.prosrc FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1',
      [CAPTURE_SCHEMA],
    );
    for (const [name, body] of Object.entries(FUNCTIONS)) {
      if (fns.rows.some((f) => f.proname === name && f.prosrc === body)) continue;
      await service.query(`CREATE OR REPLACE FUNCTION ${CAPTURE_SCHEMA}.${name}() RETURNS trigger LANGUAGE plpgsql AS $airlock$${body}$airlock$`);
    }
    const names = CAPTURE_TRIGGERS.map((t) => t.name);
    const { rows } = await service.query<TableRow>(TABLES_SQL, [names]);
    for (const r of rows) {
      if (r.cols === null || Number(r.present) === CAPTURE_TRIGGERS.length) continue;
      const table = `${ident(r.nspname)}.${ident(r.relname)}`;
      await service.query('SAVEPOINT airlock_capture');
      try {
        for (const t of CAPTURE_TRIGGERS) {
          await service.query(`DROP TRIGGER IF EXISTS ${t.name} ON ${table}`);
          await service.query(
            `CREATE TRIGGER ${t.name} ${t.timing} ON ${table} ${t.referencing} FOR EACH STATEMENT ` +
              `WHEN (pg_catalog.current_setting('${CAPTURE_SETTING}', true) = 'on') EXECUTE FUNCTION ${CAPTURE_SCHEMA}.${t.fn}()`,
          );
        }
        await service.query('RELEASE SAVEPOINT airlock_capture');
      } catch (err) {
        await service.query('ROLLBACK TO SAVEPOINT airlock_capture');
        await service.query('RELEASE SAVEPOINT airlock_capture');
        failures.set(`${r.nspname}.${r.relname}`, (err as Error).message);
      }
    }
    await service.query('COMMIT');
  } catch (err) {
    await service.query('ROLLBACK').catch(() => {
      // Deliberately ignored: the install's own error is the one to report.
    });
    throw err;
  }
  const after = await captureStatus(service);
  return after.map((s) => (failures.has(s.table) ? { ...s, reason: `Airlock could not install its capture triggers: ${failures.get(s.table)}` } : s));
}

/** The SQL that removes everything capture installed (README: "Removing undo capture"). */
export const REMOVE_CAPTURE_SQL = `DROP SCHEMA ${CAPTURE_SCHEMA} CASCADE; -- drops the functions and, with them, every airlock_capture_* trigger`;
