/**
 * The MCP server's only way to the database: a PostgreSQL connection to
 * Airlock's own listener, as the agent, with the agent's own credential. So
 * every statement an MCP tool runs is judged by the same gate as the wire
 * protocol (classification, policy, limits, freeze, audit), and nothing here
 * decides what the agent may do. What this module adds is narrower than the
 * gate, never wider: `read` runs a statement only when Airlock's classifier
 * (the gate's own, not a second one) reads it as a plain read, and then
 * inside a READ ONLY transaction that PostgreSQL itself enforces.
 */
import pg from 'pg';
import { unjudgedDenial } from '../policy/unjudged.js';
import type { ClassifierPool } from '../sql/classifier-pool.js';
import type { Classification } from '../sql/facts.js';
import { statementSizeRefusal } from '../sql/statement-size.js';

/** A value an MCP tool may bind to a `$n` parameter. */
export type SqlParam = string | number | boolean | null;

/** A column as the server described it. */
export interface ResultColumn {
  name: string;
  /** The type's OID (pg_type.oid). */
  typeOid: number;
  /** The type's name as `format_type` gives it (`integer`, `timestamp with time zone`, ...). */
  typeName: string;
}

/**
 * Rows as the server sent them: every value is PostgreSQL's own text output
 * (no JavaScript conversion, so numbers, timestamps and JSON stay exact), or
 * null for SQL NULL.
 */
export interface RowSet {
  columns: ResultColumn[];
  rows: (string | null)[][];
  /** More rows existed than were kept. */
  truncated: boolean;
  /** The server's command tag verb and row count (`SELECT 3`, `UPDATE 1`), when it sent one. */
  command: string | null;
  rowCount: number | null;
}

/**
 * An error to show the agent as it came: the gate's (or PostgreSQL's)
 * ErrorResponse fields, or Airlock's MCP server's own refusal in the same shape.
 */
export class GateError extends Error {
  readonly severity: string;
  readonly code: string;
  readonly detail: string | undefined;
  readonly hint: string | undefined;

  constructor(fields: { message: string; code: string; severity?: string; detail?: string; hint?: string }) {
    super(fields.message);
    this.name = 'GateError';
    this.severity = fields.severity ?? 'ERROR';
    this.code = fields.code;
    this.detail = fields.detail;
    this.hint = fields.hint;
  }

  /** From a node-postgres error: the server's fields when it sent an ErrorResponse, a connection failure otherwise. */
  static from(error: unknown): GateError {
    if (error instanceof GateError) return error;
    if (error instanceof pg.DatabaseError) {
      return new GateError({ message: error.message, code: error.code ?? 'XX000', severity: error.severity, detail: error.detail, hint: error.hint });
    }
    const message = error instanceof Error ? error.message : String(error);
    return new GateError({
      // 08006 connection_failure: the agent cannot tell a refused login from a dead server any better than this.
      code: (error as { code?: unknown } | null)?.code === '28P01' ? '28P01' : '08006',
      message: `airlock mcp: no answer from Airlock's PostgreSQL listener: ${message}`,
      hint: 'Check that Airlock is running and that the agent connection URL (--url or AIRLOCK_URL) names its listener, this agent and its password.',
    });
  }
}

/** How `read` learns what a statement is: the gate's own classifier (a ClassifierPool), never a second one. */
export type Classify = (sql: string) => Promise<Classification>;

/**
 * The classifier as the gate runs it: a text past `maxStatementBytes` is
 * refused unread (as limits.max_statement_bytes does), the rest is read by
 * `pool` off the event loop, within its deadline.
 */
export function gateClassifier(pool: ClassifierPool, maxStatementBytes: number, owner = ''): Classify {
  return (sql) => Promise.resolve(statementSizeRefusal(Buffer.byteLength(sql, 'utf8'), maxStatementBytes) ?? pool.classify(sql, owner));
}

export interface GateClientOptions {
  /** The agent's connection to Airlock's PostgreSQL listener: a URL or node-postgres options. */
  connection: string | pg.ClientConfig;
  classify: Classify;
  /**
   * How long `execute` lets a statement wait for a human's approval before
   * it stops waiting (the request stays pending, and the identical call
   * runs it once approved); default 15 s, so a tool call does not hang.
   */
  approvalWaitMs?: number;
}

/** What `execute` waits for a human's approval by default before it answers "held". */
export const DEFAULT_APPROVAL_WAIT_MS = 15_000;

/** The gate's notice while a statement waits for approval (relay: waitingNotice). */
const WAITING_NOTICE = /waiting for approval #(\d+)/;

// Every type's text output, as sent: no parsing into JavaScript values.
const RAW_TEXT: pg.CustomTypesConfig = { getTypeParser: () => (value: string) => value };

