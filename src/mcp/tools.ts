/**
 * Airlock's MCP tools. Each one sends SQL to the gate through a GateClient
 * (the agent's own connection to Airlock's listener) and shows the agent
 * what came back; none of them judges a statement itself, and none can
 * lift a freeze, approve, undo or change policy: the agent's connection
 * cannot, so neither can they.
 * @see https://modelcontextprotocol.io/specification/2025-06-18/server/tools
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { ApprovalRequest } from '../state/approval-store.js';
import { GateError } from './gate-client.js';
import type { GateClient, SqlParam } from './gate-client.js';
import { renderError, renderRows } from './render.js';

/** Rows a read shows unless it asks for another number; and the most it may ask for. */
export const DEFAULT_MAX_ROWS = 100;
export const MAX_MAX_ROWS = 1000;

const VERSION = '0.1.0';

const INSTRUCTIONS =
  'These tools reach a PostgreSQL database through Airlock, a gate that judges every statement by this agent\'s policy ' +
  'before it reaches the database. query and explain run reads only; execute sends a statement that may change data, ' +
  'which the gate runs, or refuses with the rule that decided and a hint saying what a human can do. A refusal is final ' +
  'for the agent: rephrasing, splitting or disguising the statement does not change the decision.';

const params = z
  .array(z.union([z.string(), z.number(), z.boolean(), z.null()]))
  .max(1000)
  .optional()
  .describe('Values for $1, $2, ... in the SQL, bound by the server (never pasted into the text).');

const maxRows = z
  .number()
  .int()
  .min(1)
  .max(MAX_MAX_ROWS)
  .optional()
  .describe(`Most rows to show (default ${DEFAULT_MAX_ROWS}, at most ${MAX_MAX_ROWS}); a result with more says it was truncated.`);

/** Builds an MCP server whose tools all run through `gate`. */
/** The agent's own approval requests, by id (null: not this agent's, or none). Only where the MCP server runs inside Airlock (HTTP). */
export type OwnRequest = (id: number) => ApprovalRequest | null;

