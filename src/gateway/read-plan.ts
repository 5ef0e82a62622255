/**
 * What a read that a rule holds for approval would return, as the planner
 * estimates it: the human sees this before deciding, as they see a write's
 * dry run. The statement is planned, never run: `EXPLAIN (FORMAT JSON,
 * VERBOSE)` of it, with the agent's own parameters, on a connection of the
 * agent's own read role (its sessions' parameters, READ ONLY), never the
 * service account. The text was judged a read already; planning it runs no
 * more than PostgreSQL's planner does (constant folding of immutable
 * functions at most), in a read-only transaction.
 */
import { BACKEND, parseDataRow, parseErrorFields } from '../protocol/backend.js';
import { encodeExecute, encodeParseMessage, encodeSync, rebindForTextResults } from '../protocol/frontend.js';
import type { ParseMessage } from '../protocol/frontend.js';
import type { ProbeChannel } from './overload-resolver.js';

export interface ReadEstimate {
  /** Rows the plan's top node is expected to return. */
  rows: number;
  /** Rows the plan expects each relation's scans to yield ('schema.table'). */
  tables: Record<string, number>;
}

/** A Bind body with no names, formats or parameters, asking for text results. */
const NO_PARAMETERS = Buffer.alloc(8);

/**
 * The planner's estimate for `parse`'s statement, bound with the client's
 * Bind body (`bind`; null for a simple query), or why there is none.
 */
export async function planRead(channel: ProbeChannel, parse: ParseMessage, bind: Buffer | null): Promise<ReadEstimate | { error: string }> {
  const explain: ParseMessage = { name: '', query: Buffer.concat([Buffer.from('EXPLAIN (FORMAT JSON, VERBOSE) ', 'utf8'), parse.query]), paramTypes: parse.paramTypes };
  const answer = await channel.exchange([encodeParseMessage(explain), rebindForTextResults(bind ?? NO_PARAMETERS, '', ''), encodeExecute('', 0), encodeSync()], 1);
  let plan: string | null = null;
  for (const m of answer) {
    if (m.type === BACKEND.errorResponse) return { error: parseErrorFields(m.body).get('M') ?? 'the server refused to plan it' };
    if (m.type === BACKEND.dataRow && plan === null) plan = parseDataRow(m.body)[0] ?? null;
  }
  if (plan === null) return { error: 'the server returned no plan' };
  return estimateOfPlan(plan);
}

interface PlanNode {
  'Plan Rows'?: unknown;
  'Relation Name'?: unknown;
  Schema?: unknown;
  Plans?: unknown;
}

/** The estimate in EXPLAIN (FORMAT JSON, VERBOSE)'s output, or why it cannot be read. */
export function estimateOfPlan(json: string): ReadEstimate | { error: string } {
  let top: PlanNode | undefined;
  try {
    top = (JSON.parse(json) as { Plan?: PlanNode }[])[0]?.Plan;
  } catch {
    return { error: 'the plan is not JSON' };
  }
  if (top === undefined || typeof top['Plan Rows'] !== 'number') return { error: 'the plan has no row estimate' };
  const tables: Record<string, number> = {};
  const walk = (node: PlanNode): void => {
    if (typeof node['Relation Name'] === 'string' && typeof node['Plan Rows'] === 'number') {
      const name = typeof node.Schema === 'string' ? `${node.Schema}.${node['Relation Name']}` : node['Relation Name'];
      tables[name] = (tables[name] ?? 0) + node['Plan Rows'];
    }
    if (Array.isArray(node.Plans)) for (const child of node.Plans as PlanNode[]) walk(child);
  };
  walk(top);
  return { rows: top['Plan Rows'], tables };
}
