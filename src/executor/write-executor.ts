/**
 * Runs an agent's allowed writes on its write connection, where Airlock can
 * still take them back: each write runs inside a transaction (Airlock's own
 * when the agent has none open, a savepoint inside the agent's otherwise),
 * its real effect is measured from PostgreSQL's per-transaction statistics
 * (cascaded and trigger-made rows included), and it is kept only when the
 * limits allow, after it is on the audit record.
 *
 * https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ALL-TABLES-VIEW
 * (pg_stat_xact_user_tables counts the current transaction's row changes,
 * including those of open subtransactions).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { BACKEND, parseDataRow, parseErrorFields } from '../protocol/backend.js';
import type { ErrorFields, TransactionStatus } from '../protocol/backend.js';
import { encodeQuery } from '../protocol/frontend.js';
import type { Message } from '../protocol/message-reader.js';
import type { Denial } from '../policy/decision.js';
import { tablesOf } from '../state/journal.js';
import type { ImageKind, RowImage } from '../state/journal.js';
import { journalColumnsSql } from './dropped-column.js';
import { TRASH_SCHEMA, quarantineSql } from './trash.js';
import { CAPTURE_TABLE, CREATE_CAPTURE_TABLE, READ_CAPTURED, captureOnQuery, countCapturedQuery } from './capture.js';
import { WriteConnectionLost } from './write-connection.js';
import type { MessageSink, WriteConnection } from './write-connection.js';

/** Rows inserted, updated and deleted so far in this transaction, per table. */
const STATS_QUERY =
  // pg_stat_xact_user_tables, cut to the three counters (the view computes a dozen per table, which costs twice as much).
  'SELECT * FROM (SELECT n.nspname, c.relname, pg_catalog.pg_stat_get_xact_tuples_inserted(c.oid) AS i, ' +
  'pg_catalog.pg_stat_get_xact_tuples_updated(c.oid) AS u, pg_catalog.pg_stat_get_xact_tuples_deleted(c.oid) AS d ' +
  'FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
  // The trash (trash.ts): a table moved there keeps its counters under a new name, which would read as rows changed anew.
  `WHERE c.relkind IN ('r', 'm', 'p', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '${TRASH_SCHEMA}') AND n.nspname !~ '^pg_toast' ` +
  // Airlock's own capture table (src/executor/capture.ts) is no change of the agent's.
  `AND NOT (c.relpersistence = 't' AND c.relname = '${CAPTURE_TABLE}')) s ` +
  'WHERE i + u + d > 0';

/** Rows one statement changed in one table, by how. */
export interface TableChange {
  schema: string;
  name: string;
  insert: number;
  update: number;
  delete: number;
}

/** What the write did, measured. */
export interface WriteImpact {
  rows: number;
  /** 'schema.table' → rows changed there by this statement. */
  tables: Record<string, number>;
  /** The same, per table and kind of change. */
  changes: TableChange[];
}

/** Asked once the write ran and was measured: a refusal takes it back. */
export type ImpactCheck = (impact: WriteImpact) => Denial | null;

/**
 * Puts the write on the record (and its captured rows in the journal),
 * durably, before it is kept; a rejection takes it back. `rows` are the row
 * images captured for it when Airlock commits it itself; inside the agent's
 * transaction they are null: the rows are journalled at the agent's COMMIT
 * (`capturedInTransaction`), since its ROLLBACK (TO SAVEPOINT) may still take them back.
 */
export type RecordWrite = (changeId: string, impact: WriteImpact, txid: string, rows: RowImage[] | null) => Promise<void>;

/** What capture needs from the caller: which tables may be written without a journal (config `undo.optional_tables`). */
export interface CaptureOptions {
  optional: (schema: string, name: string) => boolean;
  /** Asked with the rows captured (when Airlock commits the write itself): a refusal takes the write back. */
  rowsCheck?: (rows: readonly RowImage[]) => Denial | null;
  /** Tables a DROP TABLE names: checked by running the DROP in a savepoint, then moved into the trash instead (trash.ts). */
  quarantine?: readonly { schema: string | null; name: string }[];
  /** Columns an ALTER TABLE … DROP COLUMN names: their values are journalled before it runs (dropped-column.ts). */
  droppedColumns?: { table: { schema: string | null; name: string }; columns: readonly string[] };
}