/** pg_type OIDs of the built-in types most results hold, and their `format_type` names. */
const BUILTIN_TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [16, 'boolean'], [17, 'bytea'], [18, '"char"'], [19, 'name'], [20, 'bigint'], [21, 'smallint'], [23, 'integer'],
  [25, 'text'], [26, 'oid'], [114, 'json'], [700, 'real'], [701, 'double precision'], [869, 'inet'],
  [1042, 'character'], [1043, 'character varying'], [1082, 'date'], [1083, 'time without time zone'],
  [1114, 'timestamp without time zone'], [1184, 'timestamp with time zone'], [1186, 'interval'],
  [1266, 'time with time zone'], [1700, 'numeric'], [2950, 'uuid'], [3802, 'jsonb'],
  [1000, 'boolean[]'], [1005, 'smallint[]'], [1007, 'integer[]'], [1016, 'bigint[]'], [1009, 'text[]'],
]);

/** A refusal of Airlock's MCP server itself, worded like the gate's (DESIGN.md: clear answers). */
export function mcpRefusal(rule: string, code: string, message: string, hint: string, detail = 'The statement was not sent to the database.'): GateError {
  return new GateError({ code, message: `airlock: ${message}`, detail: `Rule: ${rule}. ${detail}`, hint });
}

/**
 * One agent connection to Airlock, opened when first needed and opened again
 * after it broke. Calls are run one at a time: a read's BEGIN, statement and
 * ROLLBACK must not interleave with anything else on the connection.
 */
export class GateClient {
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly typeNames = new Map(BUILTIN_TYPE_NAMES);
  private closed = false;
  private pending = 0;

  constructor(private readonly options: GateClientOptions) {}

  /**
   * Runs one statement that Airlock's classifier reads as a plain read,
   * inside `BEGIN READ ONLY … ROLLBACK` through the gate, and keeps at most
   * `maxRows` rows: it asks the server for `maxRows + 1` through a portal
   * (Execute with a row limit), so a huge result is never sent, let alone held.
   */
  read(sql: string, params: readonly SqlParam[], maxRows: number, what = 'query'): Promise<RowSet> {
    return this.serialized(async () => {
      await this.ensureRead(sql, what);
      return this.inReadOnlyTransaction((client) => this.fetch(client, sql, params, maxRows));
    });
  }

  /**
   * Plans a statement with EXPLAIN, inside `BEGIN READ ONLY … ROLLBACK`;
   * ANALYZE (which runs the statement) only for a plain read.
   */
  explain(sql: string, params: readonly SqlParam[], analyze: boolean): Promise<string[]> {
    return this.serialized(async () => {
      const classification = await this.options.classify(sql);
      if (classification.ok && classification.statements.length !== 1) throw notOneStatement('explain', classification.statements.length);
      if (analyze) await this.ensureRead(sql, 'explain with analyze');
      const text = `EXPLAIN (${analyze ? 'ANALYZE, ' : ''}FORMAT TEXT) ${sql}`;
      const set = await this.inReadOnlyTransaction((client) => this.fetch(client, text, params, 10_000));
      return set.rows.map((r) => r[0] ?? '');
    });
  }

  /**
   * Sends one statement to the gate as the agent would over the wire (the
   * extended protocol: one statement, parameters bound), for the gate to
   * run, hold or refuse by the agent's policy. Keeps at most `maxRows` of
   * any rows it returns; the rest are read off the socket and dropped.
   */
  execute(sql: string, params: readonly SqlParam[], maxRows: number): Promise<RowSet> {
    return this.serialized(async () => {
      const client = await this.connection();
      // Held for a human's approval: after a while, cancel the wait (as psql's Ctrl-C does); the gate then
      // answers 57014 naming the request, which stays pending.
      let timer: NodeJS.Timeout | null = null;
      const onNotice = (notice: { message?: string }): void => {
        if (timer !== null || !WAITING_NOTICE.test(notice.message ?? '')) return;
        timer = setTimeout(() => this.cancel(client), this.options.approvalWaitMs ?? DEFAULT_APPROVAL_WAIT_MS);
      };
      client.on('notice', onNotice);
      try {
        return await this.run(client, sql, params, maxRows);
      } finally {
        client.off('notice', onNotice);
        if (timer !== null) clearTimeout(timer);
        // Each call is a statement of its own: a transaction it opened is not left
        // open for the next call (or for a read's BEGIN READ ONLY) to land in.
        if (client.getTransactionStatus() !== 'I' && this.client === client) {
          await client.query('ROLLBACK').catch((error: unknown) => this.discard(client, error));
          // eslint-disable-next-line no-unsafe-finally -- the call's answer is this refusal, whatever it was
          throw mcpRefusal(
            'mcp-one-statement',
            '25001',
            'the execute tool runs each statement on its own, so the transaction it opened was rolled back',
            'Send each write as a call of its own, without BEGIN or COMMIT: Airlock runs it in a transaction of its own and commits it when the policy allows.',
            'The transaction was rolled back.',
          );
        }
      }
    });
  }

