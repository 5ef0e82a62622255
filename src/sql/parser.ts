/**
 * The one place that talks to libpg-query: the real PostgreSQL 18 parser compiled
 * to WASM. Everything else in `src/sql` works on the plain JSON tree it returns.
 */
import { fingerprintSync, hasSqlDetails, loadModule, parseSync } from 'libpg-query';

/** A statement of the parse tree: a JSON node plus where its text sits in the input. */
export interface RawStatement {
  /** The statement node, wrapped by type: `{ SelectStmt: {...} }`. */
  stmt: unknown;
  /** Start of the statement's text, in UTF-8 bytes (absent in the tree means 0). */
  byteStart: number;
  /** End of the statement's text, exclusive, in UTF-8 bytes. */
  byteEnd: number;
}

export type ParseOutcome =
  | { ok: true; statements: RawStatement[]; fingerprint: string }
  | { ok: false; error: string; position?: number };

let loaded: Promise<void> | undefined;

/** Loads the parser's WASM module once; later calls return the same promise. */
export function loadParser(): Promise<void> {
  loaded ??= loadModule();
  return loaded;
}

// PostgreSQL's wire protocol carries a query as a NUL-terminated string, and the
// parser reads C strings: text after a NUL would not be judged, so refuse it.
const NUL = '\u0000';
// A lone UTF-16 surrogate has no UTF-8 form: the bytes parsed would differ from
// the bytes any encoder sends to the server.
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Parses `sql` into raw statements, or says why it cannot be read. Never throws
 * for bad input; throws only if `loadParser()` has not finished.
 */
export function parseSql(sql: string): ParseOutcome {
  const nul = sql.indexOf(NUL);
  if (nul !== -1) {
    return { ok: false, error: 'The statement text contains a NUL character, which PostgreSQL does not accept in a query.', position: codePointPosition(sql, nul) };
  }
  const surrogate = LONE_SURROGATE.exec(sql);
  if (surrogate) {
    return { ok: false, error: 'The statement text contains a lone UTF-16 surrogate, which is not valid UTF-8.', position: codePointPosition(sql, surrogate.index) };
  }
  // libpg-query refuses '' outright; PostgreSQL answers an empty query with
  // EmptyQueryResponse, so give it the same (empty) tree as whitespace.
  const text = sql === '' ? ' ' : sql;
  let tree: { stmts?: { stmt?: unknown; stmt_location?: number; stmt_len?: number }[] };
  let fingerprint: string;
  try {
    tree = parseSync(text);
    fingerprint = fingerprintSync(text);
  } catch (error) {
    return parseFailure(error);
  }
  const byteLength = Buffer.byteLength(text, 'utf8');
  const statements = (tree.stmts ?? []).map((raw): RawStatement => {
    const byteStart = raw.stmt_location ?? 0;
    // stmt_len 0 (or absent) means "to the end of the string".
    const byteEnd = raw.stmt_len ? byteStart + raw.stmt_len : byteLength;
    return { stmt: raw.stmt, byteStart, byteEnd };
  });
  return { ok: true, statements, fingerprint };
}

/** Returns a function that slices `sql` by UTF-8 byte offsets, as the parse tree gives them. */
export function byteSlicer(sql: string): (start: number, end: number) => string {
  // Pure ASCII (the usual case): byte offsets are string offsets.
  if (Buffer.byteLength(sql, 'utf8') === sql.length) return (start, end) => sql.slice(start, end);
  const bytes = Buffer.from(sql, 'utf8');
  return (start, end) => bytes.subarray(start, end).toString('utf8');
}

function parseFailure(error: unknown): ParseOutcome {
  if (hasSqlDetails(error) && error.sqlDetails) {
    // libpg-query turns PostgreSQL's 1-based cursor position (in characters) into a
    // 0-based one, mapping "unknown" to 0 as well; report it 1-based, like an ErrorResponse.
    return { ok: false, error: error.sqlDetails.message, position: error.sqlDetails.cursorPosition + 1 };
  }
  if (error instanceof Error) return { ok: false, error: error.message };
  return { ok: false, error: String(error) };
}

/** 1-based position in characters (code points), as PostgreSQL counts them, of a UTF-16 index. */
function codePointPosition(sql: string, index: number): number {
  return Array.from(sql.slice(0, index)).length + 1;
}