export type WriteOutcome =
  /** Kept: committed, or released into the agent's transaction. */
  | { kind: 'kept'; changeId: string; impact: WriteImpact; txid: string }
  /** PostgreSQL refused it (or its COMMIT): nothing of it was kept. `error` is what the agent is told when its own answers hold no error. */
  | { kind: 'failed'; sqlstate: string; impact: WriteImpact | null; error: ErrorFields | null }
  /** Airlock took it back: over a limit, a freeze, the record could not be written, the measurement failed. `rows`: what was captured, when it was read. */
  | { kind: 'refused'; denial: Denial; impact: WriteImpact | null; rows?: readonly RowImage[] | null };

export interface WriteResult {
  outcome: WriteOutcome;
  /** The agent's transaction status once the write is settled. */
  status: TransactionStatus;
}

/**
 * The connection was lost after COMMIT (or RELEASE) was sent: whether the
 * write was kept is unknown until `pg_xact_status(txid)` says.
 */
export class WriteOutcomeUnknown extends Error {
  constructor(
    readonly changeId: string,
    readonly txid: string,
    readonly impact: WriteImpact,
    cause: string,
  ) {
    super(`the connection was lost after the write's COMMIT was sent (${cause}); transaction ${txid} must be settled`);
    this.name = 'WriteOutcomeUnknown';
  }
}

/** The agent's own messages ended Airlock's transaction around its write: never allowed to happen; the session must end. */
export class WriteEscaped extends Error {
  constructor(readonly txid: string) {
    super(`the agent's messages ended the transaction Airlock opened around its write (transaction ${txid})`);
    this.name = 'WriteEscaped';
  }
}

/** Answers that come before a statement produces anything: kept when it is refused after running. */
export const PREAMBLE: ReadonlySet<number> = new Set([
  BACKEND.parseComplete,
  BACKEND.bindComplete,
  BACKEND.closeComplete,
  BACKEND.parameterDescription,
  BACKEND.rowDescription,
  BACKEND.noData,
  BACKEND.noticeResponse,
]);

export class WriteExecutor {
  /** The savepoint Airlock sets inside an agent's transaction; random, so the agent cannot name it. */
  private readonly savepoint = `airlock_write_${randomBytes(6).toString('hex')}`;
  /** True while the agent's own messages run: the only time a CancelRequest of the agent's may reach this connection. */
  private agentRunning = false;
  /** Whether this connection's capture table exists (created once, when it opens). */
  private captureReady = false;
  /** The savepoint a DROP TABLE runs in before it is rolled back and turned into a move to the trash. */
  private readonly dropSavepoint = `airlock_drop_${randomBytes(6).toString('hex')}`;

  constructor(readonly connection: WriteConnection) {}

  get status(): TransactionStatus {
    return this.connection.status;
  }

  /** The connection while the agent's statement runs on it, else null: Airlock's own queries are never cancelled by the agent. */
  get cancellable(): WriteConnection | null {
    return this.agentRunning ? this.connection : null;
  }

  /**
   * Runs messages that write nothing Airlock measures (reads and transaction
   * control inside a write transaction); every answer goes to `sink` as it comes.
   */
  async pass(messages: readonly Buffer[], sink: MessageSink): Promise<TransactionStatus> {
    this.agentRunning = true;
    try {
      return await this.connection.exchange(messages, 1, sink);
    } finally {
      this.agentRunning = false;
    }
  }

  /**
   * Fails unless the server keeps the per-transaction row counts the limits
   * are measured with (track_counts, on by default): without them every write
   * would measure as zero rows.
   */
  async verifyMeasurable(): Promise<void> {
    const answers = await this.connection.collect([encodeQuery("SELECT pg_catalog.current_setting('track_counts')")], 1);
    const row = answers.find((m) => m.type === BACKEND.dataRow);
    const value = row === undefined ? null : parseDataRow(row.body)[0];
    if (value !== 'on') {
      throw new Error(`the database has track_counts = ${value ?? '(unknown)'}; Airlock measures writes with it and refuses to write without it`);
    }
  }

  /**
   * Creates this connection's capture table (a temporary table of its own
   * session). If it cannot (no TEMPORARY privilege, say), writes are not
   * captured, and each is refused (rule no-journal) unless its tables are undo-optional.
   */
  async prepareCapture(): Promise<string | null> {
    const answers = await this.connection.collect([encodeQuery(CREATE_CAPTURE_TABLE)], 1);
    const error = firstError(answers);
    this.captureReady = error === null;
    return error === null ? null : (error.get('M') ?? 'unknown error');
  }