  /** Sends a CancelRequest for what runs on `client`, through a connection of its own, as node-postgres does. */
  private cancel(client: pg.Client): void {
    const config = typeof this.options.connection === 'string' ? { connectionString: this.options.connection } : this.options.connection;
    const canceller = new pg.Client(config) as pg.Client & { cancel(client: pg.Client, query: unknown): void };
    canceller.cancel(client, (client as unknown as { activeQuery: unknown }).activeQuery);
  }

  /** Ends the connection; later calls fail. */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue.catch(() => undefined); // the calls' own callers saw their errors
    const client = this.client;
    this.client = null;
    if (client !== null) await client.end().catch(() => undefined); // closing: nothing left to tell
  }

  /** Calls waiting or running on this connection. */
  get load(): number {
    return this.pending;
  }

  private serialized<T>(task: () => Promise<T>): Promise<T> {
    this.pending++;
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined); // each caller gets its own result; the chain only orders them
    return run
      .catch((error: unknown) => {
        throw GateError.from(error);
      })
      .finally(() => {
        this.pending--;
      });
  }

  private async connection(): Promise<pg.Client> {
    if (this.closed) throw new GateError({ code: '08003', message: 'airlock mcp: the connection to Airlock is closed.' });
    if (this.client !== null) return this.client;
    this.connecting ??= (async () => {
      const config = typeof this.options.connection === 'string' ? { connectionString: this.options.connection } : this.options.connection;
      const client = new pg.Client({ ...config, application_name: 'airlock-mcp' });
      client.on('error', (error) => this.discard(client, error));
      try {
        await client.connect();
      } catch (error) {
        await client.end().catch(() => undefined); // it never opened
        throw error;
      }
      this.client = client;
      return client;
    })().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  /** Drops a connection that broke (the gate ended the session, the server went away); the next call opens another. */
  private discard(client: pg.Client, _error: unknown): void {
    if (this.client === client) this.client = null;
    client.end().catch(() => undefined); // already broken: its own error is what the caller sees
  }

  /** Refuses, unsent, what the gate's classifier does not read as exactly one plain read. */
  private async ensureRead(sql: string, what: string): Promise<void> {
    const classification = await this.options.classify(sql);
    if (!classification.ok) {
      // A syntax error goes to the gate, which answers it in its own words (READ ONLY still holds).
      if (classification.unjudged === undefined) return;
      // Text the classifier could not read at all is not known to be a read: refused here, as the gate would.
      const denial = unjudgedDenial(classification.unjudged, classification.error);
      throw new GateError({ code: denial.sqlstate, message: denial.message, detail: `Rule: ${denial.rule}. The statement was not sent to the database.`, hint: denial.hint });
    }
    const { statements } = classification;
    if (statements.length !== 1) throw notOneStatement(what, statements.length);
    const [facts] = statements;
    if (facts!.kind !== 'read') {
      throw mcpRefusal(
        'mcp-read-only',
        '25006',
        `the ${what.split(' ')[0]} tool runs reads only, and this statement is ${facts!.command} (${facts!.kind}), which is not a plain read`,
        what.startsWith('explain')
          ? 'Explain it without analyze (which only plans it), or use the execute tool to run it: the gate judges it there by this agent\'s policy.'
          : 'Use the execute tool for statements that change something: the gate judges it there by this agent\'s policy.',
      );
    }
  }

  private async inReadOnlyTransaction(body: (client: pg.Client) => Promise<RowSet>): Promise<RowSet> {
    const client = await this.connection();
    if (client.getTransactionStatus() !== 'I') await client.query('ROLLBACK');
    await client.query('BEGIN TRANSACTION READ ONLY');
    try {
      // Taking a snapshot fixes the mode: a later SET TRANSACTION READ WRITE is refused by the server.
      const mode = await client.query<{ ro: string }>("SELECT current_setting('transaction_read_only') AS ro");
      if (mode.rows[0]?.ro !== 'on') {
        throw mcpRefusal('mcp-read-only', '25006', 'the read could not be run in a READ ONLY transaction, so it was not run', 'Report this to whoever runs Airlock.');
      }
      const result = await body(client);
      await this.nameTypes(client, result);
      return result;
    } finally {
      // Whatever happened, nothing of the read stays: not a setting, not a lock, not a cursor.
      if (this.client === client) await client.query('ROLLBACK').catch((error: unknown) => this.discard(client, error));
    }
  }

  private fetch(client: pg.Client, sql: string, params: readonly SqlParam[], maxRows: number): Promise<RowSet> {
    return new Promise<pg.QueryArrayResult<(string | null)[]>>((resolve, reject) => {
      const query = new LimitedQuery(sql, [...params], maxRows + 1);
      query.on('error', reject);
      query.on('end', (result) => resolve(result as unknown as pg.QueryArrayResult<(string | null)[]>));
      client.query(query);
    }).then((result) => {
      const truncated = result.rows.length > maxRows;
      return {
        columns: (result.fields ?? []).map((f) => ({ name: f.name, typeOid: f.dataTypeID, typeName: '' })),
        rows: truncated ? result.rows.slice(0, maxRows) : result.rows,
        truncated,
        command: result.command ?? null,
        rowCount: truncated ? null : result.rows.length,
      };
    });
  }

  private run(client: pg.Client, sql: string, params: readonly SqlParam[], maxRows: number): Promise<RowSet> {
    // The extended protocol: the server takes exactly one statement, and binds the parameters itself.
    const config: pg.QueryArrayConfig & { queryMode: 'extended' } = { text: sql, values: [...params], rowMode: 'array', types: RAW_TEXT, queryMode: 'extended' };
    const query = new pg.Query(config);
    const kept: (string | null)[][] = [];
    let seen = 0;
    return new Promise<RowSet>((resolve, reject) => {
      // With a row listener node-postgres does not collect rows: only `maxRows` are ever held.
      query.on('row', (row: (string | null)[]) => {
        seen++;
        if (kept.length < maxRows) kept.push(row);
      });
      query.on('error', reject);
      query.on('end', (result: pg.QueryResult) => {
        resolve({
          columns: (result.fields ?? []).map((f) => ({ name: f.name, typeOid: f.dataTypeID, typeName: '' })),
          rows: kept,
          truncated: seen > kept.length,
          command: result.command ?? null,
          rowCount: result.rowCount ?? null,
        });
      });
      client.query(query);
    }).then(async (set) => {
      await this.nameTypes(client, set);
      return set;
    });
  }

  /** Fills in type names, asking the catalog (through the gate, as a read) for types not built in. */
  private async nameTypes(client: pg.Client, set: RowSet): Promise<void> {
    const unknown = [...new Set(set.columns.map((c) => c.typeOid).filter((oid) => !this.typeNames.has(oid)))];
    if (unknown.length > 0) {
      try {
        const named = await client.query<{ oid: number; name: string }>(
          'SELECT t.oid::int AS oid, pg_catalog.format_type(t.oid, NULL) AS name FROM pg_catalog.pg_type t WHERE t.oid = ANY($1::oid[])',
          [unknown],
        );
        for (const r of named.rows) this.typeNames.set(r.oid, r.name);
      } catch {
        // A type name is a nicety: without it the column shows its OID. (Inside an aborted
        // transaction this fails too; the ROLLBACK after it clears that.)
      }
    }
    for (const c of set.columns) c.typeName = this.typeNames.get(c.typeOid) ?? `oid ${c.typeOid}`;
  }
}