export function createAirlockMcpServer(gate: GateClient, ownRequest?: OwnRequest): McpServer {
  const server = new McpServer({ name: 'airlock', version: VERSION }, { instructions: INSTRUCTIONS });

  server.registerTool(
    'approval_status',
    {
      title: 'Status of a request for approval',
      description:
        "Tells whether a statement execute answered HELD for was approved, denied or is still waiting for a human. It changes nothing. Once it says approved, call execute again with the identical statement and parameters.",
      inputSchema: { request: z.number().int().min(1).describe('The request number execute gave (HELD … request #N).') },
      annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
    },
    async ({ request }) =>
      answer(async () => {
        if (ownRequest === undefined) {
          throw new GateError({
            code: '0A000',
            message: `airlock: approval_status is answered by Airlock's MCP server over HTTP (mcp.listen); this stdio client holds only your connection, which cannot read requests`,
            hint: `Call execute again with the identical statement: approved, it runs once; still pending, it waits and answers HELD again.`,
          });
        }
        const r = ownRequest(request);
        if (r === null) throw new GateError({ code: '42704', message: `airlock: there is no request #${request} of yours` });
        const decided = r.decidedBy === undefined ? '' : ` by ${r.decidedBy}${r.denyReason === undefined ? '' : `: ${r.denyReason}`}`;
        const next: Record<string, string> = {
          pending: 'A human has not decided yet.',
          approved: 'Call execute again with the identical statement and parameters: it runs once.',
          denied: 'It will not run; a changed statement would be a new request.',
          executed: 'The approval was used: the statement ran.',
          expired: 'Nobody decided in time; sending it again makes a new request.',
        };
        return `Request #${r.id}: ${r.state}${decided}. ${next[r.state] ?? ''}\nStatement: ${r.text}`;
      }),
  );

  server.registerTool(
    'list_tables',
    {
      title: 'List tables',
      description: 'Lists the tables, views and materialized views this agent can see (outside the system schemas), with their kind and estimated row count.',
      inputSchema: { schema: z.string().min(1).max(63).optional().describe('Only this schema (default: all).') },
      annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
    },
    async ({ schema }) =>
      answer(async () => {
        const set = await gate.read(LIST_TABLES_SQL, [schema ?? null], MAX_MAX_ROWS, 'list_tables');
        return renderRows(set, { maxRows: MAX_MAX_ROWS, moreHint: 'Pass schema to list one schema at a time.' });
      }),
  );

  server.registerTool(
    'describe_table',
    {
      title: 'Describe a table',
      description: 'Shows a table\'s (or view\'s) columns with their types, nullability and defaults, its keys and other constraints, its indexes, and its estimated row count.',
      inputSchema: { table: z.string().min(1).max(200).describe('The table, as schema.table or table (then in public).') },
      annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
    },
    async ({ table }) => answer(() => describeTable(gate, table)),
  );

  server.registerTool(
    'query',
    {
      title: 'Run a read',
      description:
        'Runs one read (SELECT, or WITH ... SELECT, VALUES, TABLE, SHOW) and returns its rows: a line of column names and types, ' +
        'then one JSON array per row (NULL is null; numbers, booleans and JSON as such; timestamps and other values as PostgreSQL prints them). ' +
        'Anything that is not a plain read is refused, whatever this agent may otherwise do: use execute for that. ' +
        "A read that a rule holds for a human's approval cannot wait here (it is refused with SQLSTATE 25001): run it with execute, which waits for the approval. " +
        `At most max_rows rows are shown (default ${DEFAULT_MAX_ROWS}); a longer result says it was truncated, so add WHERE or LIMIT.`,
      inputSchema: { sql: z.string().min(1).describe('One SQL statement that reads.'), params, max_rows: maxRows },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ sql, params: values, max_rows }) =>
      answer(async () => {
        const limit = max_rows ?? DEFAULT_MAX_ROWS;
        const set = await gate.read(sql, values ?? [], limit);
        return renderRows(set, { maxRows: limit, moreHint: `Narrow the query (WHERE, LIMIT, aggregates)${limit < MAX_MAX_ROWS ? `, or pass max_rows (at most ${MAX_MAX_ROWS})` : ''}.` });
      }),
  );

  server.registerTool(
    'explain',
    {
      title: 'Explain a statement',
      description:
        'Shows PostgreSQL\'s plan for one statement (EXPLAIN), without running it. With analyze, a plain read is also run to measure it (EXPLAIN ANALYZE); ' +
        'analyze is refused for anything that is not a plain read, since it would run it.',
      inputSchema: {
        sql: z.string().min(1).describe('One SQL statement.'),
        params,
        analyze: z.boolean().optional().describe('Run the statement (reads only) and show actual times and row counts.'),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ sql, params: values, analyze }) => answer(async () => (await gate.explain(sql, values ?? [], analyze === true)).join('\n')),
  );

  server.registerTool(
    'execute',
    {
      title: 'Run a statement that may change data',
      description:
        'Sends one statement (INSERT, UPDATE, DELETE, DDL, ...) to the gate, which runs it as this agent\'s policy allows, within its limits, ' +
        'or refuses it with the rule that decided, the reason and what a human can do. Each call is a transaction of its own: no BEGIN or COMMIT. ' +
        'Returns what happened and any rows it returned (RETURNING). For reads, use query.',
      inputSchema: { sql: z.string().min(1).describe('One SQL statement.'), params, max_rows: maxRows },
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
    },
    async ({ sql, params: values, max_rows }) =>
      answer(async () => {
        const limit = max_rows ?? DEFAULT_MAX_ROWS;
        let set;
        try {
          set = await gate.execute(sql, values ?? [], limit);
        } catch (error) {
          const held = heldFor(error);
          if (held === null) throw error;
          return (
            `HELD: this statement waits for a human's approval as request #${held}; nothing was changed yet. ` +
            `A human approves it with "airlock approve ${held}" (or denies it). Once approved, call execute again with the identical ` +
            'statement and parameters: it then runs once. Do not change the statement meanwhile: any change is a new request.'
          );
        }
        const done = set.command === null ? 'Done.' : `${set.command}: ${set.rowCount ?? 0} ${set.rowCount === 1 ? 'row' : 'rows'}.`;
        if (set.columns.length === 0) return done;
        return `${done}\n${renderRows(set, { maxRows: limit, moreHint: 'Use query with WHERE or LIMIT to read rows.' })}`;
      }),
  );

  return server;
}

/** The request a statement is held in, when the gate's answer is that its wait for approval ended (57014), else null. */
function heldFor(error: unknown): number | null {
  const e = GateError.from(error);
  if (e.code !== '57014') return null;
  const m = /request #(\d+)/.exec(e.message);
  return m === null || !/stays pending/.test(e.message) ? null : Number(m[1]);
}

/** A tool's answer: its text, or the gate's (or PostgreSQL's) error as an MCP tool error. */
async function answer(body: () => Promise<string>): Promise<CallToolResult> {
  try {
    return { content: [{ type: 'text', text: await body() }] };
  } catch (error) {
    return { isError: true, content: [{ type: 'text', text: renderError(GateError.from(error)) }] };
  }
}