  /**
   * Every row captured in the agent's open transaction (what its savepoint
   * rollbacks left), grouped by change id, read before the agent's COMMIT is sent.
   */
  async capturedInTransaction(): Promise<Map<string, RowImage[]>> {
    const answers = await this.connection.collect([encodeQuery(READ_CAPTURED)], 1);
    const error = firstError(answers);
    if (error !== null) throw new Error(`the captured rows could not be read back: ${error.get('M') ?? '?'}`);
    const out = new Map<string, RowImage[]>();
    for (const [change, table, kind, image] of capturedRows(answers)) {
      let list = out.get(change);
      if (list === undefined) out.set(change, (list = []));
      list.push({ table, kind, image });
    }
    return out;
  }

  /** Asks the server whether a transaction committed: 'committed', 'aborted', 'in progress', or null (too old to say). */
  async transactionStatus(txid: string): Promise<string | null> {
    const answers = await this.connection.collect([encodeQuery(`SELECT pg_catalog.pg_xact_status('${txid.replace(/'/g, "''")}'::xid8)`)], 1);
    const row = answers.find((m) => m.type === BACKEND.dataRow);
    return row === undefined ? null : (parseDataRow(row.body)[0] ?? null);
  }

  /**
   * Runs one write (a Query, or extended-protocol messages up to Sync)
   * measured and checked; the agent's answers go to `sink` as they come (the
   * caller holds them until the outcome is known). `emptied` names tables the
   * statement truncates or drops: neither changes the row counters, so their
   * rows are counted beforehand.
   *
   * Every answer of Airlock's own statements is checked to be exactly what
   * it asked for; anything else takes the write back. What the agent is told
   * follows from the outcome, never from the agent's own answers alone.
   */
  async write(
    messages: readonly Buffer[],
    sink: MessageSink,
    check: ImpactCheck,
    record: RecordWrite,
    emptied: readonly { schema: string; name: string }[] = [],
    capture: CaptureOptions = { optional: () => false },
  ): Promise<WriteResult> {
    const conn = this.connection;
    // Read afresh each time: every round changes it.
    const txState = (): TransactionStatus => conn.status;
    const autocommit = txState() === 'I';
    if (txState() === 'E') throw new Error('write path: a write was sent into a failed transaction');
    // Counted before as well as after, even at the start of a transaction: a
    // backend reports its counts to the shared statistics at most once a
    // second, and until then the "current transaction" counters still hold
    // earlier transactions' rows.
    const changeId = randomUUID();
    const quarantine = capture.quarantine ?? [];
    const dropped = capture.droppedColumns;
    if (!this.captureReady && (quarantine.length > 0 || dropped !== undefined)) {
      // Without the capture table neither the move nor the column's values could be journalled.
      const denial = journalDenial({ rows: 1, tables: { [quarantine.length > 0 ? 'the dropped table' : 'the dropped column']: 1 }, changes: [] }, new Map(), { optional: () => false }, false);
      const status = autocommit ? 'I' : await this.failAgentTransaction();
      return { outcome: { kind: 'refused', denial: denial!, impact: null }, status };
    }
    let open = `${autocommit ? 'BEGIN READ WRITE' : `SAVEPOINT ${this.savepoint}`}; SELECT pg_catalog.pg_current_xact_id()::text`;
    if (emptied.length > 0) open += `; ${countRowsQuery(emptied)}`;
    // Capture on, for this transaction (or savepoint) only, filed under the change id (three columns: no counter row looks like it).
    if (this.captureReady) open += `; ${captureOnQuery(changeId)}`;
    // A dropped column's values, journalled (into the capture table) before the ALTER runs.
    if (dropped !== undefined) open += `; ${journalColumnsSql(dropped.table, dropped.columns)}`;
    let stats = STATS_QUERY;
    // The DROP runs for real in this savepoint (PostgreSQL's checks and answer), then is rolled back and becomes a move.
    if (quarantine.length > 0) stats += `; SAVEPOINT ${this.dropSavepoint}`;
    const opening = await conn.collect([encodeQuery(`${open}; ${stats}`)], 1);
    const openError = firstError(opening);
    const openTag = firstTag(opening);
    if (openError !== null || openTag !== (autocommit ? 'BEGIN' : 'SAVEPOINT') || txState() !== 'T') {
      if (openError === null && txState() !== 'E') {
        throw new Error(`write path: opening the write's transaction answered ${openTag ?? 'nothing'} (status ${txState()})`);
      }
      // Cancelled or refused before the agent's statement ran: nothing of it ran.
      const status = autocommit ? await this.rollback() : await this.failAgentTransaction();
      const fields = openError === null ? null : errorFieldsOf(openError);
      return { outcome: { kind: 'failed', sqlstate: fields?.code ?? 'XX000', impact: null, error: fields }, status };
    }
    const txid = opening.filter((m) => m.type === BACKEND.dataRow).map((m) => parseDataRow(m.body)).find((cells) => cells.length === 1)?.[0] ?? '?';

    let agentError = false;
    this.agentRunning = true;
    let after: TransactionStatus;
    try {
      after = await conn.exchange(messages, 1, (m) => {
        if (m.type === BACKEND.errorResponse) agentError = true;
        sink(m);
      });
    } finally {
      this.agentRunning = false;
    }
    if (agentError) {
      // The server refused the statement: its error is the answer. Airlock's
      // own transaction is rolled back; the agent's is failed, as it should be.
      const status = autocommit ? await this.rollback() : await this.takeBackSavepoint();
      return { outcome: { kind: 'failed', sqlstate: 'XX000', impact: null, error: null }, status };
    }
    if (after !== 'T') throw new WriteEscaped(txid);
    if (quarantine.length > 0) {
      const moved = await conn.collect([encodeQuery(`ROLLBACK TO SAVEPOINT ${this.dropSavepoint}; RELEASE SAVEPOINT ${this.dropSavepoint}; ${quarantineSql(quarantine)}`)], 1);
      const moveError = firstError(moved);
      if (moveError !== null || txState() !== 'T') {
        const fields = moveError === null ? null : errorFieldsOf(moveError);
        const denial: Denial = {
          kind: 'deny',
          rule: 'trash',
          message: `airlock: the dropped table could not be moved into the trash, so the DROP was rolled back${fields === null ? '' : `: ${fields.message}`}`,
          hint: "Nothing was changed. A human can check Airlock's trash schema (airlock_trash) and the service account's privileges, or run the DROP directly.",
          sqlstate: fields?.code ?? 'XX000',
        };
        const status = await this.takeBack(autocommit);
        return { outcome: { kind: 'refused', denial, impact: null }, status };
      }
    }

    // Deferred constraint triggers and foreign-key actions would run at
    // COMMIT, unmeasured: make them run now, inside the measurement.
    // With the counters, what was captured: all of it when Airlock commits, counts when the agent's transaction goes on.
    const readBack = !this.captureReady ? '' : `; ${autocommit ? READ_CAPTURED : countCapturedQuery(changeId)}`;
    const closing = await conn.collect([encodeQuery(`SET CONSTRAINTS ALL IMMEDIATE; ${STATS_QUERY}${readBack}`)], 1);
    const closeError = firstError(closing);
    if (closeError !== null || txState() !== 'T') {
      const fields = closeError === null ? null : errorFieldsOf(closeError);
      const denial: Denial = {
        kind: 'deny',
        rule: 'measurement-failed',
        message: `airlock: the write could not be measured, so it was rolled back${fields === null ? '' : `: ${fields.message}`}`,
        hint: 'Nothing was changed. Send the statement again; if a deferred constraint failed, fix the data it checks.',
        sqlstate: fields?.code ?? 'XX000',
      };
      const status = await this.takeBack(autocommit);
      return { outcome: { kind: 'refused', denial, impact: null }, status };
    }
    const impact = measure(opening, closing);
    for (const m of opening) {
      if (m.type !== BACKEND.dataRow) continue;
      const cells = parseDataRow(m.body);
      if (cells.length !== 2) continue;
      const rows = Number(cells[1] ?? 0);
      impact.tables[cells[0] ?? '?'] = (impact.tables[cells[0] ?? '?'] ?? 0) + rows;
      impact.rows += rows;
    }
    let denial = check(impact);
    // Read whatever the check said: a refused write's rows are what a dry run shows.
    const rows: RowImage[] | null = autocommit && this.captureReady ? capturedRows(closing).map(([, table, kind, image]) => ({ table, kind, image })) : null;
    if (denial === null) {
      const captured = new Map<string, number>();
      if (rows !== null) {
        for (const [table, n] of Object.entries(tablesOf(rows.filter((r) => r.kind !== 'x')))) captured.set(table, (captured.get(table) ?? 0) + n);
      } else {
        for (const m of closing) {
          if (m.type !== BACKEND.dataRow) continue;
          const cells = parseDataRow(m.body);
          if (cells.length !== 3 || cells[1] === 'n' || cells[1] === 'c' || cells[1] === 'x') continue;
          captured.set(cells[0] ?? '?', (captured.get(cells[0] ?? '?') ?? 0) + Number(cells[2] ?? 0));
        }
      }
      denial = journalDenial(impact, captured, capture, this.captureReady);
      if (denial === null && rows !== null && capture.rowsCheck !== undefined) denial = capture.rowsCheck(rows);
    }
    if (denial === null) {
      try {
        await record(changeId, impact, txid, rows);
      } catch (err) {
        denial = {
          kind: 'deny',
          rule: 'audit-unavailable',
          message: `airlock: the write could not be put on the audit record, so it was rolled back: ${(err as Error).message}`,
          hint: "A human must check Airlock's state directory (disk space, permissions) and its log.",
          sqlstate: '58030',
        };
      }
    }
    if (denial !== null) {
      const status = await this.takeBack(autocommit);
      return { outcome: { kind: 'refused', denial, impact, rows }, status };
    }
    let done: Message[];
    try {
      done = await conn.collect([encodeQuery(autocommit ? 'COMMIT' : `RELEASE SAVEPOINT ${this.savepoint}`)], 1);
    } catch (err) {
      throw new WriteOutcomeUnknown(changeId, txid, impact, (err as Error).message);
    }
    const commitError = firstError(done);
    const tag = firstTag(done);
    const kept = autocommit ? tag === 'COMMIT' && txState() === 'I' : tag === 'RELEASE' && txState() === 'T';
    if (!kept) {
      // A deferred check or a serialization failure at COMMIT, or a COMMIT
      // answered with ROLLBACK: the server did not keep it.
      const fields: ErrorFields =
        commitError !== null
          ? errorFieldsOf(commitError)
          : { severity: 'ERROR', code: '40000', message: `airlock: the database answered the write's ${autocommit ? 'COMMIT' : 'RELEASE'} with ${tag ?? 'nothing'}; the write was not kept` };
      let now = txState();
      if (autocommit && now !== 'I') now = await this.rollback();
      return { outcome: { kind: 'failed', sqlstate: fields.code, impact, error: fields }, status: autocommit ? 'I' : now };
    }
    return { outcome: { kind: 'kept', changeId, impact, txid }, status: autocommit ? 'I' : 'T' };
  }