/**
 * One statement in the extended protocol with a row limit on its Execute:
 * Parse, Bind, Describe, Execute(limit), Sync. The server sends at most
 * `limit` rows and then PortalSuspended; the rest is never computed. Unlike
 * node-postgres's own paging (and pg-cursor), it ends with Sync rather than
 * Flush, which is what Airlock's gate answers on every connection; inside
 * the READ ONLY transaction the suspended portal lives until the ROLLBACK.
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 */
class LimitedQuery extends pg.Query {
  constructor(text: string, values: SqlParam[], limit: number) {
    // node-postgres sends `rows` as Execute's row limit (and so takes the extended protocol).
    super({ text, values, rowMode: 'array', types: RAW_TEXT, rows: limit } as pg.QueryArrayConfig);
  }

  // The three overrides below replace node-postgres's paging (Flush, then Execute again) with
  // one Execute and a Sync; they name internals of pg 8.23 (pinned in package.json).
  _getRows(connection: pg.Connection, rows: number): void {
    // @types/pg types the row limit as a string; node-postgres writes it as an Int32.
    connection.execute({ portal: '', rows: rows as unknown as string }, false);
    connection.sync();
  }

  handlePortalSuspended(): void {
    // The limit was reached: the rows past it are not wanted, and ReadyForQuery follows the Sync.
  }

  handleCommandComplete(message: unknown): void {
    (this as unknown as { _checkForMultirow(): void })._checkForMultirow();
    (this as unknown as { _result: { addCommandComplete(m: unknown): void } })._result.addCommandComplete(message);
  }
}

function notOneStatement(what: string, count: number): GateError {
  return mcpRefusal(
    'mcp-one-statement',
    '42601',
    count === 0 ? `the ${what.split(' ')[0]} tool got no statement` : `the ${what.split(' ')[0]} tool runs one statement per call, and this text holds ${count}`,
    'Send one statement per call, without a trailing second one.',
  );
}
