/**
 * What the adversarial write-path tests judge by: the database's data (every
 * row of every user table, sequences, prepared transactions), read directly
 * as the superuser, and the audit log as written to the state directory.
 * Cheap enough to take before and after every single case.
 */
import { readFile } from 'node:fs/promises';
import type pg from 'pg';
import { auditLogPath } from '../../src/state/file-audit-log.js';
import type { AuditRecord } from '../../src/state/audit-log.js';

/** Per table its row count and an md5 of its rows; per sequence its position; prepared transactions. */
export interface DataState {
  tables: Record<string, string>;
  sequences: Record<string, string>;
  preparedXacts: string[];
}

const USER_TABLES = `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname !~ '^pg_(toast_)?temp_'
  ORDER BY 1`;

/** Every user table's row count and md5 of its rows (sorted row text), every sequence's last_value, this database's prepared transactions. */
export async function dataState(admin: pg.Client): Promise<DataState> {
  const tables = await admin.query<{ name: string }>(USER_TABLES);
  const state: DataState = { tables: {}, sequences: {}, preparedXacts: [] };
  if (tables.rows.length > 0) {
    const digest = await admin.query<{ name: string; line: string }>(
      tables.rows
        .map(
          ({ name }) =>
            `SELECT ${admin.escapeLiteral(name)} AS name,
                    count(*) || ' rows, md5 ' || md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), '')) AS line
             FROM ONLY ${name} t`,
        )
        .join(' UNION ALL '),
    );
    for (const r of digest.rows) state.tables[r.name] = r.line;
  }
  const sequences = await admin.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'S' AND c.relpersistence <> 't' ORDER BY 1`,
  );
  if (sequences.rows.length > 0) {
    const positions = await admin.query<{ name: string; pos: string }>(
      sequences.rows
        .map(({ name }) => `SELECT ${admin.escapeLiteral(name)} AS name, last_value::text || ' called ' || is_called::text AS pos FROM ${name}`)
        .join(' UNION ALL '),
    );
    for (const r of positions.rows) state.sequences[r.name] = r.pos;
  }
  const prepared = await admin.query<{ gid: string }>('SELECT gid FROM pg_prepared_xacts WHERE database = current_database() ORDER BY 1');
  state.preparedXacts = prepared.rows.map((r) => r.gid);
  return state;
}

/** Every row of every user table, as row text (sorted). */
export async function allRows(admin: pg.Client): Promise<Record<string, string[]>> {
  const tables = await admin.query<{ name: string }>(USER_TABLES);
  const out: Record<string, string[]> = {};
  for (const { name } of tables.rows) out[name] = await tableRows(admin, name);
  return out;
}

/** One table's rows, as row text (sorted). */
export async function tableRows(admin: pg.Client, name: string): Promise<string[]> {
  const r = await admin.query<{ row: string }>(`SELECT t::text AS row FROM ONLY ${name} t`);
  return r.rows.map((x) => x.row).sort();
}

/** Two states' differences, one line each; empty when they are the same. */
export function stateDifferences(before: DataState, after: DataState): string[] {
  const lines: string[] = [];
  for (const section of ['tables', 'sequences'] as const) {
    for (const key of new Set([...Object.keys(before[section]), ...Object.keys(after[section])])) {
      if (before[section][key] !== after[section][key]) lines.push(`${key}: ${before[section][key] ?? '(none)'} → ${after[section][key] ?? '(none)'}`);
    }
  }
  if (before.preparedXacts.join(',') !== after.preparedXacts.join(',')) {
    lines.push(`prepared transactions: ${before.preparedXacts.join(',') || 'none'} → ${after.preparedXacts.join(',') || 'none'}`);
  }
  return lines;
}

/** Per table, how many rows went away and how many appeared (an UPDATE of k rows: k and k). */
export interface TableChange {
  removed: number;
  added: number;
}

/** Per table (of those given), how many rows went away and how many appeared, comparing multisets of row text. */
export function tableChanges(before: Record<string, string[]>, after: Record<string, string[]>): Record<string, TableChange> {
  const out: Record<string, TableChange> = {};
  for (const name of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const counts = new Map<string, number>();
    for (const r of before[name] ?? []) counts.set(r, (counts.get(r) ?? 0) + 1);
    let added = 0;
    for (const r of after[name] ?? []) {
      const n = counts.get(r) ?? 0;
      if (n > 0) counts.set(r, n - 1);
      else added++;
    }
    let removed = 0;
    for (const n of counts.values()) removed += n;
    if (removed > 0 || added > 0) out[name] = { removed, added };
  }
  return out;
}

/** Rows changed per table as pg_stat_xact_user_tables would count them, near enough: max(removed, added). */
export function changedRows(changes: Record<string, TableChange>): Record<string, number> {
  return Object.fromEntries(Object.entries(changes).map(([name, c]) => [name, Math.max(c.removed, c.added)]));
}

/** The audit log's records from byte `offset` on (oldest first), and the offset just past the last whole line. */
export async function readAuditFrom(stateDir: string, offset: number): Promise<{ records: AuditRecord[]; end: number }> {
  let data: Buffer;
  try {
    data = await readFile(auditLogPath(stateDir));
  } catch {
    return { records: [], end: offset };
  }
  const last = data.lastIndexOf(0x0a);
  if (last < offset) return { records: [], end: offset };
  const records = data
    .toString('utf8', offset, last)
    .split('\n')
    .filter((line) => line.trim() !== '')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as AuditRecord];
      } catch {
        return [];
      }
    });
  return { records, end: last + 1 };
}

/** A record that says a write was kept: decision allow, with a change id, not marked as rolled back or unknown. */
export function claimsKeptWrite(r: AuditRecord): boolean {
  const d = r.detail as { changeId?: unknown; committed?: unknown; outcome?: unknown } | undefined;
  if (r.event !== 'statement' || r.decision !== 'allow' || d === undefined || d.changeId === undefined) return false;
  if (d.committed === false) return false;
  if (typeof d.outcome === 'string' && d.outcome !== 'kept' && d.outcome !== 'committed' && d.outcome !== 'released') return false;
  return true;
}

/** The rows per table that a record says were changed (detail.tables). */
export function recordTables(r: AuditRecord): Record<string, number> {
  const t = (r.detail as { tables?: Record<string, unknown> } | undefined)?.tables ?? {};
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k.includes('.') ? k : `public.${k}`, Number(v)]));
}

/** One line per record, for failure messages. */
export function describeRecords(records: AuditRecord[]): string {
  return records
    .filter((r) => r.event === 'statement')
    .map((r) => `  ${r.decision ?? '?'} ${r.rule ?? ''} rows=${String(r.rows)} ${JSON.stringify(r.detail ?? {})} ${r.sqlstate ?? ''} :: ${(r.text ?? '').slice(0, 80)}`)
    .join('\n');
}