  /** Rolls back the whole transaction (Airlock's own, or the agent's on a COMMIT refused under a freeze). */
  async rollback(): Promise<TransactionStatus> {
    const answers = await this.connection.collect([encodeQuery('ROLLBACK')], 1);
    if (this.connection.status !== 'I') throw new WriteConnectionLost(`ROLLBACK was answered with ${firstTag(answers) ?? 'an error'}`);
    return 'I';
  }

  /**
   * Takes a measured write back: all of Airlock's own transaction, or the
   * agent's transaction back to before the write, then fails the agent's
   * transaction as any error would (PostgreSQL's semantics: an error aborts it).
   */
  private async takeBack(autocommit: boolean): Promise<TransactionStatus> {
    return autocommit ? this.rollback() : this.takeBackSavepoint();
  }

  private async takeBackSavepoint(): Promise<TransactionStatus> {
    const answers = await this.connection.collect([encodeQuery(`ROLLBACK TO SAVEPOINT ${this.savepoint}; RELEASE SAVEPOINT ${this.savepoint}`)], 1);
    const error = firstError(answers);
    if (error !== null) throw new WriteConnectionLost(`ROLLBACK TO SAVEPOINT failed: ${error.get('M') ?? '?'}`);
    return this.failAgentTransaction();
  }

