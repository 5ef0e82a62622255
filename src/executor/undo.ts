/**
 * Undo: puts the rows of journalled changes back exactly as they were (same
 * keys, same values), in one transaction, as Airlock's service account.
 *
 * For every row a change touched, the journal holds the image before the
 * first change and after the last one. Undo wants each row back at its
 * before-image (or gone, if the change inserted it). A row that is no
 * longer at its after-image was changed again since, by someone: that is a
 * conflict, and undo stops and lists it, unless forced. Rows are locked
 * (`FOR UPDATE`) while they are compared, so nothing changes them between
 * the check and the undo.
 *
 * Order: deletes (of rows the change inserted) children first, then
 * updates, then inserts (of rows the change deleted) parents first, by the
 * foreign keys among the tables, so no foreign key check fails midway.
 *
 * The undo itself runs with capture on: it is journalled like a write, and
 * can be undone in turn.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { DDL_IMAGE_KINDS } from '../state/journal.js';
import type { ChangeEntry, Journal, RowImage } from '../state/journal.js';
import { parseColumnDescriptor, restoreColumn } from './dropped-column.js';
import type { ColumnDescriptor } from './dropped-column.js';
import { parseTrashDescriptor, relinkRestored, restoreFromTrash } from './trash.js';
import { CREATE_CAPTURE_TABLE, KEY_COLUMNS_SQL, READ_CAPTURED, captureOnQuery } from './capture.js';

export interface UndoOptions {
  /** Work out the plan and the conflicts, change nothing. */
  dryRun?: boolean;
  /** Put rows back even where they were changed again since (overwriting those later changes). */
  force?: boolean;
  /** The admin's name, for the journal and the record. */
  by: string;
}

/** A row changed again after the change being undone. */
export interface UndoConflict {
  table: string;
  /** The row's key, as JSON of its key columns. */
  key: string;
  /** What undo expected to find (the change's after-image), or null when the change deleted the row. */
  expected: string | null;
  /** What is there now, or null if the row is gone. */
  found: string | null;
}

export interface UndoTablePlan {
  table: string;
  /** Rows undo deletes (the changes inserted them). */
  delete: number;
  /** Rows undo sets back to their before-image. */
  update: number;
  /** Rows undo inserts again (the changes deleted them). */
  insert: number;
}

export interface UndoResult {
  /** The changes undone (or that would be). */
  changes: string[];
  /** DDL taken back first, in words: tables put back from the trash, dropped columns added back. */
  ddl: string[];
  /** Per table, in the order undo works on them. */
  tables: UndoTablePlan[];
  conflicts: UndoConflict[];
  /** Whether anything was changed: false for a dry run, or when conflicts stopped it. */
  applied: boolean;
  /** The undo's own change id in the journal, when applied. */
  undoChangeId: string | null;
}

/** A request that cannot be carried out as asked (unknown change, already undone…): the admin API answers 4xx with its message. */
export class UndoRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UndoRefused';
  }
}

/**
 * The top-level fields of a JSON object as PostgreSQL's row_to_json writes
 * it, each value as its raw text (numbers keep every digit).
 */
export function topLevelFields(json: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = json.indexOf('{') + 1;
  const skipSpace = (): void => {
    while (i < json.length && /\s/.test(json[i]!)) i++;
  };
  const readString = (): string => {
    const start = i;
    i++;
    while (json[i] !== '"') i += json[i] === '\\' ? 2 : 1;
    i++;
    return json.slice(start, i);
  };
  for (;;) {
    skipSpace();
    if (json[i] === '}' || i >= json.length) return out;
    const name = JSON.parse(readString()) as string;
    skipSpace();
    i++; // ':'
    skipSpace();
    const start = i;
    let depth = 0;
    for (;;) {
      const ch = json[i];
      if (ch === '"') {
        readString();
        continue;
      }
      if (ch === '{' || ch === '[') depth++;
      else if (ch === '}' || ch === ']') {
        if (depth === 0) break;
        depth--;
      } else if (ch === ',' && depth === 0) break;
      i++;
    }
    out.set(name, json.slice(start, i).trim());
    if (json[i] === ',') i++;
  }
}

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** 'schema.table' → its quoted SQL name. */
function sqlName(table: string): string {
  const dot = table.indexOf('.');
  return `${ident(table.slice(0, dot))}.${ident(table.slice(dot + 1))}`;
}

interface TableShape {
  oid: number;
  key: string[];
  /** Columns an INSERT or UPDATE may set (not dropped, not generated). */
  columns: string[];
}

/** One row's journey through the changes: its image before the first and after the last (null: absent). */
interface RowStory {
  key: string;
  before: string | null;
  after: string | null;
}

