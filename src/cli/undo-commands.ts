/**
 * `airlock changes` and `airlock undo`: clients of the running server's
 * admin API (GET /v1/changes, POST /v1/undo), with an admin token, like
 * freeze. Nothing here reads the journal or touches the database itself.
 */
import { adminRequest } from './admin-client.js';
import { target } from './freeze-commands.js';
import type { CommandArgs } from './main.js';
import { UsageError } from './main.js';
import type { ChangeEntry } from '../state/journal.js';
import type { UndoResult } from '../executor/undo.js';

/** `--since`: an ISO 8601 time, or a duration back from now (30m, 2h, 1d). */
export function parseSince(text: string, now = new Date()): Date {
  const rel = /^(\d+)\s*(m|h|d)$/.exec(text.trim());
  if (rel !== null) return new Date(now.getTime() - Number(rel[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'm' | 'h' | 'd']);
  const at = Date.parse(text);
  if (Number.isNaN(at)) throw new UsageError(`--since takes an ISO 8601 time (2026-12-01T09:00:00Z) or a duration back from now (30m, 2h, 1d), not "${text}"`);
  return new Date(at);
}

/** One line per change: id, time, agent, statement, rows per table, state. */
export function formatChange(e: ChangeEntry & { conflicts?: number }): string {
  const who = e.kind === 'undo' ? `undo by ${e.by ?? '?'}` : (e.agent ?? '?');
  const tables = Object.entries(e.tables)
    .map(([t, n]) => `${t} ${n}`)
    .join(', ');
  const statement = e.statement.replace(/\s+/g, ' ').slice(0, 80);
  let state: string = e.state === 'committed' && (e.conflicts ?? 0) > 0 ? `conflict (${e.conflicts} row(s) changed since)` : e.state;
  // A change whose dropped tables were purged from the trash cannot be undone any more.
  if (e.purged != null) state += `, purged by ${e.purged.by}`;
  else if ((e.trashed ?? []).length > 0 && e.state === 'committed') state += `, in the trash: ${e.trashed.map((t) => t.table).join(', ')}`;
  return `${e.id}  ${e.at}  ${who}  ${JSON.stringify(statement)}  ${tables || '(no rows)'}  ${state}${e.undoneBy !== null ? ` by ${e.undoneBy}` : ''}`;
}

export async function runChanges(args: CommandArgs): Promise<number> {
  const q = new URLSearchParams();
  if (args.values.agent !== undefined) q.set('agent', args.values.agent);
  if (args.values.since !== undefined) q.set('since', parseSince(args.values.since).toISOString());
  if (args.values.table !== undefined) q.set('table', args.values.table);
  if (args.values.transaction !== undefined) q.set('transaction', args.values.transaction);
  if (args.values.all === true) q.set('all', 'true');
  // State "conflict": rows of a committed change changed again since (the newest 200 are checked).
  q.set('check', 'true');
  const r = await adminRequest(await target(args), 'GET', `/v1/changes${q.size > 0 ? `?${q.toString()}` : ''}`);
  const body = r.body as { changes?: ChangeEntry[]; error?: string };
  if (r.status >= 400) {
    console.error(`airlock: ${body.error ?? `the admin API answered ${r.status}`}`);
    return 1;
  }
  const changes = body.changes ?? [];
  if (args.values.json === true) console.log(JSON.stringify(changes, null, 2));
  else if (changes.length === 0) console.log('No journalled changes match.');
  else for (const e of changes) console.log(formatChange(e));
  return 0;
}

function formatPlan(result: UndoResult, dryRun: boolean): string {
  const lines = [
    `${dryRun ? 'Would undo' : result.applied ? 'Undid' : 'Did not undo'} ${result.changes.length} change(s): ${result.changes.join(', ')}`,
    ...(result.ddl ?? []).map((d) => `  ${d}`),
    ...result.tables.map((t) => `  ${t.table}: ${t.insert} row(s) put back, ${t.update} set back, ${t.delete} deleted`),
  ];
  if (result.conflicts.length > 0) {
    lines.push(`${result.conflicts.length} row(s) were changed again since${dryRun ? '' : result.applied ? ' (overwritten: --force)' : ''}:`);
    for (const c of result.conflicts.slice(0, 50)) lines.push(`  ${c.table} key ${c.key}: expected ${c.expected ?? '(no row)'}, found ${c.found ?? '(no row)'}`);
    if (result.conflicts.length > 50) lines.push(`  … and ${result.conflicts.length - 50} more (--json lists them all)`);
  }
  if (result.undoChangeId !== null) lines.push(`The undo is change ${result.undoChangeId}; \`airlock undo ${result.undoChangeId}\` takes it back.`);
  return lines.join('\n');
}

export async function runUndo(args: CommandArgs, ids: string[]): Promise<number> {
  const v = args.values;
  const ways = [ids.length > 0, v.transaction !== undefined, v.agent !== undefined].filter(Boolean).length;
  if (ways !== 1) throw new UsageError('undo takes change ids, or --transaction TXID, or --agent NAME --since TIME (one of them)');
  if (v.agent !== undefined && v.since === undefined) throw new UsageError('undo --agent needs --since TIME: everything the agent did since then is undone');
  const body: Record<string, unknown> = { dryRun: v['dry-run'] === true, force: v.force === true };
  if (ids.length > 0) body.changes = ids;
  if (v.transaction !== undefined) body.transaction = v.transaction;
  if (v.agent !== undefined) {
    body.agent = v.agent;
    body.since = parseSince(v.since!).toISOString();
  }
  const r = await adminRequest(await target(args), 'POST', '/v1/undo', body);
  const result = r.body as UndoResult & { error?: string };
  if (v.json === true) console.log(JSON.stringify(result, null, 2));
  if (r.status >= 400) {
    if (v.json !== true && Array.isArray(result.tables)) console.error(formatPlan(result, false));
    console.error(`airlock: ${result.error ?? `the admin API answered ${r.status}`}`);
    return 1;
  }
  if (v.json !== true) console.log(formatPlan(result, v['dry-run'] === true));
  return 0;
}