  /** Puts the agent's transaction in the failed state, as an error of its own would. */
  private async failAgentTransaction(): Promise<TransactionStatus> {
    await this.connection.collect([encodeQuery('airlock_refused')], 1);
    if (this.connection.status !== 'E') throw new WriteConnectionLost(`the agent's transaction could not be failed (status ${this.connection.status})`);
    return 'E';
  }
}

/** The first CommandComplete's tag. */
function firstTag(messages: readonly Message[]): string | null {
  const m = messages.find((x) => x.type === BACKEND.commandComplete);
  return m === undefined ? null : m.body.subarray(0, m.body.indexOf(0)).toString('utf8');
}

function firstError(messages: readonly Message[]): Map<string, string> | null {
  const m = messages.find((x) => x.type === BACKEND.errorResponse);
  return m === undefined ? null : parseErrorFields(m.body);
}

function errorFieldsOf(fields: Map<string, string>): ErrorFields {
  return {
    severity: 'ERROR',
    code: fields.get('C') ?? 'XX000',
    message: fields.get('M') ?? 'the database refused the write',
    detail: fields.get('D'),
    hint: fields.get('H'),
  };
}

export function denialFields(denial: Denial, detail: string): ErrorFields {
  return { severity: 'ERROR', code: denial.sqlstate, message: denial.message, detail: `Rule: ${denial.rule}. ${detail}`, hint: denial.hint };
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * Rows in each table, as ('schema.table', count) rows; inheritance children
 * and partitions included, as TRUNCATE and DROP include them. A table that
 * does not exist (DROP TABLE IF EXISTS) counts 0 rather than failing.
 */
function countRowsQuery(tables: readonly { schema: string; name: string }[]): string {
  return tables
    .map((t) => {
      const regclass = `pg_catalog.to_regclass(${quoteLiteral(`${quoteIdent(t.schema)}.${quoteIdent(t.name)}`)})`;
      const counted = `pg_catalog.query_to_xml('SELECT count(*) AS c FROM ' || ${regclass}::text, false, true, '')`;
      return `SELECT ${quoteLiteral(`${t.schema}.${t.name}`)}, coalesce((pg_catalog.xpath('/row/c/text()', ${counted}))[1]::text::bigint, 0)`;
    })
    .join(' UNION ALL ');
}

/** Per-table counts from the statistics query's rows, keyed by 'schema.table'. */
function totals(messages: readonly Message[]): Map<string, TableChange> {
  const out = new Map<string, TableChange>();
  for (const m of messages) {
    if (m.type !== BACKEND.dataRow) continue;
    const cells = parseDataRow(m.body);
    if (cells.length !== 5) continue;
    const [schema, name, ins, upd, del] = cells;
    if (schema == null || name == null) continue;
    out.set(`${schema}.${name}`, { schema, name, insert: Number(ins ?? 0), update: Number(upd ?? 0), delete: Number(del ?? 0) });
  }
  return out;
}

function measure(before: readonly Message[], after: readonly Message[]): WriteImpact {
  const was = totals(before);
  const tables: Record<string, number> = {};
  const changes: TableChange[] = [];
  let rows = 0;
  for (const [key, now] of totals(after)) {
    const then = was.get(key);
    const change: TableChange = {
      schema: now.schema,
      name: now.name,
      insert: now.insert - (then?.insert ?? 0),
      update: now.update - (then?.update ?? 0),
      delete: now.delete - (then?.delete ?? 0),
    };
    const delta = change.insert + change.update + change.delete;
    if (delta > 0) {
      tables[key] = delta;
      changes.push(change);
      rows += delta;
    }
  }
  return { rows, tables, changes };
}


/** READ_CAPTURED's rows (the only four-column rows among the answers): [change, 'schema.table', kind, image text]. */
function capturedRows(messages: readonly Message[]): [string, string, ImageKind, string][] {
  const out: [string, string, ImageKind, string][] = [];
  for (const m of messages) {
    if (m.type !== BACKEND.dataRow) continue;
    const cells = parseDataRow(m.body);
    if (cells.length === 4) out.push([cells[0] ?? '', cells[1] ?? '', (cells[2] ?? 'i') as ImageKind, cells[3] ?? 'null']);
  }
  return out;
}

/**
 * Refuses a write whose changed rows were not all captured (capture missing
 * on a table, disabled, or turned off by the statement itself), unless
 * those tables are undo-optional: rows changed per table must equal rows captured.
 */
function journalDenial(impact: WriteImpact, captured: ReadonlyMap<string, number>, capture: CaptureOptions, ready: boolean): Denial | null {
  const missing: string[] = [];
  for (const [table, rows] of Object.entries(impact.tables)) {
    if (rows === 0 || captured.get(table) === rows) continue;
    const dot = table.indexOf('.');
    if (capture.optional(table.slice(0, dot), table.slice(dot + 1))) continue;
    missing.push(`${table} (${rows} changed, ${captured.get(table) ?? 0} captured)`);
  }
  if (missing.length === 0) return null;
  return {
    kind: 'deny',
    rule: 'no-journal',
    message: `airlock: the write could not be journalled for undo, so it was rolled back: ${missing.join(', ')}${ready ? '' : "; the write connection has no capture table"}`,
    hint: 'Airlock installs undo capture on tables with a primary key (or a unique NOT NULL key) at start and when the schema changes; `airlock doctor` lists where it is missing. A table can be marked undo-optional in the config (undo.optional_tables).',
    sqlstate: '55000',
  };
}