/** The changes to undo, each checked to be undoable as asked. */
function checkedEntries(journal: Journal, ids: readonly string[]): ChangeEntry[] {
  if (ids.length === 0) throw new UndoRefused('No change was named, so there is nothing to undo.');
  const entries: ChangeEntry[] = [];
  for (const id of new Set(ids)) {
    const entry = journal.get(id);
    if (entry === null) throw new UndoRefused(`The journal has no change ${id}. \`airlock changes\` lists the changes it holds.`);
    if (entry.state === 'undone') throw new UndoRefused(`Change ${id} was already undone (by change ${entry.undoneBy ?? '?'}). To redo it, undo that change.`);
    if (entry.state === 'pending') {
      throw new UndoRefused(`Whether change ${id} (transaction ${entry.txid}) committed is not known yet; Airlock settles it with pg_xact_status() at its next look. Try again in a minute.`);
    }
    if (entry.state === 'aborted') throw new UndoRefused(`Change ${id} never committed (its transaction ${entry.txid} was rolled back), so there is nothing to undo.`);
    if (entry.purged !== null) {
      throw new UndoRefused(
        `Change ${id} dropped ${entry.trashed.map((t) => t.table).join(', ')}, and ${entry.purged.by} purged ${entry.trashed.length === 1 ? 'it' : 'them'} from the trash at ${entry.purged.at}: ` +
          'the data is gone for good, so the change cannot be undone.',
      );
    }
    entries.push(entry);
  }
  // Oldest first: the journal's own order.
  const order = new Map(journal.list({ all: true }).map((e, i) => [e.id, i]));
  return entries.sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0));
}

async function shapesOf(service: pg.Client, tables: readonly string[]): Promise<Map<string, TableShape>> {
  const out = new Map<string, TableShape>();
  for (const table of tables) {
    const found = await service.query<{ oid: number | null }>('SELECT pg_catalog.to_regclass($1)::oid AS oid', [sqlName(table)]);
    const oid = found.rows[0]?.oid ?? null;
    if (oid === null) throw new UndoRefused(`Table ${table} no longer exists, so its rows cannot be put back.`);
    const key = await service.query<{ cols: string[] }>(`SELECT cols FROM (${KEY_COLUMNS_SQL}) k WHERE rel = $1`, [oid]);
    const cols = key.rows[0]?.cols;
    if (cols === undefined) throw new UndoRefused(`Table ${table} has no primary key or unique NOT NULL key now, so undo cannot tell its rows apart.`);
    const columns = await service.query<{ attname: string }>(
      "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
      [oid],
    );
    out.set(table, { oid, key: cols, columns: columns.rows.map((r) => r.attname) });
  }
  return out;
}

/** Each row's before- and after-image over the changes, per table, in capture order. */
function stories(rowsInOrder: readonly RowImage[], shapes: ReadonlyMap<string, TableShape>): Map<string, Map<string, RowStory>> {
  const out = new Map<string, Map<string, RowStory>>();
  for (const r of rowsInOrder) {
    const shape = shapes.get(r.table)!;
    const fields = topLevelFields(r.image);
    const key = JSON.stringify(shape.key.map((c) => fields.get(c) ?? null));
    let table = out.get(r.table);
    if (table === undefined) out.set(r.table, (table = new Map()));
    let story = table.get(key);
    if (story === undefined) {
      // First seen: a row an insert (or a key-changing update) made did not exist before; any other image is the row as it was.
      story = { key, before: r.kind === 'i' || r.kind === 'n' ? null : r.image, after: null };
      table.set(key, story);
    }
    story.after = r.kind === 'i' || r.kind === 'n' ? r.image : r.kind === 'o' ? story.after : null;
  }
  return out;
}

/** Tables ordered parents first by the foreign keys among them. */
async function parentsFirst(service: pg.Client, shapes: ReadonlyMap<string, TableShape>): Promise<string[]> {
  const byOid = new Map([...shapes].map(([t, s]) => [s.oid, t]));
  const { rows } = await service.query<{ child: number; parent: number }>(
    "SELECT conrelid AS child, confrelid AS parent FROM pg_catalog.pg_constraint WHERE contype = 'f' AND conrelid = ANY ($1::oid[]) AND confrelid = ANY ($1::oid[]) AND conrelid <> confrelid",
    [[...byOid.keys()]],
  );
  const parents = new Map<string, Set<string>>([...shapes.keys()].map((t) => [t, new Set<string>()]));
  for (const r of rows) parents.get(byOid.get(r.child)!)!.add(byOid.get(r.parent)!);
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (t: string, path: Set<string>): void => {
    if (seen.has(t) || path.has(t)) return; // a cycle: taken as it comes
    path.add(t);
    for (const p of parents.get(t)!) visit(p, path);
    path.delete(t);
    seen.add(t);
    out.push(t);
  };
  for (const t of [...shapes.keys()].sort()) visit(t, new Set());
  return out;
}