const LIST_TABLES_SQL = `SELECT n.nspname AS schema, c.relname AS name,
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
    WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' END AS kind,
  CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS row_estimate
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
  AND ($1::text IS NULL OR n.nspname = $1::text)
ORDER BY 1, 2`;

const RELATION_SQL = `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name,
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
    WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE c.relkind::text END AS kind,
  CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS row_estimate,
  pg_catalog.obj_description(c.oid, 'pg_class') AS comment
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1::text AND c.relname = $2::text AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`;

const COLUMNS_SQL = `SELECT a.attname AS column, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
  a.attnotnull AS not_null, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS default,
  pg_catalog.col_description(a.attrelid, a.attnum) AS comment
FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`;

const CONSTRAINTS_SQL = `SELECT con.conname AS name,
  CASE con.contype WHEN 'p' THEN 'primary key' WHEN 'f' THEN 'foreign key' WHEN 'u' THEN 'unique'
    WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclusion' ELSE con.contype::text END AS kind,
  pg_catalog.pg_get_constraintdef(con.oid, true) AS definition
FROM pg_catalog.pg_constraint con WHERE con.conrelid = $1::oid AND con.contype <> 'n'
ORDER BY CASE con.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'f' THEN 2 ELSE 3 END, con.conname`;

const INDEXES_SQL = `SELECT ic.relname AS name, pg_catalog.pg_get_indexdef(i.indexrelid, 0, true) AS definition
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = $1::oid ORDER BY i.indisprimary DESC, ic.relname`;

/** `schema.table`, `table`, or either with double-quoted parts. */
export function splitTableName(input: string): { schema: string; name: string } | null {
  const parts: string[] = [];
  const re = /\s*(?:"((?:[^"]|"")+)"|([^".\s]+))\s*(\.|$)/y;
  let match: RegExpExecArray | null;
  while (re.lastIndex < input.length && (match = re.exec(input)) !== null) {
    parts.push(match[1] !== undefined ? match[1].replace(/""/g, '"') : match[2]!.toLowerCase());
    if (match[3] === '') break;
  }
  if (re.lastIndex !== input.length && re.lastIndex !== 0) return null;
  if (parts.length === 1) return { schema: 'public', name: parts[0]! };
  if (parts.length === 2) return { schema: parts[0]!, name: parts[1]! };
  return null;
}

async function describeTable(gate: GateClient, table: string): Promise<string> {
  const name = splitTableName(table);
  if (name === null) {
    throw new GateError({ code: '42602', message: `airlock: ${JSON.stringify(table)} is not a table name; write schema.table or table.` });
  }
  const found = await gate.read(RELATION_SQL, [name.schema, name.name], 1, 'describe_table');
  const relation = found.rows[0];
  if (relation === undefined) {
    throw new GateError({
      code: '42P01',
      message: `relation "${name.schema}.${name.name}" does not exist`,
      hint: 'list_tables shows the tables this agent can see.',
    });
  }
  const [oid, schema, relname, kind, estimate, comment] = relation;
  const args: SqlParam[] = [oid ?? null];
  const columns = await gate.read(COLUMNS_SQL, args, MAX_MAX_ROWS, 'describe_table');
  const constraints = await gate.read(CONSTRAINTS_SQL, args, MAX_MAX_ROWS, 'describe_table');
  const indexes = await gate.read(INDEXES_SQL, args, MAX_MAX_ROWS, 'describe_table');
  const lines = [`${kind} ${schema}.${relname}: about ${estimate ?? 'an unknown number of'} rows (the planner's estimate)`];
  if (comment !== null && comment !== undefined) lines.push(`comment: ${comment}`);
  lines.push('', 'columns:');
  for (const [column, type, notNull, dflt, note] of columns.rows) {
    lines.push(`  ${column} ${type}${notNull === 't' ? ' NOT NULL' : ''}${dflt !== null ? ` DEFAULT ${dflt}` : ''}${note !== null ? `  -- ${note}` : ''}`);
  }
  if (constraints.rows.length > 0) {
    lines.push('', 'constraints:');
    for (const [conname, conkind, definition] of constraints.rows) lines.push(`  ${conname} (${conkind}): ${definition}`);
  }
  if (indexes.rows.length > 0) {
    lines.push('', 'indexes:');
    for (const [, definition] of indexes.rows) lines.push(`  ${definition}`);
  }
  return lines.join('\n');
}
