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
import { BACKEND, errorResponse, parseDataRow, parseErrorFields, readyForQuery } from '../protocol/backend.js';
import type { ErrorFields, TransactionStatus } from '../protocol/backend.js';
import { encodeQuery } from '../protocol/frontend.js';
import type { Message } from '../protocol/message-reader.js';
import type { Denial } from '../policy/decision.js';
import { copy } from './write-connection.js';
import type { MessageSink, WriteConnection } from './write-connection.js';

/** Rows inserted, updated and deleted so far in this transaction, per table. */
const STATS_QUERY =
  // pg_stat_xact_user_tables, cut to the three counters (the view computes a dozen per table, which costs twice as much).
  'SELECT * FROM (SELECT n.nspname, c.relname, pg_catalog.pg_stat_get_xact_tuples_inserted(c.oid) AS i, ' +
  'pg_catalog.pg_stat_get_xact_tuples_updated(c.oid) AS u, pg_catalog.pg_stat_get_xact_tuples_deleted(c.oid) AS d ' +
  'FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
  "WHERE c.relkind IN ('r', 'm', 'p', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast') s " +
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

/** Puts the write on the record, durably, before it is kept; a rejection takes it back. */
export type RecordWrite = (changeId: string, impact: WriteImpact) => Promise<void>;

export type WriteOutcome =
  /** Kept: committed, or released into the agent's transaction. */
  | { kind: 'kept'; changeId: string; impact: WriteImpact }
  /** PostgreSQL refused it (or its COMMIT): the agent sees the server's error. */
  | { kind: 'failed'; sqlstate: string; impact: WriteImpact | null }
  /** Airlock took it back: over a limit, a freeze, the record could not be written. */
  | { kind: 'refused'; denial: Denial; impact: WriteImpact };

export interface WriteResult {
  outcome: WriteOutcome;
  /** The answers to send the agent, ending with its ReadyForQuery. */
  answers: Buffer[];
  status: TransactionStatus;
}

/** Answers that come before a statement produces anything: kept when it is refused after running. */
const PREAMBLE: ReadonlySet<number> = new Set([
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

  constructor(readonly connection: WriteConnection) {}

  get status(): TransactionStatus {
    return this.connection.status;
  }

  /**
   * Runs messages that write nothing Airlock measures (reads and transaction
   * control inside a write transaction); answers go to `sink` as they come,
   * minus `swallow` ParseComplete/CloseComplete answers to statements Airlock
   * prepared on this connection itself.
   */
  pass(messages: readonly Buffer[], swallow: number, sink: MessageSink): Promise<TransactionStatus> {
    let left = swallow;
    return this.connection.exchange(messages, 1, (m) => {
      if (left > 0 && (m.type === BACKEND.parseComplete || m.type === BACKEND.closeComplete)) {
        left--;
        return;
      }
      sink(m);
    });
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
   * Runs one write (a Query, or extended-protocol messages up to Sync)
   * measured and checked. `emptied` names tables the statement truncates or
   * drops: neither changes the row counters, so their rows are counted beforehand.
   */
  async write(
    messages: readonly Buffer[],
    swallow: number,
    check: ImpactCheck,
    record: RecordWrite,
    emptied: readonly { schema: string; name: string }[] = [],
  ): Promise<WriteResult> {
    const conn = this.connection;
    const autocommit = conn.status === 'I';
    // Counted before as well as after, even at the start of a transaction: a
    // backend reports its counts to the shared statistics at most once a
    // second, and until then the "current transaction" counters still hold
    // earlier transactions' rows.
    let open = autocommit ? 'BEGIN READ WRITE' : `SAVEPOINT ${this.savepoint}`;
    if (emptied.length > 0) open += `; ${countRowsQuery(emptied)}`;
    const rounds: Message[][] = [[], [], []];
    let round = 0;
    let left = swallow;
    await conn.exchange([encodeQuery(`${open}; ${STATS_QUERY}`), ...messages, encodeQuery(STATS_QUERY)], 3, (m) => {
      if (round === 1 && left > 0 && (m.type === BACKEND.parseComplete || m.type === BACKEND.closeComplete)) {
        left--;
        return;
      }
      rounds[round]!.push(copy(m));
      if (m.type === BACKEND.readyForQuery) round++;
    });
    const [opening, answers, closing] = rounds as [Message[], Message[], Message[]];
    const openError = firstError(opening);
    if (openError !== null) throw new Error(`write path: could not open the write's transaction: ${openError.get('M') ?? '?'}`);
    const clientStatus: TransactionStatus = autocommit ? 'I' : 'T';

    const failure = firstError(answers);
    if (failure !== null) {
      // The server refused the statement: its error is the answer. Airlock's
      // own transaction is rolled back; the agent's is failed, as it should be.
      if (autocommit) await this.rollback();
      return { outcome: { kind: 'failed', sqlstate: failure.get('C') ?? 'XX000', impact: null }, answers: withStatus(answers, autocommit ? 'I' : 'E'), status: autocommit ? 'I' : 'E' };
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
    const changeId = randomUUID();
    if (denial === null) {
      try {
        await record(changeId, impact);
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
      return {
        outcome: { kind: 'refused', denial, impact },
        answers: refusedAnswers(answers, denialFields(denial, 'The statement ran and was rolled back; nothing was changed.'), status),
        status,
      };
    }
    const done = await conn.collect([encodeQuery(autocommit ? 'COMMIT' : `RELEASE SAVEPOINT ${this.savepoint}`)], 1);
    const commitError = firstError(done);
    if (commitError !== null) {
      // A deferred constraint or a serialization failure at COMMIT: the server rolled it back.
      const fields = errorFieldsOf(commitError);
      const status = autocommit ? 'I' : 'E';
      return { outcome: { kind: 'failed', sqlstate: fields.code, impact }, answers: refusedAnswers(answers, fields, status), status };
    }
    return { outcome: { kind: 'kept', changeId, impact }, answers: withStatus(answers, clientStatus), status: clientStatus };
  }

  /** Rolls back the agent's transaction (a COMMIT refused under a freeze). */
  async rollback(): Promise<void> {
    await this.connection.collect([encodeQuery('ROLLBACK')], 1);
  }

  /**
   * Takes a measured write back: all of Airlock's own transaction, or the
   * agent's transaction back to before the write, then fails the agent's
   * transaction as any error would (PostgreSQL's semantics: an error aborts it).
   */
  private async takeBack(autocommit: boolean): Promise<TransactionStatus> {
    if (autocommit) {
      await this.rollback();
      return 'I';
    }
    await this.connection.collect(
      [encodeQuery(`ROLLBACK TO SAVEPOINT ${this.savepoint}; RELEASE SAVEPOINT ${this.savepoint}`), encodeQuery('airlock_refused')],
      2,
    );
    return this.connection.status;
  }
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

/** The answers with their final ReadyForQuery saying `status`. */
function withStatus(answers: readonly Message[], status: TransactionStatus): Buffer[] {
  return answers.map((m) => (m.type === BACKEND.readyForQuery ? readyForQuery(status) : m.raw));
}

/** What the agent sees of a write taken back: what came before its results, the error, ReadyForQuery. */
function refusedAnswers(answers: readonly Message[], error: ErrorFields, status: TransactionStatus): Buffer[] {
  const out: Buffer[] = [];
  for (const m of answers) {
    if (!PREAMBLE.has(m.type)) break;
    out.push(m.raw);
  }
  out.push(errorResponse(error), readyForQuery(status));
  return out;
}