/** The rows of `story` as they are now, by key (locked FOR UPDATE when asked). */
async function currentRows(service: pg.Client, name: string, shape: TableShape, story: ReadonlyMap<string, RowStory>, lock: boolean): Promise<Map<string, string>> {
  const keyMatch = shape.key.map((c) => `t.${ident(c)} = k.${ident(c)}`).join(' AND ');
  const images = [...story.values()].map((s) => s.before ?? s.after!);
  const now = await service.query<{ img: string }>(
    `SELECT pg_catalog.row_to_json(t)::text AS img FROM ${name} t WHERE EXISTS (SELECT 1 FROM pg_catalog.json_populate_recordset(NULL::${name}, $1::json) k WHERE ${keyMatch})${lock ? ' FOR UPDATE OF t' : ''}`,
    [`[${images.join(',')}]`],
  );
  const current = new Map<string, string>();
  for (const r of now.rows) {
    const fields = topLevelFields(r.img);
    current.set(JSON.stringify(shape.key.map((c) => fields.get(c) ?? null)), r.img);
  }
  return current;
}

/**
 * How many rows of a committed change were changed again since (no longer
 * at the change's after-image), read without locking; a table gone or
 * without a key counts as a conflict of all its rows.
 */
export async function countConflicts(service: pg.Client, journal: Journal, id: string): Promise<number> {
  // DDL images (a trashed table, a dropped column) are checked when undo runs, not counted here.
  const rows = (await journal.rows(id)).filter((r) => !DDL_IMAGE_KINDS.has(r.kind));
  let conflicts = 0;
  const tables = [...new Set(rows.map((r) => r.table))];
  const shapes = new Map<string, TableShape>();
  for (const table of tables) {
    try {
      for (const [t, shape] of await shapesOf(service, [table])) shapes.set(t, shape);
    } catch (err) {
      if (!(err instanceof UndoRefused)) throw err;
      conflicts += rows.filter((r) => r.table === table && r.kind !== 'n').length;
    }
  }
  const byTable = stories(
    rows.filter((r) => shapes.has(r.table)),
    shapes,
  );
  for (const [table, story] of byTable) {
    const current = await currentRows(service, sqlName(table), shapes.get(table)!, story, false);
    for (const s of story.values()) if ((current.get(s.key) ?? null) !== s.after) conflicts++;
  }
  return conflicts;
}

/**
 * Takes back the DDL among `images` (in capture order), newest first: tables
 * moved into the trash are moved back, dropped columns added back with their
 * values. Returns what was done, in words; throws UndoRefused when it cannot.
 */
async function undoDdl(service: pg.Client, images: readonly RowImage[]): Promise<string[]> {
  const steps: { what: string; label: string; run: () => Promise<void>; after?: () => Promise<void> }[] = [];
  let column: { d: ColumnDescriptor; values: string[] } | null = null;
  for (const r of images) {
    if (r.kind === 'q') {
      const d = parseTrashDescriptor(r.image);
      steps.push({
        what: `table ${d.table} put back from the trash (${d.rows} row(s), with its indexes and constraints)`,
        label: `table ${d.table}`,
        run: () => restoreFromTrash(service, d),
        after: () => relinkRestored(service, d),
      });
    } else if (r.kind === 'c') {
      const c = { d: parseColumnDescriptor(r.image), values: [] as string[] };
      column = c;
      steps.push({
        what: `column ${c.d.column} of ${c.d.table} added back (${c.d.type}, ${c.d.generated !== null ? 'computed again' : 'its values set by key'})`,
        label: `column ${c.d.column} of ${c.d.table}`,
        run: () => restoreColumn(service, c.d, c.values),
      });
    } else if (r.kind === 'x' && column !== null) {
      column.values.push(r.image);
    }
  }
  const done: string[] = [];
  if (steps.length === 0) return done;
  await service.query(`SELECT pg_catalog.set_config('airlock.capture', 'off', true)`);
  steps.reverse();
  // Every table back first, then their links (a foreign key may point at another table this undo brings back).
  for (const phase of ['run', 'after'] as const) {
    for (const step of steps) {
      try {
        await step[phase]?.();
      } catch (err) {
        // The caller rolls the whole undo back.
        throw new UndoRefused(`Undo stopped, and nothing was changed: putting back ${step.label} failed: ${(err as Error).message}`);
      }
      if (phase === 'run') done.push(step.what);
    }
  }
  return done;
}

/**
 * Undoes the changes `ids` (journal change ids), or with `dryRun` says what
 * it would do. Resolves with the plan and any conflicts; throws UndoRefused
 * for a request that cannot be done as asked.
 */
