/**
 * The undo journal (DESIGN.md, "Every agent write can be undone"): the
 * before- and after-image of every row an agent's write changed, kept in
 * Airlock's own state store, outside the production database and out of any
 * agent's reach. This is the seam; `file-journal.ts` keeps it in the state
 * directory, and a PostgreSQL-backed state store can implement it later for
 * several instances.
 *
 * A change is recorded `pending`, durably, before its transaction's COMMIT is
 * sent; it is marked `committed` (or `aborted`) once the outcome is known,
 * and a change still pending after a crash is settled with
 * `pg_xact_status(txid)`.
 */

/**
 * What one captured row image is:
 * - `i`: the row an INSERT made (after-image)
 * - `d`: the row a DELETE removed (before-image)
 * - `o`, `n`: the row before (`o`) and after (`n`) an UPDATE
 * - `t`: a row a TRUNCATE removed (before-image)
 * - `q`: a table a DROP TABLE moved into the trash (src/executor/trash.ts's descriptor, not a row)
 * - `c`: a column an ALTER TABLE … DROP COLUMN dropped (its definition, not a row)
 * - `x`: one row's key and value of that column, before the drop
 */
export const IMAGE_KINDS = ['i', 'd', 'o', 'n', 't', 'q', 'c', 'x'] as const;

/** Kinds that describe DDL (what undo takes back before rows): not row images of the table they are filed under. */
export const DDL_IMAGE_KINDS: ReadonlySet<ImageKind> = new Set(['q', 'c', 'x']);
export type ImageKind = (typeof IMAGE_KINDS)[number];

/**
 * One row image, in the order it was captured. `image` is the row as
 * PostgreSQL's `row_to_json(row)` wrote it, kept as text: parsed into
 * JavaScript numbers a bigint or numeric would lose digits.
 */
export interface RowImage {
  /** 'schema.table' (names unquoted). */
  table: string;
  kind: ImageKind;
  image: string;
}

export const CHANGE_STATES = ['pending', 'committed', 'aborted', 'undone'] as const;
export type ChangeState = (typeof CHANGE_STATES)[number];

/** What the journal says about one change (its rows are read apart: `rows()`). */
export interface ChangeEntry {
  /** The change id, as on the audit record (`detail.changeId`). */
  id: string;
  /** The transaction it ran in (`pg_current_xact_id()`), for `pg_xact_status()`. */
  txid: string;
  /** When it was recorded (ISO 8601). */
  at: string;
  /** `write`: an agent's write; `undo`: an admin's undo (itself undoable). */
  kind: 'write' | 'undo';
  /** The agent that wrote it; for an undo, null. */
  agent: string | null;
  /** For an undo, the admin who ran it. */
  by: string | null;
  /** The statement's text (for an undo, a description). */
  statement: string;
  /** Rows captured per table ('schema.table' → rows changed). */
  tables: Record<string, number>;
  /** Number of row images kept. */
  images: number;
  state: ChangeState;
  /** For an undone change, the change that undid it; for an undo, the changes it undid. */
  undoneBy: string | null;
  undoes: string[];
  /** Tables its DROP TABLE moved into the trash ('schema.table' as it was, its name in the trash, rows). */
  trashed: { table: string; trash: string; rows: number }[];
  /** When its trashed tables were purged for good, and by whom; null while they are in the trash. */
  purged: { by: string; at: string } | null;
}

/** What is recorded, before COMMIT, for one change. */
export interface NewChange {
  id: string;
  txid: string;
  kind: 'write' | 'undo';
  agent: string | null;
  by: string | null;
  statement: string;
  rows: readonly RowImage[];
  undoes?: readonly string[];
}

export interface ChangeFilter {
  agent?: string;
  /** Changes recorded at or after this time. */
  since?: Date;
  /** Changes that touched this table ('schema.table', or a bare name for any schema). */
  table?: string;
  txid?: string;
  /** Include pending and aborted changes too (by default only committed and undone ones). */
  all?: boolean;
}

export interface Journal {
  /** Records changes as `pending`, durably (synced), before their transaction's COMMIT is sent. Rejects if it cannot. */
  record(changes: readonly NewChange[]): Promise<void>;
  /** Marks pending changes committed or aborted once their transaction's outcome is known. */
  settle(ids: readonly string[], state: 'committed' | 'aborted'): Promise<void>;
  /** Marks committed changes undone by the undo change `by`. */
  markUndone(ids: readonly string[], by: string): Promise<void>;
  /** Marks the trashed tables of changes purged for good by the admin `by` (durably). */
  markPurged(ids: readonly string[], by: string): Promise<void>;
  /** One change, or null if the journal has none with that id. */
  get(id: string): ChangeEntry | null;
  /** Changes in the order they were recorded, filtered. */
  list(filter?: ChangeFilter): ChangeEntry[];
  /** Changes still pending (their outcome not yet known). */
  pending(): ChangeEntry[];
  /** The row images of one change, in capture order. */
  rows(id: string): Promise<RowImage[]>;
  close(): Promise<void>;
}

/**
 * Rows per table of a change's images (an UPDATE's old and new image count
 * once; a trashed table counts the rows it held, under its own name; a
 * dropped column the rows whose value was kept).
 */
export function tablesOf(rows: readonly RowImage[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rows) {
    if (r.kind === 'n' || r.kind === 'c') continue;
    if (r.kind === 'q') {
      const d = JSON.parse(r.image) as { table: string; rows: number };
      out[d.table] = (out[d.table] ?? 0) + Number(d.rows);
      continue;
    }
    out[r.table] = (out[r.table] ?? 0) + 1;
  }
  return out;
}

/** The tables a change's `q` images moved into the trash. */
export function trashedOf(rows: readonly RowImage[]): ChangeEntry['trashed'] {
  return rows
    .filter((r) => r.kind === 'q')
    .map((r) => {
      const d = JSON.parse(r.image) as { table: string; trash: string; rows: number };
      return { table: d.table, trash: d.trash, rows: Number(d.rows) };
    });
}
