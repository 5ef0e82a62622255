/**
 * Turns what the gate answered into text an agent reads: compact (one line
 * per row, so a result spares the agent's context), and faithful (each value
 * as PostgreSQL printed it; NULL is `null`, never the string "NULL").
 */
import type { GateError, RowSet } from './gate-client.js';

/** Longest value shown whole; a longer one is cut, and says so. */
export const MAX_CELL_CHARS = 2000;
/** Most characters of rows in one answer; rows past it are left out, and the answer says so. */
export const MAX_ROWS_TEXT_CHARS = 60_000;

const NUMERIC_OIDS = new Set([20, 21, 23, 26, 700, 701, 1700]);
const JSON_OIDS = new Set([114, 3802]);
const BOOL_OID = 16;
const JSON_NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

/**
 * One value as a JSON literal: numbers as numbers (digits as sent, so a
 * bigint or numeric loses nothing), booleans as booleans, json and jsonb as
 * the JSON they hold, NULL as null, everything else (timestamps, text, uuid,
 * arrays, ...) as a string of PostgreSQL's own text output.
 */
export function renderValue(value: string | null, typeOid: number): string {
  if (value === null) return 'null';
  if (NUMERIC_OIDS.has(typeOid) && JSON_NUMBER.test(value)) return value;
  if (typeOid === BOOL_OID && (value === 't' || value === 'f')) return value === 't' ? 'true' : 'false';
  // json keeps its text as written; one with line breaks is quoted, so that a row stays one line.
  if (JSON_OIDS.has(typeOid) && value.length <= MAX_CELL_CHARS && !/[\r\n]/.test(value)) return value;
  if (value.length > MAX_CELL_CHARS) {
    return JSON.stringify(`${value.slice(0, MAX_CELL_CHARS)}… [cut: ${value.length - MAX_CELL_CHARS} more characters]`);
  }
  return JSON.stringify(value);
}

/**
 * A result: a line naming the columns and their types, one JSON array per
 * row, then what happened (`3 rows.`), and a notice when rows were left out.
 */
export function renderRows(set: RowSet, options: { maxRows: number; moreHint: string }): string {
  const lines: string[] = [];
  if (set.columns.length > 0) {
    lines.push(`columns: ${set.columns.map((c) => `${c.name} (${c.typeName})`).join(', ')}`);
  }
  let chars = 0;
  let shown = 0;
  for (const row of set.rows) {
    const line = `[${row.map((v, i) => renderValue(v, set.columns[i]?.typeOid ?? 0)).join(',')}]`;
    if (shown > 0 && chars + line.length > MAX_ROWS_TEXT_CHARS) break;
    lines.push(line);
    chars += line.length + 1;
    shown++;
  }
  const cutForSize = shown < set.rows.length;
  if (set.truncated || cutForSize) {
    const why = cutForSize
      ? `the rows shown fill the ${MAX_ROWS_TEXT_CHARS.toLocaleString('en-US')} characters one answer may hold`
      : `the result has more than ${options.maxRows} rows; the rest were not fetched`;
    lines.push(`TRUNCATED: showing the first ${shown} rows only (${why}). ${options.moreHint}`);
  } else if (set.columns.length > 0) {
    lines.push(`(${shown} ${shown === 1 ? 'row' : 'rows'})`);
  }
  return lines.join('\n');
}

/** An error as psql prints it, with the SQLSTATE: the same words, rule and hint the gate sent on the wire. */
export function renderError(error: GateError): string {
  const lines = [`${error.severity}:  ${error.message}`];
  if (error.detail !== undefined && error.detail !== '') lines.push(`DETAIL:  ${error.detail}`);
  if (error.hint !== undefined && error.hint !== '') lines.push(`HINT:  ${error.hint}`);
  lines.push(`SQLSTATE: ${error.code}`);
  return lines.join('\n');
}