export async function undoChanges(service: pg.Client, journal: Journal, ids: readonly string[], options: UndoOptions): Promise<UndoResult> {
  const entries = checkedEntries(journal, ids);
  const all: RowImage[] = [];
  for (const e of entries) all.push(...(await journal.rows(e.id)));
  const changes = entries.map((e) => e.id);
  const rows = all.filter((r) => !DDL_IMAGE_KINDS.has(r.kind));

  await service.query(CREATE_CAPTURE_TABLE);
  await service.query('BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE');
  try {
    // DDL first, newest first (a dropped table or column must be back before its rows are), uncaptured:
    // an undo that puts a table or column back is not itself undone by undo (the agent can drop it again).
    const ddl = await undoDdl(service, all);
    const shapes = await shapesOf(service, [...new Set(rows.map((r) => r.table))]);
    const byTable = stories(rows, shapes);
    const order = await parentsFirst(service, shapes);
    const undoChangeId = randomUUID();
    if (!options.dryRun) await service.query(captureOnQuery(undoChangeId));
    const conflicts: UndoConflict[] = [];
    const work = new Map<string, { del: string[]; upd: string[]; ins: string[] }>();
    for (const table of order) {
      const shape = shapes.get(table)!;
      const story = byTable.get(table)!;
      const name = sqlName(table);
      // What is there now, locked until the undo commits or rolls back.
      const current = await currentRows(service, name, shape, story, true);
      const w = { del: [] as string[], upd: [] as string[], ins: [] as string[] };
      for (const s of story.values()) {
        const found = current.get(s.key) ?? null;
        if (found !== s.after) conflicts.push({ table, key: s.key, expected: s.after, found });
        if (s.before === null) {
          if (found !== null) w.del.push(found);
        } else if (found === null) w.ins.push(s.before);
        else if (found !== s.before) w.upd.push(s.before);
      }
      work.set(table, w);
    }
    const plan: UndoTablePlan[] = order.map((table) => {
      const w = work.get(table)!;
      return { table, delete: w.del.length, update: w.upd.length, insert: w.ins.length };
    });
    if (options.dryRun === true || (conflicts.length > 0 && options.force !== true)) {
      await service.query('ROLLBACK');
      return { changes, ddl, tables: plan, conflicts, applied: false, undoChangeId: null };
    }
    for (const table of [...order].reverse()) {
      const w = work.get(table)!;
      if (w.del.length === 0) continue;
      const shape = shapes.get(table)!;
      const name = sqlName(table);
      const keyMatch = shape.key.map((c) => `t.${ident(c)} = k.${ident(c)}`).join(' AND ');
      await service.query(`DELETE FROM ${name} t USING pg_catalog.json_populate_recordset(NULL::${name}, $1::json) k WHERE ${keyMatch}`, [`[${w.del.join(',')}]`]);
    }
    for (const table of order) {
      const w = work.get(table)!;
      if (w.upd.length === 0) continue;
      const shape = shapes.get(table)!;
      const name = sqlName(table);
      const keyMatch = shape.key.map((c) => `t.${ident(c)} = k.${ident(c)}`).join(' AND ');
      const set = shape.columns.map((c) => `${ident(c)} = k.${ident(c)}`).join(', ');
      await service.query(`UPDATE ${name} t SET ${set} FROM pg_catalog.json_populate_recordset(NULL::${name}, $1::json) k WHERE ${keyMatch}`, [`[${w.upd.join(',')}]`]);
    }
    for (const table of order) {
      const w = work.get(table)!;
      if (w.ins.length === 0) continue;
      const shape = shapes.get(table)!;
      const name = sqlName(table);
      const cols = shape.columns.map(ident).join(', ');
      await service.query(
        `INSERT INTO ${name} (${cols}) OVERRIDING SYSTEM VALUE SELECT ${cols} FROM pg_catalog.json_populate_recordset(NULL::${name}, $1::json)`,
        [`[${w.ins.join(',')}]`],
      );
    }
    // The undo's own rows, journalled before its COMMIT, like any write.
    const captured = await service.query<[string, string, RowImage['kind'], string]>({ text: READ_CAPTURED, rowMode: 'array' });
    const undoRows = captured.rows.filter((r) => r[0] === undoChangeId).map(([, table, kind, image]) => ({ table, kind, image }));
    const txid = (await service.query<{ txid: string }>('SELECT pg_catalog.pg_current_xact_id()::text AS txid')).rows[0]!.txid;
    await journal.record([{ id: undoChangeId, txid, kind: 'undo', agent: null, by: options.by, statement: `undo of ${changes.join(', ')}`, rows: undoRows, undoes: changes }]);
    await service.query('COMMIT');
    await journal.settle([undoChangeId], 'committed');
    await journal.markUndone(changes, undoChangeId);
    return { changes, ddl, tables: plan, conflicts, applied: true, undoChangeId };
  } catch (err) {
    await service.query('ROLLBACK').catch(() => {
      // Deliberately ignored: the undo's own error is the one to report (and a lost connection rolled it back).
    });
    throw err;
  }
}
